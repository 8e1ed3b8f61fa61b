//! The usual shape of a flat span line, read without serde.
//!
//! Parsing was a quarter of the default pipeline's instructions, most of it
//! serde's generic machinery: each attribute value was scanned once as a
//! `RawValue` and again to classify it, and each span's resource was parsed
//! into an allocation of its own though consecutive spans share it. This
//! scanner reads a line in one pass and shares a resource that is written
//! the same as the previous line's.
//!
//! It is a fast path, not a second parser: it takes only lines it reads
//! exactly as [`flat::parse_serde`](super::flat::parse_serde) reads them, and
//! gives up (`None`) on anything else: escapes in strings, keys it does not
//! know, duplicate keys, links, and every error. serde then reads the line,
//! and words the error if there is one. `same_as_serde_*` tests and the
//! `span_jsonl` fuzz target check that the two agree.

use super::flat::{
    NameOrNumber, attr_value_from_text, plain_len, span_kind, status_code, time_from_text,
};
use super::{
    AttrValue, Attributes, Event, Key, Scope, Span, SpanId, SpanKind, Status, StatusCode, TraceId,
    parse_hex_id,
};
use serde_json::value::RawValue;
use std::cell::RefCell;
use std::sync::Arc;

/// The span of `line`, or `None` to leave the line to serde.
pub(super) fn parse(line: &str) -> Option<Span> {
    let mut c = Cursor {
        s: line,
        b: line.as_bytes(),
        i: 0,
    };
    let span = c.span()?;
    c.ws();
    (c.i == c.b.len()).then_some(span)
}

/// A position in the line. Every reader skips the whitespace before what it
/// reads, and returns `None` where serde might read something else.
struct Cursor<'a> {
    s: &'a str,
    b: &'a [u8],
    i: usize,
}

/// Top-level keys, as bits: a key seen twice is left to serde (which
/// refuses it).
mod seen {
    pub const TRACE: u16 = 1;
    pub const SPAN: u16 = 1 << 1;
    pub const PARENT: u16 = 1 << 2;
    pub const TRACE_STATE: u16 = 1 << 3;
    pub const NAME: u16 = 1 << 4;
    pub const KIND: u16 = 1 << 5;
    pub const START: u16 = 1 << 6;
    pub const END: u16 = 1 << 7;
    pub const STATUS: u16 = 1 << 8;
    pub const ATTRIBUTES: u16 = 1 << 9;
    pub const EVENTS: u16 = 1 << 10;
    pub const LINKS: u16 = 1 << 11;
    pub const RESOURCE: u16 = 1 << 12;
    pub const SCOPE: u16 = 1 << 13;
    /// What a span must have.
    pub const REQUIRED: u16 = TRACE | SPAN | START | END;
}

impl<'a> Cursor<'a> {
    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.b.get(self.i) {
            self.i += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.ws();
        self.b.get(self.i).copied()
    }

    fn eat(&mut self, byte: u8) -> Option<()> {
        (self.peek()? == byte).then(|| self.i += 1)
    }

    /// After an object's or array's first member: `,` and true, or the
    /// closing byte and false.
    fn more(&mut self, close: u8) -> Option<bool> {
        match self.peek()? {
            b',' => {
                self.i += 1;
                Some(true)
            }
            b if b == close => {
                self.i += 1;
                Some(false)
            }
            _ => None,
        }
    }

    /// Reads `{`, then calls `member` with each key until `}`.
    fn object(&mut self, mut member: impl FnMut(&mut Self, &'a str) -> Option<()>) -> Option<()> {
        self.eat(b'{')?;
        if self.peek()? == b'}' {
            self.i += 1;
            return Some(());
        }
        loop {
            let key = self.string()?;
            self.eat(b':')?;
            member(self, key)?;
            if !self.more(b'}')? {
                return Some(());
            }
        }
    }

    /// A string without escapes or control characters (which serde refuses).
    #[inline]
    fn string(&mut self) -> Option<&'a str> {
        self.eat(b'"')?;
        let start = self.i;
        let len = plain_len(&self.b[start..]);
        let end = start + len;
        if self.b.get(end) != Some(&b'"') {
            return None;
        }
        self.i = end + 1;
        // Both ends are ASCII bytes of a `str`: char boundaries.
        self.s.get(start..end)
    }

    /// `null`, which serde reads as an absent option.
    fn null(&mut self) -> Option<bool> {
        if self.peek()? == b'n' {
            self.literal(b"null")?;
            Some(true)
        } else {
            Some(false)
        }
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        self.ws();
        let rest = self.b.get(self.i..)?;
        rest.starts_with(word).then(|| self.i += word.len())
    }

    /// A JSON number's text, checked against the grammar (serde refuses
    /// `01`, `1.`, `.5`, `+1`).
    fn number(&mut self) -> Option<&'a str> {
        self.ws();
        let start = self.i;
        let b = self.b;
        let digits = |i: &mut usize| {
            let from = *i;
            while b.get(*i).is_some_and(u8::is_ascii_digit) {
                *i += 1;
            }
            *i > from
        };
        let mut i = start;
        if b.get(i) == Some(&b'-') {
            i += 1;
        }
        let int_start = i;
        if !digits(&mut i) || (b[int_start] == b'0' && i - int_start > 1) {
            return None;
        }
        if b.get(i) == Some(&b'.') {
            i += 1;
            if !digits(&mut i) {
                return None;
            }
        }
        if let Some(b'e' | b'E') = b.get(i) {
            i += 1;
            if let Some(b'+' | b'-') = b.get(i) {
                i += 1;
            }
            if !digits(&mut i) {
                return None;
            }
        }
        self.i = i;
        self.s.get(start..i)
    }

    /// An array or object as its JSON text, checked by serde (rare: finish
    /// reasons, message lists).
    fn nested(&mut self) -> Option<&'a RawValue> {
        self.ws();
        let start = self.i;
        let mut depth = 0usize;
        let mut i = start;
        while let Some(&c) = self.b.get(i) {
            match c {
                b'[' | b'{' => depth += 1,
                b']' | b'}' => {
                    depth = depth.checked_sub(1)?;
                    if depth == 0 {
                        i += 1;
                        break;
                    }
                }
                b'"' => {
                    // To the closing quote, over escaped ones.
                    i += 1;
                    while *self.b.get(i)? != b'"' {
                        i += if self.b[i] == b'\\' { 2 } else { 1 };
                    }
                }
                _ => {}
            }
            i += 1;
        }
        if depth != 0 {
            return None;
        }
        let raw = serde_json::from_str::<&RawValue>(self.s.get(start..i)?).ok()?;
        self.i = i;
        Some(raw)
    }

    /// A time: an integer or a decimal string (see `flat::de_time`). The
    /// integer's digits are added up as they are read (a time has 19).
    fn time(&mut self) -> Option<u64> {
        if self.peek()? == b'"' {
            return time_from_text(self.string()?).ok();
        }
        let start = self.i;
        let mut n = 0u64;
        while let Some(&d) = self.b.get(self.i).filter(|d| d.is_ascii_digit()) {
            n = n.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
            self.i += 1;
        }
        let digits = self.i - start;
        // Not a fraction, an exponent or a leading zero: serde refuses
        // those, or reads a float, which is not a time.
        let plain = digits > 0
            && !(digits > 1 && self.b[start] == b'0')
            && !matches!(self.b.get(self.i), Some(b'.' | b'e' | b'E'));
        plain.then_some(n)
    }

    /// A kind or status code: a name or an OTLP number.
    fn name_or_number(&mut self) -> Option<NameOrNumber> {
        if self.peek()? == b'"' {
            return Some(NameOrNumber::Name(self.string()?.to_owned()));
        }
        let n = self.number()?;
        if n.bytes().any(|b| matches!(b, b'.' | b'e' | b'E')) {
            return None;
        }
        n.parse().ok().map(NameOrNumber::Number)
    }

    /// An attribute value: `None` to give up, `Some(None)` for `null`
    /// (dropped, as serde's path drops it).
    fn value(&mut self) -> Option<Option<AttrValue>> {
        match self.peek()? {
            b'"' => Some(Some(AttrValue::Str(self.string()?.into()))),
            b't' => self.literal(b"true").map(|()| Some(AttrValue::Bool(true))),
            b'f' => self
                .literal(b"false")
                .map(|()| Some(AttrValue::Bool(false))),
            b'n' => self.literal(b"null").map(|()| None),
            b'[' | b'{' => {
                let raw = self.nested()?;
                Some(Some(AttrValue::Json(raw.to_owned())))
            }
            _ => {
                // A number: never the array or object the closure makes.
                let n = self.number()?;
                attr_value_from_text(n, || AttrValue::Bool(false)).ok()
            }
        }
    }

    /// An attributes object (or `null`, which serde reads as none).
    fn attributes(&mut self) -> Option<Attributes> {
        if self.null()? {
            return Some(Attributes::default());
        }
        thread_local! {
            static SCRATCH: RefCell<Vec<(Key, AttrValue)>> = const { RefCell::new(Vec::new()) };
        }
        SCRATCH.with(|scratch| {
            let mut scratch = scratch.try_borrow_mut().ok()?;
            scratch.clear();
            let mut at = 0;
            self.object(|c, key| {
                if let Some(v) = c.value()? {
                    scratch.push((recent_key(at, key), v));
                }
                at += 1;
                Some(())
            })?;
            // The exact size, as serde's path makes it: a span may wait in
            // the trace hold for seconds.
            let mut out = Vec::with_capacity(scratch.len());
            out.append(&mut scratch);
            Some(Attributes(out))
        })
    }

    /// A resource's attributes, shared with the previous line's when the
    /// text is the same (spans of one process carry the same resource).
    fn resource(&mut self) -> Option<Arc<Attributes>> {
        thread_local! {
            static LAST: RefCell<Option<(String, Arc<Attributes>)>> = const { RefCell::new(None) };
        }
        if self.null()? {
            return Some(empty_resource());
        }
        let start = self.i;
        let attributes = self.attributes_text()?;
        LAST.with(|last| {
            let mut last = last.try_borrow_mut().ok()?;
            if let Some((text, shared)) = last.as_ref()
                && text.as_str() == attributes
            {
                return Some(shared.clone());
            }
            self.i = start;
            let parsed = Arc::new(self.attributes()?);
            *last = Some((attributes.to_owned(), parsed.clone()));
            Some(parsed)
        })
    }

    /// The text of the object at the cursor, which is left after it;
    /// structure only, checked when it is parsed.
    fn attributes_text(&mut self) -> Option<&'a str> {
        self.ws();
        if self.b.get(self.i) != Some(&b'{') {
            return None;
        }
        let start = self.i;
        let mut depth = 0usize;
        let mut i = start;
        while let Some(&c) = self.b.get(i) {
            match c {
                b'{' | b'[' => depth += 1,
                b'}' | b']' => {
                    depth = depth.checked_sub(1)?;
                    if depth == 0 {
                        self.i = i + 1;
                        return self.s.get(start..=i);
                    }
                }
                b'"' => {
                    i += 1;
                    while *self.b.get(i)? != b'"' {
                        i += if self.b[i] == b'\\' { 2 } else { 1 };
                    }
                }
                _ => {}
            }
            i += 1;
        }
        None
    }

    fn status(&mut self) -> Option<Status> {
        if self.null()? {
            return Some(Status::default());
        }
        let (mut code, mut message) = (None, None);
        self.object(|c, key| match key {
            "code" if code.is_none() => {
                code = Some(if c.null()? {
                    StatusCode::Unset
                } else {
                    status_code(c.name_or_number()?).ok()?
                });
                Some(())
            }
            "message" if message.is_none() => {
                message = Some(if c.null()? {
                    String::new()
                } else {
                    c.string()?.to_owned()
                });
                Some(())
            }
            _ => None,
        })?;
        Some(Status {
            code: code.unwrap_or_default(),
            message: message.unwrap_or_default(),
        })
    }

    fn events(&mut self) -> Option<Vec<Event>> {
        self.eat(b'[')?;
        let mut events = Vec::new();
        if self.peek()? == b']' {
            self.i += 1;
            return Some(events);
        }
        loop {
            let (mut name, mut time, mut attributes) = (None, None, None);
            self.object(|c, key| match key {
                "name" if name.is_none() => {
                    name = Some(c.string()?.to_owned());
                    Some(())
                }
                "time_unix_nano" if time.is_none() => {
                    time = Some(c.time()?);
                    Some(())
                }
                "attributes" if attributes.is_none() => {
                    attributes = Some(c.attributes()?);
                    Some(())
                }
                _ => None,
            })?;
            events.push(Event {
                name: name.unwrap_or_default(),
                time_unix_nano: time.unwrap_or_default(),
                attributes: attributes.unwrap_or_default(),
            });
            if !self.more(b']')? {
                return Some(events);
            }
        }
    }

    fn scope(&mut self) -> Option<Option<Arc<Scope>>> {
        if self.null()? {
            return Some(None);
        }
        let (mut name, mut version) = (None, None);
        self.object(|c, key| match key {
            "name" if name.is_none() => {
                name = Some(c.string()?.to_owned());
                Some(())
            }
            "version" if version.is_none() => {
                version = Some(c.string()?.to_owned());
                Some(())
            }
            _ => None,
        })?;
        Some(Some(Arc::new(Scope {
            name: name.unwrap_or_default(),
            version: version.unwrap_or_default(),
        })))
    }

    fn span(&mut self) -> Option<Span> {
        // Field by field: `Span::default()` would allocate a resource.
        let mut span = Span {
            trace_id: TraceId::default(),
            span_id: SpanId::default(),
            parent_span_id: None,
            trace_state: String::new(),
            name: Default::default(),
            kind: SpanKind::Unspecified,
            start_time_unix_nano: 0,
            end_time_unix_nano: 0,
            status: Status::default(),
            attributes: Attributes::default(),
            events: Vec::new(),
            links: Vec::new(),
            resource: empty_resource(),
            scope: None,
            seq: 0,
        };
        let mut have = 0u16;
        self.object(|c, key| {
            let bit = match key {
                "trace_id" => {
                    span.trace_id = TraceId(parse_hex_id(c.string()?, "").ok()?);
                    seen::TRACE
                }
                "span_id" => {
                    span.span_id = SpanId(parse_hex_id(c.string()?, "").ok()?);
                    seen::SPAN
                }
                "parent_span_id" => {
                    span.parent_span_id = match c.null()? {
                        true => None,
                        false => match c.string()? {
                            "" => None,
                            p => Some(SpanId(parse_hex_id(p, "").ok()?)),
                        },
                    };
                    seen::PARENT
                }
                "trace_state" => {
                    if !c.null()? {
                        span.trace_state = super::trace_context::cleaned(c.string()?.to_owned());
                    }
                    seen::TRACE_STATE
                }
                "name" => {
                    span.name = c.string()?.into();
                    seen::NAME
                }
                "kind" => {
                    span.kind = match c.null()? {
                        true => SpanKind::Unspecified,
                        false => span_kind(c.name_or_number()?).ok()?,
                    };
                    seen::KIND
                }
                "start_time_unix_nano" => {
                    span.start_time_unix_nano = c.time()?;
                    seen::START
                }
                "end_time_unix_nano" => {
                    span.end_time_unix_nano = c.time()?;
                    seen::END
                }
                "status" => {
                    span.status = c.status()?;
                    seen::STATUS
                }
                "attributes" => {
                    span.attributes = c.attributes()?;
                    seen::ATTRIBUTES
                }
                "events" => {
                    span.events = c.events()?;
                    seen::EVENTS
                }
                "links" => {
                    // Links are rare: only none, here.
                    c.eat(b'[')?;
                    c.eat(b']')?;
                    seen::LINKS
                }
                "resource" => {
                    span.resource = c.resource()?;
                    seen::RESOURCE
                }
                "scope" => {
                    span.scope = c.scope()?;
                    seen::SCOPE
                }
                _ => return None,
            };
            if have & bit != 0 {
                return None;
            }
            have |= bit;
            Some(())
        })?;
        (have & seen::REQUIRED == seen::REQUIRED).then_some(span)
    }
}

/// The key of the `at`-th attribute of an object. Lines of one producer
/// write their attributes in the same order, so the key at the same place in
/// an earlier object is most often this one: comparing its text is cheaper
/// than looking the text up in the intern table (hashing it, then comparing).
fn recent_key(at: usize, text: &str) -> Key {
    /// Places remembered; an object's later attributes are looked up.
    const PLACES: usize = 64;
    thread_local! {
        static RECENT: RefCell<Vec<Key>> = const { RefCell::new(Vec::new()) };
    }
    if at >= PLACES {
        return Key::new(text);
    }
    RECENT.with(|recent| {
        let Ok(mut recent) = recent.try_borrow_mut() else {
            return Key::new(text);
        };
        if let Some(k) = recent.get(at)
            && k.as_str() == text
        {
            return k.clone();
        }
        let k = Key::new(text);
        if at < recent.len() {
            recent[at] = k.clone();
        } else if at == recent.len() {
            recent.push(k.clone());
        }
        k
    })
}

/// The resource of spans that give none, shared by them.
fn empty_resource() -> Arc<Attributes> {
    thread_local! {
        static EMPTY: Arc<Attributes> = Arc::new(Attributes::default());
    }
    EMPTY.with(Arc::clone)
}

#[cfg(test)]
mod tests {
    use super::super::flat;
    use super::*;

    /// Lines the scanner reads, as serde reads them; and lines it leaves to
    /// serde, which serde reads or refuses.
    #[test]
    fn same_as_serde_on_every_shape() {
        let base = r#"{"trace_id":"4BF92F3577B34DA6A3CE929D0E0E4736","span_id":"00f067aa0ba902b7","parent_span_id":null,"name":"chat gpt-4o","kind":"client","start_time_unix_nano":1732000000000000000,"end_time_unix_nano":"1732000001200000000","status":{"code":"error","message":"rate limited"},"attributes":{"m":"gpt-4o","i":1200,"f":0.5,"e":-1.5e3,"b":true,"c":false,"a":[1,"two",{"x":[]}],"o":{"k":"v\"q"},"n":null,"big":18446744073709551616,"m":"again"},"events":[{"name":"exception","time_unix_nano":1732000001100000000,"attributes":{"exception.type":"RateLimitError"}}],"links":[],"resource":{"service.name":"support-agent"},"scope":{"name":"lib","version":"1.0"}}"#;
        let taken = [
            base.to_string(),
            base.replace(r#""kind":"client""#, r#""kind":3"#),
            base.replace(r#""parent_span_id":null"#, r#""parent_span_id":"""#),
            base.replace(r#""parent_span_id":null"#, r#""parent_span_id":"00F067AA0BA902B8""#),
            base.replace(r#""status":{"code":"error","message":"rate limited"}"#, r#""status":{"code":2}"#),
            base.replace(r#""status":{"code":"error","message":"rate limited"}"#, r#""status":null"#),
            base.replace(r#","scope":{"name":"lib","version":"1.0"}"#, r#","scope":null,"trace_state":"a=1""#),
            base.replace(r#""resource":{"service.name":"support-agent"}"#, r#""resource":null"#),
            base.replace(r#""attributes":{"#, r#""attributes" : { "#).replace(',', " ,\n\t"),
            format!(" {base}\r\n"),
            base.replace(r#""events":[{"name":"exception","time_unix_nano":1732000001100000000,"attributes":{"exception.type":"RateLimitError"}}],"#, ""),
            r#"{"trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","span_id":"00f067aa0ba902b7","start_time_unix_nano":0,"end_time_unix_nano":"  7 ","attributes":{},"kind":null}"#.into(),
        ];
        for line in &taken {
            let fast = parse(line).unwrap_or_else(|| panic!("left to serde: {line}"));
            assert_eq!(Ok(fast), flat::parse_serde(line), "{line}");
        }
        let left = [
            base.replace("chat gpt-4o", r"chat \u0067pt"),
            base.replace(r#""m":"gpt-4o""#, r#""m\"":"gpt-4o""#),
            base.replace(r#""kind":"client""#, r#""kind":2.0"#),
            base.replace(r#""kind":"client""#, r#""kind":"sideways""#),
            base.replace(r#""i":1200"#, r#""i":01200"#),
            base.replace(r#""f":0.5"#, r#""f":.5"#),
            base.replace(r#""f":0.5"#, r#""f":1."#),
            base.replace(r#""a":[1,"two",{"x":[]}]"#, r#""a":[1,,2]"#),
            base.replace(r#""links":[]"#, r#""links":[{"trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","span_id":"00f067aa0ba902b7"}]"#),
            base.replace(r#""name":"chat gpt-4o""#, r#""name":"a","name":"b""#),
            base.replace(r#""name":"chat gpt-4o""#, r#""name":null"#),
            base.replace(r#""name":"chat gpt-4o""#, r#""other":1"#),
            base.replace(r#""start_time_unix_nano":1732000000000000000,"#, ""),
            base.replace("1732000000000000000", "-1"),
            base.replace("1732000000000000000", "1.7e18"),
            base.replace("00f067aa0ba902b7", "00f067aa0ba902"),
            base.replace("00f067aa0ba902b7", "0000000000000000"),
            base.replace(r#""message":"rate limited""#, r#""message":"tab	here""#),
            format!("{base}x"),
            base[..base.len() - 1].to_string(),
            "[]".into(),
            String::new(),
        ];
        for line in &left {
            assert!(parse(line).is_none(), "taken: {line}");
        }
        // What serde makes of them is what `flat::parse` gives.
        for line in taken.iter().chain(&left) {
            assert_eq!(flat::parse(line), flat::parse_serde(line), "{line}");
        }
    }

    /// Every line plume's own writer makes (the bench's synthetic spans) is
    /// taken by the scanner and read as serde reads it; consecutive spans
    /// of one resource share it.
    #[test]
    fn same_as_serde_on_written_spans() {
        let spans = crate::bench::synthetic_spans(400, 9, 1_000);
        let mut resources = Vec::new();
        for span in &spans {
            let mut line = Vec::new();
            flat::write(&mut line, span);
            let line = String::from_utf8(line).unwrap();
            let fast = parse(&line).unwrap_or_else(|| panic!("left to serde: {line}"));
            assert_eq!(&fast, span);
            assert_eq!(Ok(fast.clone()), flat::parse_serde(&line));
            resources.push(fast.resource);
        }
        assert!(resources.windows(2).all(|w| Arc::ptr_eq(&w[0], &w[1])));
    }

    /// Changing any one byte of a line never makes the scanner read
    /// something serde reads otherwise.
    #[test]
    fn same_as_serde_on_every_one_byte_change() {
        let line = r#"{"trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","span_id":"00f067aa0ba902b7","name":"n","kind":"client","start_time_unix_nano":1,"end_time_unix_nano":"2","status":{"code":"ok"},"attributes":{"a":"x","b":-1.5e3,"c":[1,{"d":null}],"e":true,"f":null},"events":[{"name":"e","time_unix_nano":3}],"resource":{"r":1}}"#;
        let replacements = b"\"\\{}[],:0123456789.eE+- \tntfax\x01";
        for at in 0..line.len() {
            for &r in replacements.iter() {
                let mut bytes = line.as_bytes().to_vec();
                bytes[at] = r;
                let Ok(changed) = std::str::from_utf8(&bytes) else {
                    continue;
                };
                if let Some(fast) = parse(changed) {
                    assert_eq!(Ok(fast), flat::parse_serde(changed), "{changed}");
                }
            }
            let mut cut = line.to_string();
            cut.remove(at);
            if let Some(fast) = parse(&cut) {
                assert_eq!(Ok(fast), flat::parse_serde(&cut), "{cut}");
            }
        }
    }

    #[test]
    fn plain_len_stops_at_the_first_special_byte() {
        for len in [0, 1, 15, 16, 17, 31, 32, 40] {
            for at in 0..=len {
                let mut s = vec![b'a'; len];
                if at < len {
                    s[at] = b'"';
                }
                assert_eq!(plain_len(&s), at.min(len), "{len} {at}");
            }
        }
        for special in [b'"', b'\\', 0, 0x1f, b'\n'] {
            for len in [1, 7, 8, 9, 16, 23] {
                for at in 0..len {
                    let mut s = vec![b'a'; len];
                    s[at] = special;
                    // Bytes that look near a special one are not: a byte
                    // above the first special, the high bytes, space, DEL.
                    if at + 1 < len {
                        s[at + 1] = 0x21;
                    }
                    assert_eq!(plain_len(&s), at, "{special} {len} {at}");
                }
            }
        }
        assert_eq!(plain_len("é ~\x7f\u{80}aaaaaaaaaa#!]".as_bytes()), 20);
    }
}
