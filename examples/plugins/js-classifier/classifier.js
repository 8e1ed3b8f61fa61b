// An example custom classifier in JavaScript: the same rules as
// examples/plugins/rust-classifier, built with componentize-js (build.mjs).
//
// For every tool span it writes:
// - `team.owner`: the team that owns the tool, from a prefix map in config
//   (`owners = { "payments." = "payments-team" }`), else "unowned";
// - `team.error.kind` on failed tool calls: `business` when the error text
//   matches one of `business_errors`, `upstream` for HTTP 5xx, `client` for
//   HTTP 4xx, else `internal`;
// - `team.tool.slow` (derived): true when the call took longer than `slow_ms`.
//
// WIT values arrive as `{ tag, val }`; `s64` values are BigInts.

const [TOOL, STATUS, HTTP, MESSAGE, STATUS_MESSAGE, DURATION] = [0, 1, 2, 3, 4, 5];
const WIDTH = 6;

const DEFAULTS = {
  owners: {},
  business_errors: ['card_declined', 'insufficient_funds', 'not allowed'],
  slow_ms: 2000,
};

let config = { ...DEFAULTS };

const asStr = (v) => (v.tag === 'str' ? v.val : undefined);

// As the Rust SDK's `as_i64`: ints, integral floats, integer strings.
function asI64(v) {
  switch (v.tag) {
    case 'int':
      return v.val;
    case 'float':
      return Number.isInteger(v.val) && Math.abs(v.val) < 9.0e15 ? BigInt(v.val) : undefined;
    case 'str': {
      const s = v.val.trim();
      return /^[+-]?\d+$/.test(s) ? BigInt(s) : undefined;
    }
    default:
      return undefined;
  }
}

// The attributes written for one tool span: [slot, value] pairs.
function classify(v) {
  const tool = asStr(v[TOOL]);
  if (tool === undefined) return [];
  let owner = 'unowned';
  let longest = -1;
  for (const [prefix, team] of Object.entries(config.owners)) {
    if (tool.startsWith(prefix) && prefix.length > longest) {
      owner = team;
      longest = prefix.length;
    }
  }
  const out = [[0, { tag: 'str', val: owner }]];
  const http = asI64(v[HTTP]);
  if (asStr(v[STATUS]) === 'error' || (http !== undefined && http >= 400n)) {
    const text = `${asStr(v[MESSAGE]) ?? ''} ${asStr(v[STATUS_MESSAGE]) ?? ''}`.toLowerCase();
    let kind;
    if (config.business_errors.some((e) => text.includes(e.toLowerCase()))) kind = 'business';
    else if (http !== undefined && http >= 500n) kind = 'upstream';
    else if (http !== undefined && http >= 400n) kind = 'client';
    else kind = 'internal';
    out.push([1, { tag: 'str', val: kind }]);
  }
  const ns = asI64(v[DURATION]);
  if (ns !== undefined) {
    out.push([2, { tag: 'boolean', val: ns > BigInt(config.slow_ms) * 1000000n }]);
  }
  return out;
}

// Rows of WIT values in manifest order. The batch comes packed in columns
// (`record batch` in wit/pipeline.wit): a kind per value sent, the payloads in
// `ints`, `floats` and `text`; sparse batches place each value with `positions`.
const utf8 = new TextDecoder();
function* rows(batch) {
  const values = Array.from({ length: batch.rows * WIDTH }, () => ({ tag: 'absent' }));
  let [ints, floats, texts, start] = [0, 0, 0, 0];
  batch.kinds.forEach((kind, i) => {
    let value;
    switch (kind) {
      case 1: // str
      case 5: {
        // json
        const end = batch.textEnds[texts++];
        const val = utf8.decode(batch.text.subarray(start, end));
        value = { tag: kind === 1 ? 'str' : 'json', val };
        start = end;
        break;
      }
      case 2:
        value = { tag: 'int', val: batch.ints[ints++] };
        break;
      case 3:
        value = { tag: 'float', val: batch.floats[floats++] };
        break;
      case 4:
        value = { tag: 'boolean', val: batch.ints[ints++] !== 0n };
        break;
      default: // absent
        return;
    }
    values[batch.positions.length > 0 ? batch.positions[i] : i] = value;
  });
  for (let r = 0; r < batch.rows; r++) yield [r, values.slice(r * WIDTH, (r + 1) * WIDTH)];
}

export function init(configJson) {
  let given;
  try {
    given = JSON.parse(configJson.trim() === '' ? '{}' : configJson);
  } catch (e) {
    throw `config: ${e.message}`;
  }
  const unknown = Object.keys(given).filter((k) => !(k in DEFAULTS)).sort();
  if (unknown.length > 0) throw `config: unknown field \`${unknown[0]}\``;
  config = { ...DEFAULTS, ...given };
  return {
    reads: [
      { tag: 'attribute', val: 'gen_ai.tool.name' },
      { tag: 'status-code' },
      { tag: 'attribute', val: 'http.response.status_code' },
      { tag: 'event-attribute', val: { event: 'exception', key: 'exception.message' } },
      { tag: 'status-message' },
      { tag: 'duration' },
    ],
    writes: ['team.owner', 'team.error.kind', 'team.tool.slow'],
    requireAny: [TOOL], // only tool spans are sent
    sparse: false,
  };
}

// [row, slot, value] triples as the WIT's `record edits`: packed in columns as
// a batch is, each value's payload in the column of its kind.
const KINDS = { absent: 0, str: 1, int: 2, float: 3, boolean: 4, json: 5 };
const utf8Out = new TextEncoder();
function pack(edits) {
  const [rows, slots, kinds, ints, floats, textEnds] = [[], [], [], [], [], []];
  const text = [];
  let length = 0;
  for (const [row, slot, value] of edits) {
    rows.push(row);
    slots.push(slot);
    kinds.push(KINDS[value.tag]);
    if (value.tag === 'str' || value.tag === 'json') {
      const bytes = utf8Out.encode(value.val);
      text.push(bytes);
      length += bytes.length;
      textEnds.push(length);
    } else if (value.tag === 'int') ints.push(BigInt(value.val));
    else if (value.tag === 'boolean') ints.push(value.val ? 1n : 0n);
    else if (value.tag === 'float') floats.push(value.val);
  }
  const joined = new Uint8Array(length);
  text.reduce((at, bytes) => (joined.set(bytes, at), at + bytes.length), 0);
  return {
    rows: Uint32Array.from(rows),
    slots: Uint32Array.from(slots),
    kinds: Uint8Array.from(kinds),
    ints: BigInt64Array.from(ints),
    floats: Float64Array.from(floats),
    text: joined,
    textEnds: Uint32Array.from(textEnds),
  };
}

export function process(batch) {
  const edits = [];
  for (const [row, v] of rows(batch)) {
    for (const [slot, value] of classify(v)) edits.push([row, slot, value]);
  }
  return { edits: pack(edits), drops: [] };
}

export function report() {
  return '{}';
}
