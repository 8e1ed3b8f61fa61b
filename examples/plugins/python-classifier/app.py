"""An example custom classifier in Python: the same rules as
examples/plugins/rust-classifier, built with componentize-py.

Build (from the repository root):
    pip install componentize-py==0.25.1
    componentize-py -d wit -w processor componentize -p examples/plugins/python-classifier app \
        -o target/examples/python_classifier.wasm

For every tool span it writes:
- `team.owner`: the team that owns the tool, from a prefix map in config
  (`owners = { "payments." = "payments-team" }`), else "unowned";
- `team.error.kind` on failed tool calls: `business` when the error text
  matches one of `business_errors`, `upstream` for HTTP 5xx, `client` for
  HTTP 4xx, else `internal`;
- `team.tool.slow` (derived): true when the call took longer than `slow_ms`.
"""

import json

import wit_world
from wit_world.imports import types as t
from componentize_py_types import Err

# Read fields, in manifest order.
TOOL, STATUS, HTTP, MESSAGE, STATUS_MESSAGE, DURATION = range(6)
WIDTH = 6

DEFAULTS = {
    "owners": {},
    "business_errors": ["card_declined", "insufficient_funds", "not allowed"],
    "slow_ms": 2000,
}

config = dict(DEFAULTS)


def as_str(v):
    return v.value if isinstance(v, t.Value_Str) else None


def as_i64(v):
    """As the Rust SDK's `as_i64`: ints, integral floats, integer strings."""
    if isinstance(v, t.Value_Int):
        return v.value
    if isinstance(v, t.Value_Float) and v.value.is_integer() and abs(v.value) < 9.0e15:
        return int(v.value)
    if isinstance(v, t.Value_Str):
        try:
            return int(v.value.strip())
        except ValueError:
            return None
    return None


def classify(v):
    """The attributes written for one tool span: [(slot, value)]."""
    tool = as_str(v[TOOL])
    if tool is None:
        return []
    matching = [p for p in config["owners"] if tool.startswith(p)]
    owner = config["owners"][max(matching, key=len)] if matching else "unowned"
    out = [(0, t.Value_Str(owner))]
    http = as_i64(v[HTTP])
    if as_str(v[STATUS]) == "error" or (http is not None and http >= 400):
        text = f"{as_str(v[MESSAGE]) or ''} {as_str(v[STATUS_MESSAGE]) or ''}".lower()
        if any(e.lower() in text for e in config["business_errors"]):
            kind = "business"
        elif http is not None and http >= 500:
            kind = "upstream"
        elif http is not None and http >= 400:
            kind = "client"
        else:
            kind = "internal"
        out.append((1, t.Value_Str(kind)))
    ns = as_i64(v[DURATION])
    if ns is not None:
        out.append((2, t.Value_Boolean(ns > config["slow_ms"] * 1_000_000)))
    return out


def rows(batch):
    """Rows of WIT values in manifest order. The batch comes packed in
    columns (`record batch` in wit/pipeline.wit): a kind per value sent, the
    payloads in `ints`, `floats` and `text`; sparse batches place each value
    with `positions`."""
    values = [t.Value_Absent()] * (batch.rows * WIDTH)
    ints, floats, ends = iter(batch.ints), iter(batch.floats), iter(batch.text_ends)
    start = 0
    for i, kind in enumerate(batch.kinds):
        if kind == 1 or kind == 5:  # str, json
            end = next(ends)
            text = bytes(batch.text[start:end]).decode()
            start = end
            value = t.Value_Str(text) if kind == 1 else t.Value_Json(text)
        elif kind == 2:
            value = t.Value_Int(next(ints))
        elif kind == 3:
            value = t.Value_Float(next(floats))
        elif kind == 4:
            value = t.Value_Boolean(next(ints) != 0)
        else:  # absent
            continue
        values[batch.positions[i] if batch.positions else i] = value
    for r in range(batch.rows):
        yield r, values[r * WIDTH:(r + 1) * WIDTH]


def pack(edits):
    """(row, slot, value) triples as the WIT's `record edits`: packed in
    columns as a batch is, each value's payload in the column of its kind."""
    rows, slots, kinds, ints, floats, text, ends = [], [], [], [], [], bytearray(), []
    for row, slot, value in edits:
        rows.append(row)
        slots.append(slot)
        if isinstance(value, (t.Value_Str, t.Value_Json)):
            kinds.append(1 if isinstance(value, t.Value_Str) else 5)
            text += value.value.encode()
            ends.append(len(text))
        elif isinstance(value, t.Value_Int):
            kinds.append(2)
            ints.append(value.value)
        elif isinstance(value, t.Value_Float):
            kinds.append(3)
            floats.append(value.value)
        elif isinstance(value, t.Value_Boolean):
            kinds.append(4)
            ints.append(1 if value.value else 0)
        else:  # absent: removes the attribute
            kinds.append(0)
    # `list<u8>` columns are `bytes` in Python.
    return t.Edits(rows, slots, bytes(kinds), ints, floats, bytes(text), ends)


class WitWorld(wit_world.WitWorld):
    def init(self, config_json: str) -> t.Manifest:
        global config
        try:
            given = json.loads(config_json or "{}")
        except ValueError as e:
            raise Err(f"config: {e}")
        unknown = set(given) - set(DEFAULTS)
        if unknown:
            raise Err(f"config: unknown field `{sorted(unknown)[0]}`")
        config = {**DEFAULTS, **given}
        return t.Manifest(
            reads=[
                t.Field_Attribute("gen_ai.tool.name"),
                t.Field_StatusCode(),
                t.Field_Attribute("http.response.status_code"),
                t.Field_EventAttribute(t.EventAttribute("exception", "exception.message")),
                t.Field_StatusMessage(),
                t.Field_Duration(),
            ],
            writes=["team.owner", "team.error.kind", "team.tool.slow"],
            require_any=[TOOL],  # only tool spans are sent
            sparse=False,
        )

    def process(self, batch: t.Batch) -> t.BatchResult:
        edits = pack(
            (row, slot, value)
            for row, v in rows(batch)
            for slot, value in classify(v)
        )
        return t.BatchResult(edits=edits, drops=[])

    def report(self) -> str:
        return "{}"
