#!/usr/bin/env python3
"""Records GenAI span fixtures from real instrumentation libraries against a local stub.

    python record.py                 # every scenario, then the check; writes ../<scenario>.jsonl
    python record.py NAME ...        # only these scenarios (names without .jsonl), then the check
    python record.py --check         # only the check of the files already written
    python record.py --list          # scenario names

Each scenario runs in a child process of its own (`--scenario NAME --out FILE`): instrumentors
patch SDK classes process-wide and OpenTelemetry's global tracer provider can be set only once,
so a process per scenario keeps them apart. Each child starts the stub server
(stub_server.py) on 127.0.0.1 on a free port, makes its own TracerProvider with an in-memory
exporter, instruments, makes its calls, and writes one line per finished span, in the order
the spans ended, each line a whole ExportTraceServiceRequest in OTLP/JSON (encoder below:
hex ids, decimal-string int64s, integer enums).

Trace and span ids come from a random generator seeded with the scenario name, so a re-run gives
the same ids as long as the libraries create the same spans in the same order; timestamps and
durations are real and differ run to run.
"""
from __future__ import annotations

import base64
import contextlib
import json
import math
import os
import random
import subprocess
import sys
import time
import warnings
from collections.abc import Mapping, Sequence

sys.dont_write_bytecode = True  # leave no __pycache__ beside the fixtures

HERE = os.path.dirname(os.path.abspath(__file__))
OUT_DIR = os.path.dirname(HERE)

SYSTEM_PROMPT = ("You are the support assistant of Acme Cloud. Answer from the product documentation; "
                 "call search_docs when you need to look something up.")
QUESTION = "How do I reset two-factor authentication on my account?"
LONG_QUESTION = "Explain step by step how to migrate a billing account between organizations."
TOOL_RESULT = json.dumps({"results": [{"title": "Reset 2FA", "url": "https://docs.acme.test/security/2fa#reset",
                                       "snippet": "Settings > Security > 2FA > Reset."}]})

OPENAI_TOOLS = [{"type": "function", "function": {
    "name": "search_docs", "description": "Search the product documentation.",
    "parameters": {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]}}}]

AGENT = "support"


# --------------------------------------------------------------------------------------------
# OTLP/JSON encoder (written here on purpose: protobuf's json_format gives base64 ids)
# --------------------------------------------------------------------------------------------

# Python SpanKind: INTERNAL=0 SERVER=1 CLIENT=2 PRODUCER=3 CONSUMER=4; OTLP: UNSPECIFIED=0, INTERNAL=1, ...
def _otlp_kind(kind) -> int:
    return int(kind.value) + 1


def any_value(v) -> dict:
    if v is None:
        return {}
    if isinstance(v, bool):
        return {"boolValue": v}
    if isinstance(v, int):
        return {"intValue": str(v)}
    if isinstance(v, float):
        if math.isnan(v):
            return {"doubleValue": "NaN"}
        if math.isinf(v):
            return {"doubleValue": "Infinity" if v > 0 else "-Infinity"}
        return {"doubleValue": v}
    if isinstance(v, str):
        return {"stringValue": v}
    if isinstance(v, (bytes, bytearray)):
        return {"bytesValue": base64.b64encode(bytes(v)).decode()}
    if isinstance(v, Mapping):
        return {"kvlistValue": {"values": key_values(v)}}
    if isinstance(v, Sequence):
        return {"arrayValue": {"values": [any_value(x) for x in v]}}
    return {"stringValue": str(v)}


def key_values(attrs) -> list:
    return [{"key": str(k), "value": any_value(v)} for k, v in (attrs or {}).items()]


def _hex_trace(i: int) -> str:
    return format(i, "032x")


def _hex_span(i: int) -> str:
    return format(i, "016x")


def _flags(parent_ctx) -> int:
    # As the OTel Python OTLP exporter sets them: HAS_IS_REMOTE (0x100), plus IS_REMOTE (0x200).
    f = 0x100
    if parent_ctx is not None and parent_ctx.is_remote:
        f |= 0x200
    return f


def encode_span(s) -> dict:
    ctx = s.get_span_context()
    out = {"traceId": _hex_trace(ctx.trace_id), "spanId": _hex_span(ctx.span_id)}
    ts = ctx.trace_state.to_header() if ctx.trace_state else ""
    if ts:
        out["traceState"] = ts
    if s.parent is not None:
        out["parentSpanId"] = _hex_span(s.parent.span_id)
    out["flags"] = _flags(s.parent)
    out["name"] = s.name
    out["kind"] = _otlp_kind(s.kind)
    out["startTimeUnixNano"] = str(s.start_time)
    out["endTimeUnixNano"] = str(s.end_time)
    out["attributes"] = key_values(s.attributes)
    if s.dropped_attributes:
        out["droppedAttributesCount"] = s.dropped_attributes
    if s.events:
        out["events"] = [dict({"timeUnixNano": str(e.timestamp), "name": e.name,
                               "attributes": key_values(e.attributes)},
                              **({"droppedAttributesCount": e.dropped_attributes}
                                 if getattr(e, "dropped_attributes", 0) else {}))
                         for e in s.events]
    if s.dropped_events:
        out["droppedEventsCount"] = s.dropped_events
    if s.links:
        links = []
        for l in s.links:
            d = {"traceId": _hex_trace(l.context.trace_id), "spanId": _hex_span(l.context.span_id)}
            lts = l.context.trace_state.to_header() if l.context.trace_state else ""
            if lts:
                d["traceState"] = lts
            d["attributes"] = key_values(l.attributes)
            d["flags"] = _flags(l.context)
            links.append(d)
        out["links"] = links
    if s.dropped_links:
        out["droppedLinksCount"] = s.dropped_links
    status = {}
    if s.status.status_code.value:
        status["code"] = int(s.status.status_code.value)  # UNSET=0 (omitted), OK=1, ERROR=2
    if s.status.description:
        status["message"] = s.status.description
    out["status"] = status
    return out


def encode_request(s) -> dict:
    """One span as a whole ExportTraceServiceRequest."""
    scope = s.instrumentation_scope
    scope_obj = {"name": scope.name if scope else ""}
    if scope and scope.version:
        scope_obj["version"] = scope.version
    if scope and scope.attributes:
        scope_obj["attributes"] = key_values(scope.attributes)
    scope_spans = {"scope": scope_obj, "spans": [encode_span(s)]}
    if scope and scope.schema_url:
        scope_spans["schemaUrl"] = scope.schema_url
    resource_spans = {"resource": {"attributes": key_values(s.resource.attributes)},
                      "scopeSpans": [scope_spans]}
    if s.resource.schema_url:
        resource_spans["schemaUrl"] = s.resource.schema_url
    return {"resourceSpans": [resource_spans]}


# --------------------------------------------------------------------------------------------
# Scenario plumbing
# --------------------------------------------------------------------------------------------

def make_provider(seed: str):
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.sdk.trace.id_generator import IdGenerator

    class SeededIdGenerator(IdGenerator):
        def __init__(self, seed_text: str) -> None:
            self._r = random.Random(seed_text)

        def generate_span_id(self) -> int:
            while True:
                v = self._r.getrandbits(64)
                if v:
                    return v

        def generate_trace_id(self) -> int:
            while True:
                v = self._r.getrandbits(128)
                if v:
                    return v

    resource = Resource.create({"service.name": "support-agent", "service.version": "1.4.2",
                                "service.instance.id": "support-agent-0",
                                "deployment.environment.name": "test", "plume.fixture.scenario": seed})
    tp = TracerProvider(resource=resource, id_generator=SeededIdGenerator(seed))
    exporter = InMemorySpanExporter()
    tp.add_span_processor(SimpleSpanProcessor(exporter))
    return tp, exporter


class App:
    """The application's own (manual) spans: invoke_agent roots and execute_tool spans."""

    def __init__(self, tp):
        from opentelemetry import trace
        self.trace = trace
        self.tracer = tp.get_tracer("support-agent.app", "1.4.2")

    def agent(self):
        from opentelemetry.trace import SpanKind
        return self.tracer.start_as_current_span(
            f"invoke_agent {AGENT}", kind=SpanKind.INTERNAL,
            attributes={"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": AGENT},
            record_exception=False, set_status_on_exception=False)

    def fail(self, span, exc: BaseException):
        """The agent run failed because a call raised: ERROR status, error.type, exception event."""
        from opentelemetry.trace import Status, StatusCode
        span.set_attribute("error.type", type(exc).__name__)
        span.record_exception(exc)
        span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))

    def tool(self, name: str, call_id: str, arguments: str, *, timeout: bool) -> str:
        from opentelemetry.trace import SpanKind, Status, StatusCode
        with self.tracer.start_as_current_span(
                f"execute_tool {name}", kind=SpanKind.INTERNAL,
                attributes={"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": name,
                            "gen_ai.tool.call.id": call_id, "gen_ai.tool.type": "function",
                            "gen_ai.tool.call.arguments": arguments},
                record_exception=False, set_status_on_exception=False) as span:
            if timeout:
                time.sleep(0.25)
                exc = TimeoutError("search_docs timed out after 0.25s")
                span.set_attribute("error.type", "TimeoutError")
                span.record_exception(exc)
                span.set_status(Status(StatusCode.ERROR, f"TimeoutError: {exc}"))
                return ""
            time.sleep(0.08)
            span.set_attribute("gen_ai.tool.call.result", TOOL_RESULT)
            span.set_status(Status(StatusCode.OK))
            return TOOL_RESULT


def openai_client(base_url: str):
    import openai
    return openai.OpenAI(base_url=base_url + "/v1", api_key="sk-test", max_retries=0)


def anthropic_client(base_url: str):
    import anthropic
    return anthropic.Anthropic(base_url=base_url, api_key="sk-ant-test", max_retries=0)


def run_openai_calls(client, app: App, stub, *, tool_spans: bool) -> None:
    """Four agent runs (one trace each):
    A: chat gpt-4o -> tool_calls; the tool (search_docs) runs [with tool_spans: attempt 1 times out,
       attempt 2 succeeds]; chat gpt-4o with the tool result -> stop.
    B: chat o4-mini -> length (max_completion_tokens=300; reasoning tokens).
    C: chat gpt-4o -> HTTP 429.   D: chat gpt-4o -> HTTP 400 context length exceeded.
    `stub.plan(...)` tells the in-process stub what to answer next, so nothing in the requests
    (prompts, headers) shows the test's intent."""
    import openai
    messages = [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": QUESTION}]
    with app.agent():
        stub.plan("tool_calls")
        r = client.chat.completions.create(model="gpt-4o", messages=messages, tools=OPENAI_TOOLS,
                                           temperature=0.2, max_tokens=512)
        call = r.choices[0].message.tool_calls[0]
        if tool_spans:
            app.tool(call.function.name, call.id, call.function.arguments, timeout=True)
            result = app.tool(call.function.name, call.id, call.function.arguments, timeout=False)
        else:
            result = TOOL_RESULT
        messages2 = messages + [
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": call.id, "type": "function",
                 "function": {"name": call.function.name, "arguments": call.function.arguments}}]},
            {"role": "tool", "tool_call_id": call.id, "content": result}]
        stub.plan("ok")
        client.chat.completions.create(model="gpt-4o", messages=messages2, tools=OPENAI_TOOLS,
                                       temperature=0.2, max_tokens=512)
    with app.agent():
        stub.plan("length")
        client.chat.completions.create(model="o4-mini", messages=[{"role": "user", "content": LONG_QUESTION}],
                                       max_completion_tokens=300)
    for oc in ("rate_limit", "context_length"):
        with app.agent() as span:
            stub.plan(oc)
            try:
                client.chat.completions.create(model="gpt-4o", messages=messages, temperature=0.2, max_tokens=512)
                raise SystemExit(f"expected an error for {oc}")
            except openai.APIStatusError as e:
                app.fail(span, e)


def run_anthropic_calls(client, app: App, stub, *, root: bool = True) -> None:
    """Three agent runs (one trace each, or no app span at all when not `root`): claude-sonnet-4-5
    -> end_turn with cache read 2048 and cache write 1024 tokens; -> max_tokens (max_tokens=64);
    -> HTTP 429."""
    import anthropic
    agent = app.agent if root else contextlib.nullcontext
    system = [{"type": "text", "text": SYSTEM_PROMPT, "cache_control": {"type": "ephemeral"}}]
    messages = [{"role": "user", "content": QUESTION}]
    with agent():
        stub.plan("ok")
        client.messages.create(model="claude-sonnet-4-5", max_tokens=1024, system=system, messages=messages)
    with agent():
        stub.plan("length")
        client.messages.create(model="claude-sonnet-4-5", max_tokens=64, system=system,
                               messages=[{"role": "user", "content": LONG_QUESTION}])
    with agent() as span:
        stub.plan("rate_limit")
        try:
            client.messages.create(model="claude-sonnet-4-5", max_tokens=1024, system=system, messages=messages)
            raise SystemExit("expected a rate limit error")
        except anthropic.APIStatusError as e:
            if root:
                app.fail(span, e)


def run_openai_retry(client, app: App, stub) -> None:
    """One agent run; the application retries one logical call itself: attempt 1 -> 429,
    wait 0.2 s, attempt 2 (the identical request) -> stop."""
    import openai
    messages = [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": QUESTION}]
    stub.plan("rate_limit", "ok")
    with app.agent():
        for attempt in (1, 2):
            try:
                client.chat.completions.create(model="gpt-4o", messages=messages, temperature=0.2, max_tokens=512)
                break
            except openai.RateLimitError:
                if attempt == 2:
                    raise
                time.sleep(0.2)


def run_openai_genuine_retry(client, app: App, stub) -> None:
    """One agent run; the application calls twice with the identical request because the first
    answer was unusable: attempt 1 -> 200, finish_reason length (truncated at max_tokens=64),
    attempt 2 -> 200, stop. Both calls succeed with usage, and their response ids differ."""
    messages = [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": QUESTION}]
    stub.plan("truncated", "ok")
    ids = []
    with app.agent():
        for attempt in (1, 2):
            r = client.chat.completions.create(model="gpt-4o", messages=messages, temperature=0.2, max_tokens=64)
            ids.append(r.id)
            if r.choices[0].finish_reason != "length":
                break
    if len(ids) != 2 or ids[0] == ids[1]:
        raise SystemExit(f"expected two calls with different response ids, got {ids}")


def run_anthropic_genuine_retry(client, app: App, stub) -> None:
    """The Anthropic counterpart of run_openai_genuine_retry: attempt 1 -> max_tokens (256),
    attempt 2 (the identical request) -> end_turn; two response ids."""
    system = [{"type": "text", "text": SYSTEM_PROMPT, "cache_control": {"type": "ephemeral"}}]
    messages = [{"role": "user", "content": QUESTION}]
    stub.plan("truncated", "ok")
    ids = []
    with app.agent():
        for attempt in (1, 2):
            r = client.messages.create(model="claude-sonnet-4-5", max_tokens=256, system=system, messages=messages)
            ids.append(r.id)
            if r.stop_reason != "max_tokens":
                break
    if len(ids) != 2 or ids[0] == ids[1]:
        raise SystemExit(f"expected two calls with different response ids, got {ids}")


def run_langchain_calls(base_url: str, app: App, stub, *, chain: bool) -> None:
    """Two agent runs through LangChain's ChatOpenAI (which calls the OpenAI SDK):
    A: gpt-4o -> stop (1610 prompt / 1408 cached / 24 completion);  B: gpt-4o -> HTTP 429.
    Without `chain` the model is invoked directly with a message list; with `chain` it runs in a
    ChatPromptTemplate | ChatOpenAI sequence (so a framework has chain/workflow steps to show)."""
    import openai
    from langchain_core.prompts import ChatPromptTemplate
    from langchain_openai import ChatOpenAI
    llm = ChatOpenAI(model="gpt-4o", base_url=base_url + "/v1", api_key="sk-test", max_retries=0,
                     temperature=0.2, max_tokens=512)
    if chain:
        runnable = ChatPromptTemplate.from_messages([("system", SYSTEM_PROMPT), ("human", "{question}")]) | llm
        request = {"question": QUESTION}
    else:
        runnable = llm
        request = [("system", SYSTEM_PROMPT), ("human", QUESTION)]
    with app.agent():
        stub.plan("ok")
        runnable.invoke(request)
    with app.agent() as span:
        stub.plan("rate_limit")
        try:
            runnable.invoke(request)
            raise SystemExit("expected a rate limit error")
        except openai.RateLimitError as e:
            app.fail(span, e)


# name -> (instrumentation setup, calls, expected spans by scope name)
SCENARIOS = {
    "openai_v2_chat": {
        "sdk": "openai", "instr": "openai_v2", "tool_spans": True,
        "expect": {"opentelemetry.util.genai.handler": 5, "support-agent.app": 6},
        "names": {"chat gpt-4o": 4, "chat o4-mini": 1, "invoke_agent support": 4, "execute_tool search_docs": 2},
        "errors": 5, "traces": 4,
    },
    "openllmetry_openai_chat": {
        "sdk": "openai", "instr": "openllmetry_openai",
        "expect": {"opentelemetry.instrumentation.openai.v1": 5, "support-agent.app": 4},
        "names": {"openai.chat": 5, "invoke_agent support": 4}, "errors": 4, "traces": 4,
    },
    "openinference_openai_chat": {
        "sdk": "openai", "instr": "openinference_openai",
        "expect": {"openinference.instrumentation.openai": 5, "support-agent.app": 4},
        "names": {"ChatCompletion": 5, "invoke_agent support": 4}, "errors": 4, "traces": 4,
    },
    "anthropic_sdk_openinference": {
        "sdk": "anthropic", "instr": "openinference_anthropic",
        "expect": {"openinference.instrumentation.anthropic": 3, "com.anthropic.sdk.python": 3,
                   "support-agent.app": 3},
        "names": {"messages.create": 3, "anthropic.messages.create": 3, "invoke_agent support": 3},
        "errors": 3, "traces": 3,
    },
    "anthropic_sdk_openllmetry": {
        "sdk": "anthropic", "instr": "openllmetry_anthropic",
        "expect": {"opentelemetry.instrumentation.anthropic": 3, "com.anthropic.sdk.python": 3,
                   "support-agent.app": 3},
        "names": {"anthropic.chat": 3, "anthropic.messages.create": 3, "invoke_agent support": 3},
        "errors": 3, "traces": 3,
    },
    # Not in the original list: the same calls with no application span, which shows that
    # OpenLLMetry's span and the SDK's own span of one call then land in different traces.
    "anthropic_sdk_openllmetry_noroot": {
        "sdk": "anthropic", "instr": "openllmetry_anthropic", "root": False,
        "expect": {"opentelemetry.instrumentation.anthropic": 3, "com.anthropic.sdk.python": 3},
        "names": {"anthropic.chat": 3, "anthropic.messages.create": 3}, "errors": 2, "traces": 6,
    },
    "anthropic_sdk_only": {
        "sdk": "anthropic", "instr": None,
        "expect": {"com.anthropic.sdk.python": 3, "support-agent.app": 3},
        "names": {"anthropic.messages.create": 3, "invoke_agent support": 3}, "errors": 2, "traces": 3,
    },
    "openai_retry": {
        "sdk": "openai", "instr": "openai_v2", "retry": True,
        "expect": {"opentelemetry.util.genai.handler": 2, "support-agent.app": 1},
        "names": {"chat gpt-4o": 2, "invoke_agent support": 1}, "errors": 1, "traces": 1,
    },
    "openai_genuine_retry": {
        "sdk": "openai", "instr": "openai_v2", "calls": "genuine_retry",
        "expect": {"opentelemetry.util.genai.handler": 2, "support-agent.app": 1},
        "names": {"chat gpt-4o": 2, "invoke_agent support": 1}, "errors": 0, "traces": 1,
    },
    # OpenInference's LangChain tracer never makes its span current, so the OpenAI SDK's
    # ChatCompletion span is a sibling of the ChatOpenAI span (both under the app root), not its child.
    "langchain_openinference": {
        "sdk": "langchain", "instr": ["openinference_langchain", "openinference_openai"],
        "expect": {"openinference.instrumentation.langchain": 2, "openinference.instrumentation.openai": 2,
                   "support-agent.app": 2},
        "names": {"ChatOpenAI": 2, "ChatCompletion": 2, "invoke_agent support": 2}, "errors": 3, "traces": 2,
    },
    # OpenLLMetry's LangChain instrumentation suppresses its own OpenAI instrumentor's span (context
    # key SUPPRESS_LANGUAGE_MODEL_INSTRUMENTATION_KEY): the openai instrumentor is active, yet no
    # openai.chat span is written.
    "langchain_openllmetry": {
        "sdk": "langchain", "instr": ["openllmetry_langchain", "openllmetry_openai"], "chain": True,
        "expect": {"opentelemetry.instrumentation.langchain": 6, "support-agent.app": 2},
        "names": {"RunnableSequence.workflow": 2, "execute_task ChatPromptTemplate": 2, "ChatOpenAI.chat": 2,
                  "invoke_agent support": 2}, "errors": 3, "traces": 2,
    },
    "anthropic_sdk_openinference_retry": {
        "sdk": "anthropic", "instr": "openinference_anthropic", "calls": "genuine_retry",
        "expect": {"openinference.instrumentation.anthropic": 2, "com.anthropic.sdk.python": 2,
                   "support-agent.app": 1},
        "names": {"messages.create": 2, "anthropic.messages.create": 2, "invoke_agent support": 1},
        "errors": 0, "traces": 1,
    },
}


def instrument(kind, tp) -> None:
    if kind is None:
        return
    if isinstance(kind, list):  # several instrumentors, in this order
        for k in kind:
            instrument(k, tp)
        return
    if kind == "openai_v2":
        from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor
    elif kind == "openllmetry_openai":
        from opentelemetry.instrumentation.openai import OpenAIInstrumentor
    elif kind == "openinference_openai":
        from openinference.instrumentation.openai import OpenAIInstrumentor
    elif kind == "openllmetry_anthropic":
        from opentelemetry.instrumentation.anthropic import AnthropicInstrumentor as OpenAIInstrumentor
    elif kind == "openinference_anthropic":
        from openinference.instrumentation.anthropic import AnthropicInstrumentor as OpenAIInstrumentor
    elif kind == "openllmetry_langchain":
        from opentelemetry.instrumentation.langchain import LangchainInstrumentor as OpenAIInstrumentor
    elif kind == "openinference_langchain":
        from openinference.instrumentation.langchain import LangChainInstrumentor as OpenAIInstrumentor
    else:
        raise SystemExit(f"unknown instrumentation {kind}")
    OpenAIInstrumentor().instrument(tracer_provider=tp)


def run_scenario(name: str, out_path: str) -> None:
    warnings.simplefilter("ignore")  # e.g. the Anthropic SDK's model deprecation warning
    sys.path.insert(0, HERE)
    import stub_server
    from opentelemetry import trace

    spec = SCENARIOS[name]
    srv, base_url = stub_server.start(salt=name)
    tp, exporter = make_provider(name)
    # Global provider: the Anthropic SDK traces itself with it (it resolves its tracer when a client
    # is constructed); the instrumentors are given tp explicitly.
    trace.set_tracer_provider(tp)
    instrument(spec["instr"], tp)
    app = App(tp)
    if spec["sdk"] == "langchain":
        run_langchain_calls(base_url, app, srv.state, chain=spec.get("chain", False))
    elif spec["sdk"] == "openai":
        client = openai_client(base_url)
        if spec.get("retry"):
            run_openai_retry(client, app, srv.state)
        elif spec.get("calls") == "genuine_retry":
            run_openai_genuine_retry(client, app, srv.state)
        else:
            run_openai_calls(client, app, srv.state, tool_spans=spec.get("tool_spans", False))
    elif spec.get("calls") == "genuine_retry":
        run_anthropic_genuine_retry(anthropic_client(base_url), app, srv.state)
    else:
        run_anthropic_calls(anthropic_client(base_url), app, srv.state, root=spec.get("root", True))
    tp.force_flush()
    spans = exporter.get_finished_spans()
    with open(out_path, "w") as f:
        for s in spans:
            f.write(json.dumps(encode_request(s), separators=(",", ":"), ensure_ascii=False) + "\n")
    srv.shutdown()
    stub_log = ", ".join(f"{r['outcome']}:{r['status']}" for r in srv.state.log)
    print(f"{name}: {len(spans)} spans -> {out_path}  (stub: {stub_log})")

    # Cross-check the hand-written encoder against the OTel OTLP protobuf encoder, when installed.
    try:
        from google.protobuf.json_format import MessageToDict
        from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    except ImportError:
        return
    for s in spans:
        ref = MessageToDict(encode_spans([s]), use_integers_for_enums=True)
        mine = normalize_for_compare(encode_request(s))
        if normalize_for_compare(b64_ids_to_hex(ref)) != mine:
            raise SystemExit(f"{name}: encoder mismatch for span {s.name}:\n{json.dumps(ref)}\n{json.dumps(mine)}")
    print(f"{name}: encoder cross-check: all {len(spans)} lines equal the OTLP protobuf encoding "
          "(ids base64 -> hex, empty fields dropped)")


def b64_ids_to_hex(o):
    if isinstance(o, dict):
        return {k: (base64.b64decode(v).hex() if k in ("traceId", "spanId", "parentSpanId") else b64_ids_to_hex(v))
                for k, v in o.items()}
    if isinstance(o, list):
        return [b64_ids_to_hex(x) for x in o]
    return o


def normalize_for_compare(o):
    """Drops empty containers (protobuf's JSON omits them), so both encodings compare equal."""
    if isinstance(o, dict):
        d = {k: normalize_for_compare(v) for k, v in o.items()}
        return {k: v for k, v in d.items() if v not in ({}, [], None, "")}
    if isinstance(o, list):
        return [normalize_for_compare(x) for x in o]
    return o


# --------------------------------------------------------------------------------------------
# Check
# --------------------------------------------------------------------------------------------

def _is_hex(s, n) -> bool:
    return isinstance(s, str) and len(s) == n and all(c in "0123456789abcdef" for c in s)


def short_scope(name: str) -> str:
    for long, short in (("opentelemetry.instrumentation.", "otel.instr."), ("openinference.instrumentation.", "oi."),
                        ("opentelemetry.util.genai.handler", "util.genai"), ("com.anthropic.sdk.python", "anthropic-sdk"),
                        ("support-agent.app", "app")):
        if name.startswith(long):
            return short + name[len(long):]
    return name


def check(names) -> bool:
    ok_all = True
    rows = []
    for name in names:
        path = os.path.join(OUT_DIR, name + ".jsonl")
        problems = []
        by_scope: dict[str, int] = {}
        by_name: dict[str, int] = {}
        traces, span_ids, parents, errors, lines = set(), set(), [], 0, 0
        if not os.path.exists(path):
            rows.append((name, 0, 0, 0, "-", "MISSING"))
            ok_all = False
            continue
        with open(path) as f:
            for i, line in enumerate(f, 1):
                lines += 1
                try:
                    req = json.loads(line)
                except ValueError as e:
                    problems.append(f"line {i}: not JSON ({e})")
                    continue
                rss = req.get("resourceSpans") or []
                if len(rss) != 1 or len(rss[0].get("scopeSpans") or []) != 1:
                    problems.append(f"line {i}: expected 1 resourceSpans with 1 scopeSpans")
                    continue
                rs = rss[0]
                res = {kv["key"]: kv["value"] for kv in rs["resource"].get("attributes", [])}
                if "service.name" not in res:
                    problems.append(f"line {i}: resource has no service.name")
                ss = rs["scopeSpans"][0]
                scope = ss.get("scope", {})
                if not scope.get("name"):
                    problems.append(f"line {i}: scope has no name")
                for sp in ss.get("spans", []):
                    by_scope[scope.get("name", "")] = by_scope.get(scope.get("name", ""), 0) + 1
                    by_name[sp.get("name", "")] = by_name.get(sp.get("name", ""), 0) + 1
                    if not _is_hex(sp.get("traceId"), 32) or set(sp["traceId"]) == {"0"}:
                        problems.append(f"line {i}: bad traceId {sp.get('traceId')!r}")
                    if not _is_hex(sp.get("spanId"), 16) or set(sp["spanId"]) == {"0"}:
                        problems.append(f"line {i}: bad spanId {sp.get('spanId')!r}")
                    if "parentSpanId" in sp:
                        if not _is_hex(sp["parentSpanId"], 16):
                            problems.append(f"line {i}: bad parentSpanId")
                        parents.append((i, sp["traceId"], sp["parentSpanId"]))
                    for k in ("startTimeUnixNano", "endTimeUnixNano"):
                        if not (isinstance(sp.get(k), str) and sp[k].isdigit()):
                            problems.append(f"line {i}: {k} not a decimal string")
                    if int(sp["endTimeUnixNano"]) < int(sp["startTimeUnixNano"]):
                        problems.append(f"line {i}: ends before it starts")
                    if not isinstance(sp.get("kind"), int) or not 1 <= sp["kind"] <= 5:
                        problems.append(f"line {i}: kind not an integer 1..5")
                    code = sp.get("status", {}).get("code", 0)
                    if not isinstance(code, int) or code not in (0, 1, 2):
                        problems.append(f"line {i}: status code not an integer 0..2")
                    errors += code == 2
                    for kv in sp.get("attributes", []):
                        v = kv["value"]
                        if "intValue" in v and not (isinstance(v["intValue"], str)
                                                    and v["intValue"].lstrip("-").isdigit()):
                            problems.append(f"line {i}: intValue of {kv['key']} not a decimal string")
                    traces.add(sp["traceId"])
                    if (sp["traceId"], sp["spanId"]) in span_ids:
                        problems.append(f"line {i}: duplicate span id")
                    span_ids.add((sp["traceId"], sp["spanId"]))
        for i, t, p in parents:
            if (t, p) not in span_ids:
                problems.append(f"line {i}: parent {p} not in file")
        spec = SCENARIOS[name]
        if by_scope != spec["expect"]:
            problems.append(f"spans by scope {by_scope} != expected {spec['expect']}")
        if by_name != spec["names"]:
            problems.append(f"spans by name {by_name} != expected {spec['names']}")
        if errors != spec["errors"]:
            problems.append(f"{errors} spans with status ERROR, expected {spec['errors']}")
        if len(traces) != spec["traces"]:
            problems.append(f"{len(traces)} traces, expected {spec['traces']}")
        ok = not problems
        ok_all &= ok
        rows.append((name, lines, len(traces), errors,
                     ", ".join(f"{short_scope(k)}={v}" for k, v in sorted(by_scope.items())),
                     "ok" if ok else "FAIL"))
        for p in problems[:20]:
            print(f"  {name}: {p}")
    w = [max(len(str(r[c])) for r in rows + [("file", "spans", "traces", "errors", "by scope", "check")])
         for c in range(6)]
    for r in [("file", "spans", "traces", "errors", "by scope", "check")] + rows:
        print("  ".join(str(x).ljust(w[c]) for c, x in enumerate(r)))
    return ok_all


def main(argv) -> int:
    if argv[:1] == ["--scenario"]:
        name, out = argv[1], argv[3] if argv[2:3] == ["--out"] else os.path.join(OUT_DIR, argv[1] + ".jsonl")
        run_scenario(name, out)
        return 0
    if argv[:1] == ["--list"]:
        print("\n".join(SCENARIOS))
        return 0
    if argv[:1] == ["--check"]:
        return 0 if check(list(SCENARIOS)) else 1
    names = argv or list(SCENARIOS)
    for n in names:
        if n not in SCENARIOS:
            print(f"unknown scenario {n}; known: {', '.join(SCENARIOS)}", file=sys.stderr)
            return 2
    failed = []
    for n in names:
        r = subprocess.run([sys.executable, os.path.abspath(__file__), "--scenario", n,
                            "--out", os.path.join(OUT_DIR, n + ".jsonl")])
        if r.returncode:
            failed.append(n)
    ok = check(list(SCENARIOS) if not argv else names)
    if failed:
        print("scenarios that failed: " + ", ".join(failed), file=sys.stderr)
    return 0 if ok and not failed else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
