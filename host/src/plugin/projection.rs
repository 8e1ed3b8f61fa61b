//! The data plane: spans stay in host memory; a plugin receives only the
//! fields it declared (a projection, row by row) and answers with edits.
//! Measured against whole-span and per-field designs in BENCHMARKS.md.

use super::bindings::types::{Batch as WitBatch, Edits as WitEdits, Field, Value};
use super::packed;
use crate::span::{AttrValue, Attributes, Key, Span, flat, otlp_json};
use serde_json::value::RawValue;

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

/// A field's value as read from a span: borrowed from the span, copied only
/// into the packed batch (ids are written as hex, span JSON rendered, there).
#[derive(Debug, Clone, Copy)]
pub enum Read<'a> {
    /// The span has no such field.
    Absent,
    /// A string.
    Str(&'a str),
    /// An id, sent as lowercase hex (`str`).
    Id(&'a [u8]),
    /// An integer.
    Int(i64),
    /// A float.
    Float(f64),
    /// A boolean.
    Bool(bool),
    /// An array or map as JSON text.
    Json(&'a str),
    /// The whole span as flat JSON (`str`).
    SpanJson(&'a Span),
}

impl Read<'_> {
    /// True when the span has no such field.
    pub fn is_absent(&self) -> bool {
        matches!(self, Read::Absent)
    }

    /// The value as the WIT's owned `value`: what a plugin reads from the
    /// packed batch (the tests compare the two).
    #[cfg(test)]
    pub fn to_value(self) -> Value {
        match self {
            Read::Absent => Value::Absent,
            Read::Str(s) => Value::Str(s.to_string()),
            Read::Id(bytes) => Value::Str(crate::span::hex_string(bytes)),
            Read::Int(i) => Value::Int(i),
            Read::Float(f) => Value::Float(f),
            Read::Bool(b) => Value::Boolean(b),
            Read::Json(s) => Value::Json(s.to_string()),
            Read::SpanJson(span) => {
                let mut out = Vec::with_capacity(512);
                flat::write(&mut out, span);
                Value::Str(String::from_utf8(out).unwrap_or_default())
            }
        }
    }
}

fn attr_read(v: Option<&AttrValue>) -> Read<'_> {
    match v {
        None => Read::Absent,
        Some(AttrValue::Str(s)) => Read::Str(s),
        Some(AttrValue::Int(i)) => Read::Int(*i),
        Some(AttrValue::Float(f)) => Read::Float(*f),
        Some(AttrValue::Bool(b)) => Read::Bool(*b),
        Some(AttrValue::Json(raw)) => Read::Json(raw.get()),
    }
}

/// The value of one field of a span.
#[inline]
fn read<'a>(span: &'a Span, field: &FieldSpec) -> Read<'a> {
    let int = |n: u64| Read::Int(i64::try_from(n).unwrap_or(i64::MAX));
    match field {
        FieldSpec::Attribute(k) => attr_read(span.attributes.get_key(k)),
        FieldSpec::Resource(k) => attr_read(span.resource.get_key(k)),
        FieldSpec::EventAttribute(name, k) => attr_read(
            span.events
                .iter()
                .find(|e| &e.name == name)
                .and_then(|e| e.attributes.get_key(k)),
        ),
        FieldSpec::TraceId => Read::Id(&span.trace_id.0),
        FieldSpec::SpanId => Read::Id(&span.span_id.0),
        FieldSpec::ParentSpanId => span
            .parent_span_id
            .as_ref()
            .map_or(Read::Absent, |p| Read::Id(&p.0)),
        FieldSpec::Name => Read::Str(&span.name),
        FieldSpec::Kind => Read::Str(span.kind.as_str()),
        FieldSpec::StartTime => int(span.start_time_unix_nano),
        FieldSpec::EndTime => int(span.end_time_unix_nano),
        FieldSpec::Duration => int(span.duration_nanos()),
        FieldSpec::StatusCode => Read::Str(span.status.code.as_str()),
        FieldSpec::StatusMessage => {
            if span.status.message.is_empty() {
                Read::Absent
            } else {
                Read::Str(&span.status.message)
            }
        }
        FieldSpec::ScopeName => span
            .scope
            .as_ref()
            .map_or(Read::Absent, |s| Read::Str(&s.name)),
        FieldSpec::EventCount => Read::Int(span.events.len() as i64),
        FieldSpec::SpanJson => Read::SpanJson(span),
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
    /// By interned key number: 1 + the slot writing that key; 0 for none.
    /// Empty when a written key is not interned or is written by two slots:
    /// then edits look their key up in the span one by one.
    write_slots: Vec<u32>,
    /// The span attributes read, found by key.
    attributes: AttributeReads,
    /// The indexes of the reads that are not span attributes.
    others: Vec<usize>,
    /// Send present fields only, as cells.
    sparse: bool,
}

/// The span-attribute reads of a projection, found in one pass over a span's
/// attributes: an interned key's number indexes `by_id`, so finding the
/// reads of an attribute is a load or two, whatever the number of reads
/// (scanning the span once per read cost reads times attributes compares).
#[derive(Debug, Clone, Default)]
struct AttributeReads {
    /// By interned key number: 1 + the first read of that key; 0 when no
    /// read has it. As long as the highest number read.
    by_id: Vec<u32>,
    /// For each read: 1 + the next read of the same key (a manifest may read
    /// a key twice); 0 for none.
    next: Vec<u32>,
    /// Every attribute read with its key: the span's keys that are not
    /// interned are matched here, by text.
    by_text: Vec<(Key, usize)>,
    /// True when some key read is not interned (longer than interned keys,
    /// or made once the table was full): then an interned span key may
    /// equal it in text only, and is compared with it too.
    owned_reads: bool,
    /// Looked up key by key instead (`Attributes::get_key`, which stops at
    /// the key): for a dense projection of one or two interned keys, such as
    /// the latency and SLO evaluators', where the pass over every attribute
    /// cost more than two short scans.
    by_key: bool,
}

/// At most this many attribute reads are looked up key by key.
const BY_KEY_READS: usize = 2;

impl AttributeReads {
    fn new(reads: &[FieldSpec], sparse: bool) -> AttributeReads {
        let mut index = AttributeReads {
            next: vec![0; reads.len()],
            ..AttributeReads::default()
        };
        // Chained in reverse, so each chain runs in manifest order.
        for (i, f) in reads.iter().enumerate().rev() {
            let FieldSpec::Attribute(k) = f else { continue };
            index.by_text.push((k.clone(), i));
            match k.id() {
                Some(id) => {
                    let id = id as usize;
                    if index.by_id.len() <= id {
                        index.by_id.resize(id + 1, 0);
                    }
                    index.next[i] = index.by_id[id];
                    index.by_id[id] = i as u32 + 1;
                }
                None => index.owned_reads = true,
            }
        }
        index.by_text.reverse();
        // Sparse batches list the attributes in the span's order; a dense
        // one does not depend on the order they are found in.
        index.by_key =
            !sparse && !index.owned_reads && (1..=BY_KEY_READS).contains(&index.by_text.len());
        index
    }

    /// Sets `found[read]` to the span's value of each attribute read, the
    /// first of duplicate keys (as `get` finds), and lists in `present` the
    /// reads found, in the span's order. `found` holds no value on entry.
    #[inline]
    fn find<'s>(
        &self,
        span: &'s Span,
        found: &mut [Option<&'s AttrValue>],
        present: &mut Vec<usize>,
    ) {
        let mut visit = |read: usize, v: &'s AttrValue| {
            if found[read].is_none() {
                found[read] = Some(v);
                present.push(read);
            }
        };
        if self.by_key {
            for (key, read) in &self.by_text {
                if let Some(v) = span.attributes.get_key(key) {
                    visit(*read, v);
                }
            }
            return;
        }
        for (k, v) in &span.attributes.0 {
            match k.id() {
                Some(id) => {
                    let mut r = self.by_id.get(id as usize).copied().unwrap_or(0);
                    while r != 0 {
                        let read = r as usize - 1;
                        visit(read, v);
                        r = self.next[read];
                    }
                    if self.owned_reads {
                        for (key, read) in &self.by_text {
                            if key.id().is_none() && key.as_str() == k.as_str() {
                                visit(*read, v);
                            }
                        }
                    }
                }
                None => {
                    for (key, read) in &self.by_text {
                        if key.as_str() == k.as_str() {
                            visit(*read, v);
                        }
                    }
                }
            }
        }
    }
}

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
        let others = (0..reads.len())
            .filter(|&i| !matches!(reads[i], FieldSpec::Attribute(_)))
            .collect();
        let writes: Vec<Key> = writes.into_iter().map(Key::from).collect();
        Ok(Projection {
            attributes: AttributeReads::new(&reads, sparse),
            others,
            reads,
            write_slots: write_slots(&writes),
            writes,
            require_any,
            sparse,
        })
    }

    /// Projects `spans` into `out` (reused across calls) and returns the
    /// indexes of the spans sent, in row order.
    pub fn project(&self, spans: &[Span], batch: &mut WitBatch, rows: &mut Vec<u32>) {
        // Filled as a local and put back: the compiler then keeps the
        // columns' lengths in registers instead of reloading and storing
        // them through `batch` at every value.
        let mut local = std::mem::take(batch);
        let out = &mut local;
        packed::clear(out);
        rows.clear();
        let width = self.reads.len();
        if !self.sparse && self.require_any.is_empty() {
            // Every read of every span: room for the entries at once.
            out.kinds.reserve(width * spans.len());
        }
        // Each span's attribute values by read; emptied after each span
        // through `present`, the reads found.
        let mut found: Vec<Option<&AttrValue>> = vec![None; width];
        let mut present: Vec<usize> = Vec::new();
        let attributes_read = !self.attributes.by_text.is_empty();
        for (i, span) in spans.iter().enumerate() {
            if attributes_read {
                self.attributes.find(span, &mut found, &mut present);
            }
            let value = |f: usize| match &self.reads[f] {
                FieldSpec::Attribute(_) => attr_read(found[f]),
                field => read(span, field),
            };
            let wanted = self.require_any.is_empty()
                || self.require_any.iter().any(|&r| !value(r).is_absent());
            if wanted {
                let row = rows.len();
                rows.push(i as u32);
                let base = row * width;
                if self.sparse {
                    // The other fields, then the attributes in the span's order.
                    for &f in &self.others {
                        let v = read(span, &self.reads[f]);
                        if !v.is_absent() {
                            packed::push_at(out, base + f, v);
                        }
                    }
                    for &f in &present {
                        packed::push_at(out, base + f, attr_read(found[f]));
                    }
                } else {
                    for f in 0..width {
                        packed::push(out, value(f));
                    }
                }
            }
            for f in present.drain(..) {
                found[f] = None;
            }
        }
        out.rows = rows.len() as u32;
        *batch = local;
    }

    /// A processor's edits, checked (rows, slots, the columns, JSON) and
    /// converted, changing no span: an answer with one bad edit is refused
    /// whole. `rows` is the number of rows the plugin received.
    pub fn writes_of(&self, edits: &WitEdits, rows: usize) -> Result<Vec<Write>, String> {
        let mut writes = Vec::with_capacity(edits.kinds.len());
        packed::for_each_edit(edits, |row, slot, value| {
            if row as usize >= rows || slot as usize >= self.writes.len() {
                return Err(format!(
                    "edit (row {row}, slot {slot}) is out of range ({rows} rows, {} writes)",
                    self.writes.len()
                ));
            }
            let value = edit_value(value, &self.writes[slot as usize])?;
            writes.push(Write { row, slot, value });
            Ok(())
        })?;
        Ok(writes)
    }

    /// Applies checked writes (from [`Projection::writes_of`]), in order.
    /// `rows` maps batch rows to spans.
    pub fn apply(&self, spans: &mut [Span], rows: &[u32], writes: Vec<Write>) {
        // Where each written key is in the current span: found in one pass
        // over its attributes when the span changes, instead of a pass per
        // edit (a processor writes a few keys to each span it changes).
        let mut at = vec![NOT_FOUND; self.writes.len()];
        let mut found_for = None;
        for Write { row, slot, value } in writes {
            let attributes = &mut spans[rows[row as usize] as usize].attributes;
            if found_for != Some(row) {
                found_for = self.find_writes(attributes, &mut at).then_some(row);
            }
            let key = &self.writes[slot as usize];
            match (value, found_for.is_some()) {
                (None, _) => {
                    attributes.remove(key);
                    // The positions after it moved.
                    found_for = None;
                }
                (Some(value), true) => match at[slot as usize] {
                    NOT_FOUND => {
                        at[slot as usize] = attributes.0.len() as u32;
                        attributes.0.push((key.clone(), value));
                    }
                    i => attributes.0[i as usize].1 = value,
                },
                (Some(value), false) => attributes.set(key.clone(), value),
            }
        }
    }

    /// Sets `at[slot]` to the position of each written key in `attributes`
    /// (its first, as `Attributes::set` finds it), or `NOT_FOUND`. False
    /// when keys must be compared by text (a key that is not interned).
    fn find_writes(&self, attributes: &Attributes, at: &mut [u32]) -> bool {
        if self.write_slots.is_empty() {
            return false;
        }
        at.fill(NOT_FOUND);
        for (i, (k, _)) in attributes.0.iter().enumerate() {
            let Some(id) = k.id() else { return false };
            let slot = self.write_slots.get(id as usize).copied().unwrap_or(0);
            if slot != 0 && at[slot as usize - 1] == NOT_FOUND {
                at[slot as usize - 1] = i as u32;
            }
        }
        true
    }
}

/// One checked edit: `None` removes the attribute.
pub struct Write {
    row: u32,
    slot: u32,
    value: Option<AttrValue>,
}

/// A written key the span does not have (yet).
const NOT_FOUND: u32 = u32::MAX;

/// `Projection::write_slots` of these written keys.
fn write_slots(writes: &[Key]) -> Vec<u32> {
    let mut slots = Vec::new();
    for (slot, key) in writes.iter().enumerate() {
        let Some(id) = key.id() else {
            return Vec::new();
        };
        let id = id as usize;
        if slots.len() <= id {
            slots.resize(id + 1, 0);
        }
        if slots[id] != 0 {
            return Vec::new(); // written by two slots
        }
        slots[id] = slot as u32 + 1;
    }
    slots
}

/// An edit's value as an attribute value; `None` for `absent` (remove).
/// Strings are copied once, from the plugin's answer into the span (up to
/// 24 bytes inline). `key` names the attribute in errors.
fn edit_value(value: Read<'_>, key: &str) -> Result<Option<AttrValue>, String> {
    Ok(Some(match value {
        Read::Absent => return Ok(None),
        Read::Str(s) => AttrValue::Str(s.into()),
        Read::Int(i) => AttrValue::Int(i),
        Read::Float(f) => AttrValue::Float(f),
        Read::Bool(b) => AttrValue::Bool(b),
        Read::Json(j) => AttrValue::Json(
            RawValue::from_string(j.to_owned())
                .map_err(|e| format!("edit of {key} holds invalid JSON: {e}"))?,
        ),
        // Reads of a span, never in an edit.
        Read::Id(_) | Read::SpanJson(_) => return Err(format!("edit of {key}: not a value")),
    }))
}

/// A plugin's value (an exporter's payload-only edit) as an attribute value,
/// as [`edit_value`] converts a packed one; `None` for `absent` (remove).
/// `key` names the attribute in errors.
pub fn attr_value(value: &Value, key: &str) -> Result<Option<AttrValue>, String> {
    let value = match value {
        Value::Absent => Read::Absent,
        Value::Str(s) => Read::Str(s),
        Value::Int(i) => Read::Int(*i),
        Value::Float(f) => Read::Float(*f),
        Value::Boolean(b) => Read::Bool(*b),
        Value::Json(j) => Read::Json(j),
    };
    edit_value(value, key)
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
    fn field_by_field<'s>(p: &Projection, spans: impl IntoIterator<Item = &'s Span>) -> Vec<Value> {
        spans
            .into_iter()
            .flat_map(|s| p.reads.iter().map(move |f| read(s, f).to_value()))
            .collect()
    }

    /// The one-pass projection gives exactly what reading field by field
    /// gives, including absent keys and keys read twice, dense or sparse; a
    /// batch projected over an earlier one holds only its own.
    #[test]
    fn wide_projection_equals_field_by_field() {
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
            "gen_ai.request.temperature",
            "gen_ai.response.finish_reasons",
        ];
        let mut fields: Vec<Field> = keys
            .iter()
            .map(|k| Field::Attribute(k.to_string()))
            .collect();
        fields.extend([
            Field::Name,
            Field::Duration,
            Field::TraceId,
            Field::ParentSpanId,
            Field::StatusMessage,
        ]);
        let (mut out, mut rows) = (WitBatch::default(), vec![]);
        for sparse in [false, true] {
            let p = Projection::new(fields.clone(), vec![], vec![], sparse).unwrap();
            for seed in [3, 4] {
                let spans = crate::bench::synthetic_spans(40, seed, 1_000);
                p.project(&spans, &mut out, &mut rows);
                let expected = field_by_field(&p, &spans);
                let sent = packed::unpack(&out, p.reads.len());
                assert_eq!(format!("{sent:?}"), format!("{expected:?}"));
                assert_eq!(rows.len(), 40);
                // Sparse batches send present fields only, in row order.
                assert_eq!(out.positions.is_empty(), !sparse);
                if sparse {
                    assert!(!out.kinds.contains(&packed::kind::ABSENT));
                    let width = p.reads.len() as u32;
                    assert!(out.positions.is_sorted_by_key(|&at| at / width));
                    let present = expected
                        .iter()
                        .filter(|v| !matches!(v, Value::Absent))
                        .count();
                    assert_eq!(out.kinds.len(), present);
                }
            }
        }
    }

    /// `require_any` leaves out the spans without any of its fields, and
    /// rows map back to them.
    #[test]
    fn narrow_projection_filters_and_maps_rows() {
        let spans = crate::bench::synthetic_spans(60, 5, 1_000);
        let fields = vec![
            Field::Attribute("gen_ai.tool.name".into()),
            Field::SpanId,
            Field::StartTime,
            Field::Kind,
        ];
        let p = Projection::new(fields, vec![], vec![0], false).unwrap();
        let (mut out, mut rows) = (WitBatch::default(), vec![]);
        p.project(&spans, &mut out, &mut rows);
        let tools: Vec<&Span> = spans
            .iter()
            .filter(|s| s.attributes.get("gen_ai.tool.name").is_some())
            .collect();
        assert!(!tools.is_empty() && tools.len() < spans.len());
        assert_eq!(out.rows as usize, tools.len());
        let sent: Vec<&Span> = rows.iter().map(|&i| &spans[i as usize]).collect();
        assert_eq!(sent.len(), tools.len());
        let expected = field_by_field(&p, sent);
        assert_eq!(
            format!("{:?}", packed::unpack(&out, 4)),
            format!("{expected:?}")
        );
    }

    /// Edits applied with the positions found in one pass over a span end
    /// as `Attributes::set` and `remove`, edit by edit, leave it: a key the
    /// span has (the first of two) is replaced in place, new keys are
    /// appended in order, a key written twice keeps the last value, a
    /// removal moves what follows, rows come in any order, and owned keys
    /// or a key written by two slots are compared by text.
    #[test]
    fn edits_apply_as_set_and_remove_one_by_one() {
        use crate::plugin::bindings::types::Edits as WitEdits;
        let span_of = |keys: &[Key]| {
            let mut span = crate::bench::synthetic_spans(1, 3, 1_000).remove(0);
            span.attributes.0 = (keys.iter().cloned())
                .zip(100..)
                .map(|(k, v)| (k, AttrValue::Int(v)))
                .collect();
            span
        };
        let k = Key::new;
        let spans = vec![
            span_of(&[k("e.b"), k("e.x"), k("e.b"), k("e.y")]),
            span_of(&[k("e.y"), Key::owned("e.c")]),
            span_of(&[]),
        ];
        // (row, slot, value; None removes)
        let edits: &[(u32, u32, Option<i64>)] = &[
            (1, 2, Some(1)),
            (0, 0, Some(2)),
            (0, 3, Some(3)),
            (0, 3, Some(4)),
            (0, 1, None),
            (0, 2, Some(5)),
            (0, 0, Some(6)),
            (1, 0, Some(7)),
            (2, 3, Some(8)),
            (1, 2, None),
        ];
        let packed = WitEdits {
            rows: edits.iter().map(|e| e.0).collect(),
            slots: edits.iter().map(|e| e.1).collect(),
            kinds: (edits.iter())
                .map(|e| {
                    if e.2.is_some() {
                        packed::kind::INT
                    } else {
                        packed::kind::ABSENT
                    }
                })
                .collect(),
            ints: edits.iter().filter_map(|e| e.2).collect(),
            floats: vec![],
            text: vec![],
            text_ends: vec![],
        };
        let rows = [2, 0, 1]; // batch rows -> spans
        for writes in [
            vec!["e.b", "e.x", "e.c", "e.new"],
            vec!["e.b", "e.x", "e.c", "e.b"], // e.b by two slots
        ] {
            let writes: Vec<String> = writes.into_iter().map(String::from).collect();
            let p = Projection::new(vec![], writes, vec![], false).unwrap();
            let mut expected = spans.clone();
            for &(row, slot, value) in edits {
                let attributes = &mut expected[rows[row as usize] as usize].attributes;
                let key = p.writes[slot as usize].clone();
                match value {
                    Some(v) => attributes.set(key, AttrValue::Int(v)),
                    None => {
                        attributes.remove(&key);
                    }
                }
            }
            let mut got = spans.clone();
            p.apply(&mut got, &rows, p.writes_of(&packed, rows.len()).unwrap());
            for (g, e) in got.iter().zip(&expected) {
                assert_eq!(g.attributes, e.attributes);
            }
        }
        // Out of range: refused before anything is applied.
        let p = Projection::new(vec![], vec!["e.b".into()], vec![], false).unwrap();
        let e = p.writes_of(&packed, rows.len()).err().unwrap();
        assert!(e.contains("slot 2") && e.contains("1 writes"), "{e}");
        let p = Projection::new(vec![], vec!["e.b".into(); 4], vec![], false).unwrap();
        assert!(p.writes_of(&packed, 2).err().unwrap().contains("row 2"));
    }

    /// Interned keys are found by number; owned keys (too long to intern,
    /// or made once the table was full) by their text, on either side, also
    /// an owned key read against the interned copy of its text in a span.
    /// Of a key a span holds twice, the first value is read.
    #[test]
    fn attribute_reads_find_owned_and_interned_keys() {
        let long = "k".repeat(200); // longer than keys are interned
        let mut span = crate::bench::synthetic_spans(1, 3, 1_000).remove(0);
        span.attributes.0.clear();
        let attrs = [
            (Key::owned("w.a"), 1),
            (Key::new("w.b"), 2),
            (Key::new(&long), 3),
            (Key::new("w.c"), 4),
            (Key::new("w.b"), 5),
        ];
        for (k, v) in attrs {
            span.attributes.0.push((k, AttrValue::Int(v)));
        }
        let key = |k: &str| FieldSpec::Attribute(Key::new(k));
        let mut reads: Vec<FieldSpec> = (0..8).map(|i| key(&format!("w.unread{i}"))).collect();
        reads.extend([
            key("w.a"),
            key("w.b"),
            key(&long),
            FieldSpec::Attribute(Key::owned("w.c")),
        ]);
        reads.push(key("w.b"));
        let index = AttributeReads::new(&reads, true);
        assert!(index.owned_reads);
        let mut found = vec![None; reads.len()];
        let mut present = Vec::new();
        index.find(&span, &mut found, &mut present);
        let values: Vec<Value> = found[8..]
            .iter()
            .map(|v| attr_read(*v).to_value())
            .collect();
        let expected = [1, 2, 3, 4, 2].map(Value::Int);
        assert_eq!(format!("{values:?}"), format!("{expected:?}"));
        // The reads found, in the span's order, each once.
        assert_eq!(present, vec![8, 9, 12, 10, 11]);
    }

    /// A dense projection of one or two keys looks them up key by key, and
    /// finds what the pass over the attributes finds: the first of
    /// duplicate keys, a key read twice, a key the span lacks.
    #[test]
    fn few_reads_by_key_find_what_the_pass_finds() {
        let mut span = crate::bench::synthetic_spans(1, 1, 0).remove(0);
        span.attributes.0.clear();
        for (k, v) in [("k.x", 0), ("k.b", 1), ("k.a", 2), ("k.b", 3)] {
            span.attributes.0.push((Key::new(k), AttrValue::Int(v)));
        }
        let key = |k: &str| FieldSpec::Attribute(Key::new(k));
        for reads in [
            vec![key("k.a"), key("k.b")],
            vec![key("k.b"), FieldSpec::Duration, key("k.b")],
            vec![key("k.missing"), key("k.a")],
            vec![key("k.b")],
        ] {
            let find = |sparse: bool| {
                let index = AttributeReads::new(&reads, sparse);
                assert_eq!(index.by_key, !sparse);
                let mut found = vec![None; reads.len()];
                let mut present = Vec::new();
                index.find(&span, &mut found, &mut present);
                present.sort_unstable();
                let values: Vec<Value> = found.iter().map(|v| attr_read(*v).to_value()).collect();
                (format!("{values:?}"), present)
            };
            assert_eq!(find(false), find(true), "{reads:?}");
        }
        // Three keys: the pass.
        let three = [key("k.a"), key("k.b"), key("k.x")];
        assert!(!AttributeReads::new(&three, false).by_key);
    }
}
