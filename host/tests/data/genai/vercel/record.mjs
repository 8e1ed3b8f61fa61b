#!/usr/bin/env node
// Records GenAI span fixtures from the Vercel AI SDK 7 (`ai` + `@ai-sdk/otel` + `@ai-sdk/openai`)
// against a stub HTTP server on 127.0.0.1 (random port). See README.md beside this file.
//
//   node record.mjs                 # every scenario, then the check; writes ./<scenario>.jsonl
//   node record.mjs NAME ...        # only these scenarios, then the check
//   node record.mjs --check         # only the check of the files already written
//   --out-dir DIR (first argument)  # write/check the .jsonl files in DIR instead of beside the script
//
// Each scenario runs in a child process of its own (`--scenario NAME --out FILE`), because the
// OTel global tracer provider and the AI SDK's registerTelemetry() are process-wide.
// Output: one line per finished span, in the order the spans ended, each line a whole OTLP/JSON
// ExportTraceServiceRequest (encoder below: hex ids, decimal-string int64s, integer enums).
//
// The stub speaks the OpenAI Responses API (POST /v1/responses): that is what `openai(modelId)`
// of @ai-sdk/openai 4 uses by default.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync, existsSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const SCENARIOS = ['ai_sdk_tool_loop', 'ai_sdk_error'];

const SYSTEM_PROMPT = 'You are the support assistant of Acme Cloud. Answer from the product documentation; ' +
  'call search_docs when you need to look something up.';
const QUESTION = 'How do I reset two-factor authentication on my account?';
const TOOL_RESULT = { results: [{ title: 'Reset 2FA', url: 'https://docs.acme.test/security/2fa#reset',
  snippet: 'Settings > Security > 2FA > Reset.' }] };
const CREATED = 1795623815; // fixed `created_at` of the stub's responses

// ------------------------------------------------------------------------------------------
// Deterministic ids: sha256(seed, counter)
// ------------------------------------------------------------------------------------------
function seededHex(seed) {
  let n = 0;
  return (len) => {
    for (;;) {
      const h = createHash('sha256').update(`${seed}/${n++}`).digest('hex').slice(0, len);
      if (!/^0+$/.test(h)) return h;
    }
  };
}
const B62 = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';
function digits(salt, alphabet, n) {
  const h = createHash('sha256').update(salt).digest();
  let s = '';
  for (let i = 0; i < n; i++) s += alphabet[h[i % h.length] % alphabet.length];
  return s;
}

// ------------------------------------------------------------------------------------------
// Stub server: OpenAI Responses API, answers planned per request
// ------------------------------------------------------------------------------------------
function startStub(salt) {
  const plan = [];
  const requests = [];
  let n = 0;
  const server = http.createServer((req, res) => {
    let raw = '';
    req.on('data', (c) => { raw += c; });
    req.on('end', () => {
      const k = n++;
      let body = {};
      try { body = JSON.parse(raw); } catch { /* leave empty */ }
      requests.push({ method: req.method, url: req.url, body });
      const outcome = plan.shift() ?? 'unplanned';
      const [status, payload, headers] = answer(outcome, body, `${salt}/${k}`, req.url);
      const data = JSON.stringify(payload);
      res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(data), ...headers });
      res.end(data);
    });
  });
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => resolve({
      port: server.address().port,
      plan: (...o) => plan.push(...o),
      requests,
      close: () => new Promise((r) => server.close(r)),
    }));
  });
}

function answer(outcome, body, seed, url) {
  const model = body.model ?? 'unknown';
  const headers = { 'x-request-id': 'req_' + digits('req' + seed, '0123456789abcdef', 32),
    'openai-processing-ms': '412', 'openai-version': '2020-10-01' };
  if (url !== '/v1/responses' || outcome === 'unplanned') {
    return [500, { error: { message: `stub: unexpected ${url} (${outcome})`, type: 'server_error', param: null, code: 'stub' } }, headers];
  }
  if (outcome === 'rate_limit') {
    Object.assign(headers, { 'retry-after': '2', 'x-ratelimit-limit-tokens': '30000',
      'x-ratelimit-remaining-tokens': '0', 'x-ratelimit-reset-tokens': '2.4s' });
    return [429, { error: {
      message: `Rate limit reached for ${model} in organization org-stub on tokens per min (TPM): ` +
        'Limit 30000, Used 29412, Requested 1450. Please try again in 1.724s. ' +
        'Visit https://platform.openai.com/account/rate-limits to learn more.',
      type: 'tokens', param: null, code: 'rate_limit_exceeded' } }, headers];
  }
  const respModel = { 'gpt-4o': 'gpt-4o-2024-08-06' }[model] ?? model;
  let output, input, cached, out;
  if (outcome === 'tool_calls') {
    const fn = body.tools?.[0]?.name ?? 'search_docs';
    output = [{ type: 'function_call', id: 'fc_' + digits('fc' + seed, '0123456789abcdef', 48), status: 'completed',
      call_id: 'call_' + digits('call' + seed, B62, 24), name: fn,
      arguments: JSON.stringify({ query: 'reset two-factor authentication' }) }];
    [input, cached, out] = [1450, 1024, 38];
  } else {
    output = [{ type: 'message', id: 'msg_' + digits('msg' + seed, '0123456789abcdef', 48), status: 'completed',
      role: 'assistant', content: [{ type: 'output_text', annotations: [], logprobs: [],
        text: 'You can reset two-factor authentication from Settings > Security > 2FA.' }] }];
    [input, cached, out] = [1610, 1408, 24];
  }
  return [200, {
    id: 'resp_' + digits('resp' + seed, '0123456789abcdef', 48),
    object: 'response', created_at: CREATED, status: 'completed', error: null, incomplete_details: null,
    model: respModel, output, parallel_tool_calls: true, service_tier: 'default',
    temperature: body.temperature ?? 1, top_p: 1, max_output_tokens: body.max_output_tokens ?? null,
    usage: { input_tokens: input, input_tokens_details: { cached_tokens: cached },
      output_tokens: out, output_tokens_details: { reasoning_tokens: 0 }, total_tokens: input + out },
  }, headers];
}

// ------------------------------------------------------------------------------------------
// OTLP/JSON encoder (mirrors @opentelemetry/otlp-transformer's JSON with hex ids, except that
// int64s are decimal strings as the proto3 JSON mapping says)
// ------------------------------------------------------------------------------------------
function anyValue(v) {
  if (v === null || v === undefined) return {};
  switch (typeof v) {
    case 'string': return { stringValue: v };
    case 'boolean': return { boolValue: v };
    case 'number':
      if (Number.isInteger(v)) return { intValue: String(v) }; // as the JS OTLP exporter: integral numbers are ints
      if (Number.isNaN(v)) return { doubleValue: 'NaN' };
      if (!Number.isFinite(v)) return { doubleValue: v > 0 ? 'Infinity' : '-Infinity' };
      return { doubleValue: v };
    case 'bigint': return { intValue: v.toString() };
    default:
      if (v instanceof Uint8Array) return { bytesValue: Buffer.from(v).toString('base64') };
      if (Array.isArray(v)) return { arrayValue: { values: v.map(anyValue) } };
      if (typeof v === 'object') return { kvlistValue: { values: keyValues(v) } };
      return { stringValue: String(v) };
  }
}
const keyValues = (attrs) => Object.entries(attrs ?? {}).map(([key, value]) => ({ key, value: anyValue(value) }));
const nanos = ([s, ns]) => (BigInt(s) * 1000000000n + BigInt(ns)).toString();
// As the JS OTLP exporter: low byte = the span's trace flags, plus HAS_IS_REMOTE (0x100) and IS_REMOTE (0x200).
const flags = (traceFlags, isRemote) => (traceFlags & 0xff) | 0x100 | (isRemote ? 0x200 : 0);

function encodeSpan(s) {
  const ctx = s.spanContext();
  const out = { traceId: ctx.traceId, spanId: ctx.spanId };
  const ts = ctx.traceState?.serialize() ?? '';
  if (ts) out.traceState = ts;
  if (s.parentSpanContext?.spanId) out.parentSpanId = s.parentSpanContext.spanId;
  out.flags = flags(ctx.traceFlags, s.parentSpanContext?.isRemote);
  out.name = s.name;
  out.kind = s.kind + 1; // JS SpanKind INTERNAL=0 SERVER=1 CLIENT=2 ...; OTLP INTERNAL=1 ...
  out.startTimeUnixNano = nanos(s.startTime);
  out.endTimeUnixNano = nanos(s.endTime);
  out.attributes = keyValues(s.attributes);
  if (s.droppedAttributesCount) out.droppedAttributesCount = s.droppedAttributesCount;
  if (s.events?.length) {
    out.events = s.events.map((e) => ({ timeUnixNano: nanos(e.time), name: e.name, attributes: keyValues(e.attributes),
      ...(e.droppedAttributesCount ? { droppedAttributesCount: e.droppedAttributesCount } : {}) }));
  }
  if (s.droppedEventsCount) out.droppedEventsCount = s.droppedEventsCount;
  if (s.links?.length) {
    out.links = s.links.map((l) => {
      const d = { traceId: l.context.traceId, spanId: l.context.spanId };
      const lts = l.context.traceState?.serialize() ?? '';
      if (lts) d.traceState = lts;
      d.attributes = keyValues(l.attributes);
      if (l.droppedAttributesCount) d.droppedAttributesCount = l.droppedAttributesCount;
      d.flags = flags(l.context.traceFlags, l.context.isRemote);
      return d;
    });
  }
  if (s.droppedLinksCount) out.droppedLinksCount = s.droppedLinksCount;
  const status = {};
  if (s.status?.code) status.code = s.status.code; // UNSET=0 (omitted), OK=1, ERROR=2
  if (s.status?.message) status.message = s.status.message;
  out.status = status;
  return out;
}

function encodeRequest(s) {
  const scope = s.instrumentationScope ?? { name: '' };
  const scopeObj = { name: scope.name ?? '' };
  if (scope.version) scopeObj.version = scope.version;
  const scopeSpans = { scope: scopeObj, spans: [encodeSpan(s)] };
  if (scope.schemaUrl) scopeSpans.schemaUrl = scope.schemaUrl;
  const resourceSpans = { resource: { attributes: keyValues(s.resource.attributes) }, scopeSpans: [scopeSpans] };
  if (s.resource.schemaUrl) resourceSpans.schemaUrl = s.resource.schemaUrl;
  return { resourceSpans: [resourceSpans] };
}

// ------------------------------------------------------------------------------------------
// Scenarios (child process)
// ------------------------------------------------------------------------------------------
async function runScenario(name, outFile) {
  const { context, trace } = await import('@opentelemetry/api');
  const { AsyncLocalStorageContextManager } = await import('@opentelemetry/context-async-hooks');
  const { BasicTracerProvider, SimpleSpanProcessor, InMemorySpanExporter } = await import('@opentelemetry/sdk-trace-base');
  const { defaultResource, resourceFromAttributes } = await import('@opentelemetry/resources');
  const { registerTelemetry, generateText, tool, stepCountIs } = await import('ai');
  const { OpenTelemetry } = await import('@ai-sdk/otel');
  const { createOpenAI } = await import('@ai-sdk/openai');
  const { z } = await import('zod');

  const hex = seededHex(name);
  const idGenerator = { generateTraceId: () => hex(32), generateSpanId: () => hex(16) };
  const resource = defaultResource().merge(resourceFromAttributes({
    'service.name': 'support-agent', 'service.version': '1.4.2', 'service.instance.id': 'support-agent-0',
    'deployment.environment.name': 'test', 'plume.fixture.scenario': name,
  }));
  const exporter = new InMemorySpanExporter();
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  const provider = new BasicTracerProvider({ resource, idGenerator, spanProcessors: [new SimpleSpanProcessor(exporter)] });
  trace.setGlobalTracerProvider(provider);
  registerTelemetry(new OpenTelemetry());

  const stub = await startStub(name);
  const openai = createOpenAI({ baseURL: `http://127.0.0.1:${stub.port}/v1`, apiKey: 'sk-stub-not-a-real-key' });
  const tools = {
    search_docs: tool({
      description: 'Search the product documentation.',
      inputSchema: z.object({ query: z.string() }),
      execute: async () => TOOL_RESULT,
    }),
  };
  const common = { model: openai('gpt-4o'), system: SYSTEM_PROMPT, prompt: QUESTION, temperature: 0.2,
    maxOutputTokens: 512, maxRetries: 0, telemetry: { functionId: 'support' } };

  if (name === 'ai_sdk_tool_loop') {
    stub.plan('tool_calls', 'ok');
    const r = await generateText({ ...common, tools, stopWhen: stepCountIs(5) });
    console.error(`[${name}] steps=${r.steps.length} finish=${r.finishReason} text=${JSON.stringify(r.text)}`);
  } else if (name === 'ai_sdk_error') {
    stub.plan('rate_limit');
    try {
      await generateText({ ...common, tools });
      throw new Error('expected the 429 to fail the call');
    } catch (e) {
      console.error(`[${name}] error as expected: ${e.name}: ${e.statusCode}`);
    }
  } else {
    throw new Error(`unknown scenario ${name}`);
  }
  await provider.forceFlush();
  await stub.close();
  console.error(`[${name}] requests: ${stub.requests.map((q) => `${q.method} ${q.url}`).join(', ')}`);
  const spans = exporter.getFinishedSpans();
  writeFileSync(outFile, spans.map((s) => JSON.stringify(encodeRequest(s)) + '\n').join(''));
  console.error(`[${name}] wrote ${spans.length} spans to ${outFile}`);
  await provider.shutdown();
}

// ------------------------------------------------------------------------------------------
// Check
// ------------------------------------------------------------------------------------------
function check(dir) {
  let bad = 0;
  for (const name of SCENARIOS) {
    const file = path.join(dir, `${name}.jsonl`);
    if (!existsSync(file)) { console.error(`check: missing ${file}`); bad++; continue; }
    const lines = readFileSync(file, 'utf8').split('\n').filter((l) => l.length);
    const ids = new Set();
    const parents = [];
    lines.forEach((line, i) => {
      const fail = (m) => { console.error(`check: ${name}.jsonl:${i + 1}: ${m}`); bad++; };
      let req;
      try { req = JSON.parse(line); } catch (e) { return fail(`not JSON: ${e.message}`); }
      const rs = req.resourceSpans;
      if (rs?.length !== 1 || rs[0].scopeSpans?.length !== 1 || rs[0].scopeSpans[0].spans?.length !== 1) return fail('not 1/1/1');
      const sp = rs[0].scopeSpans[0].spans[0];
      if (!/^[0-9a-f]{32}$/.test(sp.traceId) || /^0+$/.test(sp.traceId)) fail(`bad traceId ${sp.traceId}`);
      if (!/^[0-9a-f]{16}$/.test(sp.spanId) || /^0+$/.test(sp.spanId)) fail(`bad spanId ${sp.spanId}`);
      if ('parentSpanId' in sp && !/^[0-9a-f]{16}$/.test(sp.parentSpanId)) fail(`bad parentSpanId ${sp.parentSpanId}`);
      if (!/^\d+$/.test(sp.startTimeUnixNano) || !/^\d+$/.test(sp.endTimeUnixNano)) fail('times not decimal strings');
      if (!Number.isInteger(sp.kind)) fail('kind not an integer');
      if ('code' in sp.status && !Number.isInteger(sp.status.code)) fail('status.code not an integer');
      const walk = (v) => {
        if (v && typeof v === 'object') {
          if ('intValue' in v && !/^-?\d+$/.test(v.intValue)) fail(`intValue not a decimal string: ${v.intValue}`);
          Object.values(v).forEach(walk);
        }
      };
      walk(req);
      ids.add(sp.spanId);
      if (sp.parentSpanId) parents.push(sp.parentSpanId);
    });
    for (const p of parents) if (!ids.has(p)) { console.error(`check: ${name}: parent ${p} not in file`); bad++; }
    console.error(`check: ${name}.jsonl: ${lines.length} spans`);
  }
  if (bad) { console.error(`check: ${bad} problem(s)`); process.exit(1); }
  console.error('check: ok');
}

// ------------------------------------------------------------------------------------------
let argv = process.argv.slice(2);
let OUT_DIR = HERE;
if (argv[0] === '--out-dir') { OUT_DIR = path.resolve(argv[1]); argv = argv.slice(2); }
if (argv[0] === '--scenario') {
  await runScenario(argv[1], argv[3]);
} else if (argv[0] === '--check') {
  check(OUT_DIR);
} else {
  const names = argv.length ? argv : SCENARIOS;
  for (const name of names) {
    const r = spawnSync(process.execPath, [fileURLToPath(import.meta.url), '--scenario', name, '--out',
      path.join(OUT_DIR, `${name}.jsonl`)], { stdio: 'inherit' });
    if (r.status !== 0) { console.error(`scenario ${name} failed (${r.status})`); process.exit(1); }
  }
  check(OUT_DIR);
}
