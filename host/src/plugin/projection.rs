//! The data plane: spans stay in host memory; a plugin receives only the
//! fields it declared (a projection, row by row) and answers with edits.
//! Measured against whole-span and per-field designs in BENCHMARKS.md.

use super::bindings::types::{Batch as WitBatch, Cell, Field, Value};
use crate::span::{AttrValue, Key, Span, flat, otlp_json, push_hex};
// foldhash: the wide lookup runs once per attribute of every span for each
// stage that reads many attributes; std's SipHash showed in the profile.
// The map is built at init from the manifest, never from span data.
use foldhash::{HashMap, HashMapExt};
use serde_json::value::RawValue;
use std::cell::RefCell;

/// A field a plugin reads, resolved once at init.
#[derive(Debug, Clone)]
pub enum FieldSpec {
    /// Span attribute.
    Attribute(Key),
    /// Resource attribute.
    Resource(Key),
    /// Attribute of the first event with a name.
    EventAttribute(String, Key),
    /// Trace id.
    TraceId,
    /// Span id.
    SpanId,
    /// Parent span id.
    ParentSpanId,
    /// Name.
    Name,
    /// Kind.
    Kind,
    /// Start time.
    StartTime,
    /// End time.
    EndTime,
    /// Duration.
    Duration,
    /// Status code.
    StatusCode,
    /// Status message.
    StatusMessage,
    /// Scope name.
    ScopeName,
    /// Number of events.
    EventCount,
    /// The whole span as flat JSON.
    SpanJson,
}

impl From<Field> for FieldSpec {
    fn from(f: Field) -> Self {
        match f {
            Field::Attribute(k) => FieldSpec::Attribute(Key::from(k)),
            Field::ResourceAttribute(k) => FieldSpec::Resource(Key::from(k)),
            Field::EventAttribute(e) => FieldSpec::EventAttribute(e.event, Key::from(e.key)),
            Field::TraceId => FieldSpec::TraceId,
            Field::SpanId => FieldSpec::SpanId,
            Field::ParentSpanId => FieldSpec::ParentSpanId,
            Field::Name => FieldSpec::Name,
            Field::Kind => FieldSpec::Kind,
            Field::StartTime => FieldSpec::StartTime,
            Field::EndTime => FieldSpec::EndTime,
            Field::Duration => FieldSpec::Duration,
            Field::StatusCode => FieldSpec::StatusCode,
            Field::StatusMessage => FieldSpec::StatusMessage,
            Field::ScopeName => FieldSpec::ScopeName,
            Field::EventCount => FieldSpec::EventCount,
            Field::SpanJson => FieldSpec::SpanJson,
        }
    }
}

/// Buffers of the strings sent in earlier batches, reused for the next ones:
/// the bindings lower owned strings, so a projection copies every string it
/// sends, and a reused buffer saves an allocation and a free per value. One
/// per thread: an engine projects one batch at a time, and the batch it
/// projected last is dropped into here by the next projection.
#[derive(Default)]
struct Buffers(Vec<String>);

/// Buffers kept at most, and the largest kept: a batch of a wide projection,
/// without holding on to large values (span JSON, prompts).
const KEEP_BUFFERS: usize = 16_384;
const KEEP_CAPACITY: usize = 256;
/// New buffers hold at least this much, so that a reused one usually fits
/// the next value without growing (ids are 32 hex digits).
const MIN_CAPACITY: usize = 32;

thread_local! {
    static BUFFERS: RefCell<Buffers> = RefCell::new(Buffers::default());
}

impl Buffers {
    fn buffer(&mut self, len: usize) -> String {
        match self.0.pop() {
            Some(mut b) => {
                b.clear();
                b
            }
            None => String::with_capacity(len.max(MIN_CAPACITY)),
        }
    }

    fn string(&mut self, s: &str) -> String {
        let mut b = self.buffer(s.len());
        b.push_str(s);
        b
    }

    fn hex(&mut self, bytes: &[u8]) -> String {
        let mut b = self.buffer(bytes.len() * 2).into_bytes();
        push_hex(&mut b, bytes);
        // Hex digits are ASCII.
        String::from_utf8(b).unwrap_or_default()
    }

    /// Takes back the buffers of values already sent.
    fn recycle(&mut self, values: impl Iterator<Item = Value>) {
        for v in values {
            if let Value::Str(s) | Value::Json(s) = v
                && s.capacity() <= KEEP_CAPACITY
                && self.0.len() < KEEP_BUFFERS
            {
                self.0.push(s);
            }
        }
    }
}

fn attr_to_value(v: Option<&AttrValue>, buffers: &mut Buffers) -> Value {
    match v {
        None => Value::Absent,
        Some(AttrValue::Str(s)) => Value::Str(buffers.string(s)),
        Some(AttrValue::Int(i)) => Value::Int(*i),
        Some(AttrValue::Float(f)) => Value::Float(*f),
        Some(AttrValue::Bool(b)) => Value::Boolean(*b),
        Some(AttrValue::Json(raw)) => Value::Json(buffers.string(raw.get())),
    }
}

/// The value of one field of a span.
pub fn read(span: &Span, field: &FieldSpec) -> Value {
    read_with(span, field, &mut Buffers::default())
}

/// The value of one field of a span, its strings in reused buffers.
fn read_with(span: &Span, field: &FieldSpec, buffers: &mut Buffers) -> Value {
    let int = |n: u64| Value::Int(i64::try_from(n).unwrap_or(i64::MAX));
    match field {
        FieldSpec::Attribute(k) => attr_to_value(span.attributes.get_key(k), buffers),
        FieldSpec::Resource(k) => attr_to_value(span.resource.get_key(k), buffers),
        FieldSpec::EventAttribute(name, k) => attr_to_value(
            span.events
                .iter()
                .find(|e| &e.name == name)
                .and_then(|e| e.attributes.get_key(k)),
            buffers,
        ),
        FieldSpec::TraceId => Value::Str(buffers.hex(&span.trace_id.0)),
        FieldSpec::SpanId => Value::Str(buffers.hex(&span.span_id.0)),
        FieldSpec::ParentSpanId => span
            .parent_span_id
            .map_or(Value::Absent, |p| Value::Str(buffers.hex(&p.0))),
        FieldSpec::Name => Value::Str(buffers.string(&span.name)),
        FieldSpec::Kind => Value::Str(buffers.string(span.kind.as_str())),
        FieldSpec::StartTime => int(span.start_time_unix_nano),
        FieldSpec::EndTime => int(span.end_time_unix_nano),
        FieldSpec::Duration => int(span.duration_nanos()),
        FieldSpec::StatusCode => Value::Str(buffers.string(span.status.code.as_str())),
        FieldSpec::StatusMessage => {
            if span.status.message.is_empty() {
                Value::Absent
            } else {
                Value::Str(buffers.string(&span.status.message))
            }
        }
        FieldSpec::ScopeName => span
            .scope
            .as_ref()
            .map_or(Value::Absent, |s| Value::Str(buffers.string(&s.name))),
        FieldSpec::EventCount => Value::Int(span.events.len() as i64),
        FieldSpec::SpanJson => {
            let mut out = Vec::with_capacity(512);
            flat::write(&mut out, span);
            Value::Str(String::from_utf8(out).unwrap_or_default())
        }
    }
}

/// Whether a span has a field, without copying its value.
fn is_present(span: &Span, field: &FieldSpec) -> bool {
    match field {
        FieldSpec::Attribute(k) => span.attributes.get_key(k).is_some(),
        FieldSpec::Resource(k) => span.resource.get_key(k).is_some(),
        FieldSpec::EventAttribute(name, k) => span
            .events
            .iter()
            .find(|e| &e.name == name)
            .is_some_and(|e| e.attributes.get_key(k).is_some()),
        other => !matches!(read(span, other), Value::Absent),
    }
}

/// How a plugin's manifest maps onto spans, resolved once at init.
#[derive(Debug, Clone, Default)]
pub struct Projection {
    /// Fields read, in manifest order.
    pub reads: Vec<FieldSpec>,
    /// Attribute keys written, by slot.
    pub writes: Vec<Key>,
    /// Indexes into `reads`; a span is sent only if one of them is present.
    pub require_any: Vec<usize>,
    /// For manifests that read many attributes: key -> read indexes, so a
    /// span's attributes are scanned once instead of once per read.
    wide: Option<WideReads>,
    /// Send present fields only, as cells.
    sparse: bool,
}

/// The attribute reads of a wide projection, by key.
#[derive(Debug, Clone)]
struct WideReads {
    by_text: HashMap<Key, Vec<usize>>,
    /// The same by interned address, when every key read is interned: a
    /// span's interned key is then found without hashing its text, and one
    /// not found here is not read (the table holds one copy per text).
    by_address: Option<HashMap<usize, Vec<usize>>>,
}

impl WideReads {
    fn new(by_text: HashMap<Key, Vec<usize>>) -> WideReads {
        let by_address = by_text
            .iter()
            .map(|(k, reads)| Some((k.interned_address()?, reads.clone())))
            .collect();
        WideReads {
            by_text,
            by_address,
        }
    }

    /// The indexes of the reads of `key`.
    fn get(&self, key: &Key) -> Option<&Vec<usize>> {
        match (&self.by_address, key.interned_address()) {
            (Some(by_address), Some(address)) => by_address.get(&address),
            _ => self.by_text.get(&**key),
        }
    }
}

/// Above this many attribute reads, one pass over the span's attributes with a
/// hash lookup beats one linear scan per read (measured with
/// `builtin:genai-normalize`, ~75 reads: see BENCHMARKS.md).
const WIDE_READS: usize = 8;

impl Projection {
    /// Builds the projection of a manifest, checking its indexes.
    pub fn new(
        reads: Vec<Field>,
        writes: Vec<String>,
        require_any: Vec<u32>,
        sparse: bool,
    ) -> Result<Self, String> {
        let reads: Vec<FieldSpec> = reads.into_iter().map(FieldSpec::from).collect();
        let require_any = require_any
            .into_iter()
            .map(|i| {
                let i = i as usize;
                if i < reads.len() {
                    Ok(i)
                } else {
                    Err(format!(
                        "manifest.require-any index {i} is out of range ({} reads)",
                        reads.len()
                    ))
                }
            })
            .collect::<Result<_, _>>()?;
        for w in &writes {
            if w.is_empty() {
                return Err("manifest.writes holds an empty key".into());
            }
        }
        let mut by_key: HashMap<Key, Vec<usize>> = HashMap::new();
        for (i, f) in reads.iter().enumerate() {
            if let FieldSpec::Attribute(k) = f {
                by_key.entry(k.clone()).or_default().push(i);
            }
        }
        let attribute_reads: usize = by_key.values().map(Vec::len).sum();
        let wide = (attribute_reads > WIDE_READS).then(|| WideReads::new(by_key));
        Ok(Projection {
            reads,
            writes: writes.into_iter().map(Key::from).collect(),
            require_any,
            wide,
            sparse,
        })
    }

    /// Projects `spans` into `out` (reused across calls) and returns the
    /// indexes of the spans sent, in row order.
    pub fn project(&self, spans: &[Span], out: &mut WitBatch, rows: &mut Vec<u32>) {
        BUFFERS.with_borrow_mut(|buffers| self.project_with(spans, out, rows, buffers));
    }

    fn project_with(
        &self,
        spans: &[Span],
        out: &mut WitBatch,
        rows: &mut Vec<u32>,
        buffers: &mut Buffers,
    ) {
        buffers.recycle(out.values.drain(..));
        buffers.recycle(out.cells.drain(..).map(|c| c.value));
        rows.clear();
        if !self.sparse {
            out.values.reserve(spans.len() * self.reads.len());
        }
        let mut row_values: Vec<Value> = Vec::new();
        for (i, span) in spans.iter().enumerate() {
            // Test the filter before reading anything, so skipped spans cost
            // one lookup and no copies.
            if !self.require_any.is_empty()
                && !self
                    .require_any
                    .iter()
                    .any(|&r| is_present(span, &self.reads[r]))
            {
                continue;
            }
            let row = rows.len() as u32;
            rows.push(i as u32);
            if !self.sparse {
                self.read_row(span, &mut out.values, buffers);
                continue;
            }
            match &self.wide {
                // Straight to cells: one pass over the span's attributes.
                Some(wide) => {
                    for (field, f) in self.reads.iter().enumerate() {
                        if !matches!(f, FieldSpec::Attribute(_)) {
                            let value = read_with(span, f, buffers);
                            if !matches!(value, Value::Absent) {
                                out.cells.push(Cell {
                                    row,
                                    field: field as u32,
                                    value,
                                });
                            }
                        }
                    }
                    let first_attribute_cell = out.cells.len();
                    for (k, v) in &span.attributes.0 {
                        for &field in wide.get(k).into_iter().flatten() {
                            // The first of duplicate keys wins, as `get` does.
                            let field = field as u32;
                            if !out.cells[first_attribute_cell..]
                                .iter()
                                .any(|c| c.field == field)
                            {
                                out.cells.push(Cell {
                                    row,
                                    field,
                                    value: attr_to_value(Some(v), buffers),
                                });
                            }
                        }
                    }
                }
                None => {
                    row_values.clear();
                    self.read_row(span, &mut row_values, buffers);
                    for (field, value) in row_values.drain(..).enumerate() {
                        if !matches!(value, Value::Absent) {
                            out.cells.push(Cell {
                                row,
                                field: field as u32,
                                value,
                            });
                        }
                    }
                }
            }
        }
        out.rows = rows.len() as u32;
    }

    /// Appends one span's values, in manifest order.
    fn read_row(&self, span: &Span, out: &mut Vec<Value>, buffers: &mut Buffers) {
        match &self.wide {
            None => out.extend(self.reads.iter().map(|f| read_with(span, f, buffers))),
            Some(wide) => {
                let start = out.len();
                out.extend(self.reads.iter().map(|f| match f {
                    FieldSpec::Attribute(_) => Value::Absent,
                    other => read_with(span, other, buffers),
                }));
                for (k, v) in &span.attributes.0 {
                    if let Some(indexes) = wide.get(k) {
                        for &r in indexes {
                            // The first of duplicate keys wins, as `get` does.
                            if matches!(out[start + r], Value::Absent) {
                                out[start + r] = attr_to_value(Some(v), buffers);
                            }
                        }
                    }
                }
            }
        }
    }

    /// Applies one edit from a plugin. `rows` maps batch rows to spans.
    pub fn apply(
        &self,
        spans: &mut [Span],
        rows: &[u32],
        row: u32,
        slot: u32,
        value: Value,
    ) -> Result<(), String> {
        let span_index = *rows.get(row as usize).ok_or_else(|| {
            format!(
                "edit names row {row}, but the batch has {} rows",
                rows.len()
            )
        })?;
        let key = self.writes.get(slot as usize).ok_or_else(|| {
            format!(
                "edit names slot {slot}, but the manifest declares {} writes",
                self.writes.len()
            )
        })?;
        let span = &mut spans[span_index as usize];
        match attr_value(value, key)? {
            None => {
                span.attributes.remove(key);
            }
            Some(value) => span.attributes.set(key.clone(), value),
        }
        Ok(())
    }
}

/// A plugin's value as an attribute value; `None` for `absent` (remove).
/// `key` names the attribute in errors.
pub fn attr_value(value: Value, key: &str) -> Result<Option<AttrValue>, String> {
    Ok(Some(match value {
        Value::Absent => return Ok(None),
        Value::Str(s) => AttrValue::Str(s.into()),
        Value::Int(i) => AttrValue::Int(i),
        Value::Float(f) => AttrValue::Float(f),
        Value::Boolean(b) => AttrValue::Bool(b),
        Value::Json(j) => AttrValue::Json(
            RawValue::from_string(j)
                .map_err(|e| format!("edit of {key} holds invalid JSON: {e}"))?,
        ),
    }))
}

/// Renders a span part of an exporter's payload.
pub fn render_flat(out: &mut Vec<u8>, span: &Span) {
    flat::write(out, span);
}

/// Renders a span as a one-span OTLP/JSON request.
pub fn render_otlp_json(out: &mut Vec<u8>, span: &Span) {
    otlp_json::write_request(out, span);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a projection of every span should send: its fields read one by
    /// one.
    fn field_by_field(p: &Projection, spans: &[Span]) -> Vec<Value> {
        spans
            .iter()
            .flat_map(|s| p.reads.iter().map(move |f| read(s, f)))
            .collect()
    }

    /// The one-pass projection of wide manifests gives exactly what reading
    /// field by field gives, including absent keys and duplicates.
    #[test]
    fn wide_projection_equals_field_by_field() {
        let spans = crate::bench::synthetic_spans(40, 3, 1_000);
        let keys = [
            "gen_ai.request.model",
            "gen_ai.usage.input_tokens",
            "user.id",
            "nope",
            "gen_ai.tool.name",
            "plume.feature",
            "gen_ai.operation.name",
            "gen_ai.response.id",
            "also.nope",
            "gen_ai.request.model",
        ];
        let mut fields: Vec<Field> = keys
            .iter()
            .map(|k| Field::Attribute(k.to_string()))
            .collect();
        fields.push(Field::Name);
        fields.push(Field::Duration);
        let p = Projection::new(fields.clone(), vec![], vec![], false).unwrap();
        assert!(p.wide.is_some());
        let (mut out, mut rows) = (WitBatch::default(), vec![]);
        p.project(&spans, &mut out, &mut rows);
        let expected = field_by_field(&p, &spans);
        assert_eq!(format!("{:?}", out.values), format!("{expected:?}"));
        assert_eq!(rows.len(), 40);

        // The sparse form holds exactly the present ones.
        let sparse = Projection::new(fields, vec![], vec![], true).unwrap();
        sparse.project(&spans, &mut out, &mut rows);
        assert!(out.values.is_empty());
        let width = sparse.reads.len();
        let present: Vec<String> = expected
            .iter()
            .enumerate()
            .filter(|(_, v)| !matches!(v, Value::Absent))
            .map(|(i, v)| format!("{} {} {v:?}", i / width, i % width))
            .collect();
        // Cells come row by row; within a row, in any order.
        let mut cells: Vec<(u32, u32, String)> = out
            .cells
            .iter()
            .map(|c| (c.row, c.field, format!("{:?}", c.value)))
            .collect();
        cells.sort();
        let cells: Vec<String> = cells
            .into_iter()
            .map(|(r, f, v)| format!("{r} {f} {v}"))
            .collect();
        assert_eq!(cells, present);
    }

    /// A projection reuses the string buffers of the batch it projected
    /// before: what it sends is still exactly the spans' values.
    #[test]
    fn reused_buffers_hold_exactly_the_new_values() {
        let fields = vec![
            Field::TraceId,
            Field::Name,
            Field::Attribute("gen_ai.request.model".into()),
            Field::Attribute("gen_ai.tool.name".into()),
            Field::StatusMessage,
        ];
        let p = Projection::new(fields, vec![], vec![], false).unwrap();
        let (mut out, mut rows) = (WitBatch::default(), vec![]);
        let addresses = |out: &WitBatch| -> std::collections::HashSet<usize> {
            out.values
                .iter()
                .filter_map(|v| match v {
                    Value::Str(s) => Some(s.as_ptr() as usize),
                    _ => None,
                })
                .collect()
        };
        let mut before = std::collections::HashSet::new();
        for seed in [1, 2, 3] {
            let spans = crate::bench::synthetic_spans(50, seed, 1_000);
            p.project(&spans, &mut out, &mut rows);
            let expected = field_by_field(&p, &spans);
            assert_eq!(format!("{:?}", out.values), format!("{expected:?}"));
            let now = addresses(&out);
            if seed > 1 {
                assert!(now.intersection(&before).count() > 0, "no buffer reused");
            }
            before = now;
        }
    }

    /// Interned keys are found by address; an owned key (too long to
    /// intern, or made once the table was full) still by its text, on
    /// either side.
    #[test]
    fn wide_reads_find_owned_and_interned_keys() {
        let long = "k".repeat(200); // longer than keys are interned
        let mut span = crate::bench::synthetic_spans(1, 3, 1_000).remove(0);
        span.attributes.0.clear();
        span.attributes
            .0
            .push((Key::owned("w.a"), AttrValue::Int(1)));
        span.attributes.0.push((Key::new("w.b"), AttrValue::Int(2)));
        span.attributes.0.push((Key::new(&long), AttrValue::Int(3)));
        let keys = |extra: &[&str]| -> Vec<Field> {
            (0..8)
                .map(|i| format!("w.unread{i}"))
                .chain(["w.a".into(), "w.b".into()])
                .chain(extra.iter().map(|k| k.to_string()))
                .map(Field::Attribute)
                .collect()
        };
        for (fields, expected) in [
            // Every key read interned: looked up by address, or by text for
            // the span's owned ones.
            (keys(&[]), vec![Value::Int(1), Value::Int(2)]),
            // One key read is owned: every lookup by text.
            (
                keys(&[&long]),
                vec![Value::Int(1), Value::Int(2), Value::Int(3)],
            ),
        ] {
            let p = Projection::new(fields, vec![], vec![], false).unwrap();
            let wide = p.wide.as_ref().unwrap();
            assert_eq!(wide.by_address.is_some(), expected.len() == 2);
            let mut values = Vec::new();
            p.read_row(&span, &mut values, &mut Buffers::default());
            assert_eq!(format!("{:?}", &values[8..]), format!("{expected:?}"));
        }
    }
}
