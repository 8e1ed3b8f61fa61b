//! Trace and span ids on the per-span path: compared and read as numbers a
//! word at a time. The host sends ids as lowercase hex (32 and 16 digits);
//! anything else still gives the answer the plain code would, only slower.

/// Whether two strings are equal. Ids of 16 and 32 bytes are compared as
/// whole words, inline; `==` calls `bcmp` out of line for every comparison.
#[inline(always)]
pub fn same(a: &str, b: &str) -> bool {
    same_bytes(a.as_bytes(), b.as_bytes())
}

/// [`same`] of bytes.
#[inline(always)]
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let word = |s: &[u8], at: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&s[at..at + 8]);
        u64::from_ne_bytes(w)
    };
    let differ = |at: usize| word(a, at) ^ word(b, at);
    match a.len() {
        32 => differ(0) | differ(8) | differ(16) | differ(24) == 0,
        16 => differ(0) | differ(8) == 0,
        _ => {
            let ((wa, ra), (wb, rb)) = (a.as_chunks::<8>(), b.as_chunks::<8>());
            wa.iter()
                .zip(wb)
                .all(|(x, y)| u64::from_ne_bytes(*x) == u64::from_ne_bytes(*y))
                && ra.iter().zip(rb).all(|(x, y)| x == y)
        }
    }
}

/// 16 bytes as `u64::from_str_radix(text, 16)` reads them (hex digits of
/// either case, or a `+` and 15 digits); `None` where it fails. The usual
/// id is read eight digits at a time.
#[inline(always)]
pub fn hex16(digits: &[u8; 16]) -> Option<u64> {
    if let Some(rest) = digits.strip_prefix(b"+") {
        // Rare: digit by digit.
        return rest.iter().try_fold(0u64, |n, &c| {
            Some((n << 4) | u64::from((c as char).to_digit(16)?))
        });
    }
    let word = |at: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&digits[at..at + 8]);
        u64::from_le_bytes(w)
    };
    Some((u64::from(hex8(word(0))?) << 32) | u64::from(hex8(word(8))?))
}

/// Eight hex digits, the first in the low byte, as a number; `None` if any
/// byte is not a hex digit. Tests and converts the eight bytes together.
#[inline(always)]
fn hex8(w: u64) -> Option<u32> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    if w & HIGH != 0 {
        return None; // not ASCII
    }
    // For bytes below 0x80, the high bit of `x + 0x80 - lo` is set when
    // x >= lo, and that of `x + 0x7f - hi` when x > hi; nothing carries.
    let within = |x: u64, lo: u8, hi: u8| {
        (x + ONES * u64::from(0x80 - lo)) & !(x + ONES * u64::from(0x7f - hi)) & HIGH
    };
    let digits = within(w, b'0', b'9');
    let letters = within(w | (ONES * 0x20), b'a', b'f'); // either case
    if digits | letters != HIGH {
        return None;
    }
    // The low four bits, plus 9 for letters (bit 6 set).
    let n = (w & (ONES * 0x0f)) + ((w >> 6) & ONES) * 9;
    // Pack the nibbles, the first digit highest: pairs, then fours, then all.
    let n = ((n & 0x000f_000f_000f_000f) << 4) | ((n >> 8) & 0x000f_000f_000f_000f);
    let n = ((n & 0x0000_00ff_0000_00ff) << 8) | ((n >> 16) & 0x0000_00ff_0000_00ff);
    let n = ((n & 0xffff) << 16) | ((n >> 32) & 0xffff);
    Some(n as u32)
}

/// Hashes an id: the usual 32 bytes as two 128-bit words (foldhash does one
/// multiply for each; a `str` goes through its 128-bit buffer, whose shifts
/// wasm32 emulates), any other id by its bytes.
#[inline(always)]
pub fn hash_id<H: std::hash::Hasher>(id: &str, h: &mut H) {
    hash_id_bytes(id.as_bytes(), h);
}

#[inline(always)]
fn hash_id_bytes<H: std::hash::Hasher>(id: &[u8], h: &mut H) {
    match <&[u8; 32]>::try_from(id) {
        Ok(b) => {
            let word = |at: usize| {
                let mut w = [0u8; 16];
                w.copy_from_slice(&b[at..at + 16]);
                u128::from_le_bytes(w)
            };
            h.write_u128(word(0));
            h.write_u128(word(16));
        }
        Err(_) => h.write(id),
    }
}

/// A trace id as a map key: the usual 32 bytes inline (no string allocated
/// per trace), any other id as its text. Hashes with [`hash_id`], compares
/// with [`same`], encodes as the string it is.
#[derive(Clone, Debug, Eq)]
pub enum TraceKey {
    /// 32 bytes: always the UTF-8 of a `str` (made only from one).
    Id([u8; 32]),
    /// An id of another length.
    Text(Box<str>),
}

impl TraceKey {
    /// The key of `trace`.
    pub fn of(trace: &str) -> TraceKey {
        match trace.as_bytes().try_into() {
            Ok(id) => TraceKey::Id(id),
            Err(_) => TraceKey::Text(trace.into()),
        }
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        match self {
            TraceKey::Id(id) => std::str::from_utf8(id).expect("made from a str"),
            TraceKey::Text(s) => s,
        }
    }

    /// The id's bytes (no UTF-8 check: for hashing and comparing).
    fn bytes(&self) -> &[u8] {
        match self {
            TraceKey::Id(id) => id,
            TraceKey::Text(s) => s.as_bytes(),
        }
    }
}

impl PartialEq for TraceKey {
    fn eq(&self, other: &Self) -> bool {
        same_bytes(self.bytes(), other.bytes())
    }
}

impl std::hash::Hash for TraceKey {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        hash_id_bytes(self.bytes(), h);
    }
}

impl serde::Serialize for TraceKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for TraceKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(TraceKey::of(&String::deserialize(d)?))
    }
}

#[cfg(test)]
mod tests {
    use super::{hex16, same};

    /// Every byte value at every position, and the usual shapes: the same
    /// answer as `from_str_radix`.
    #[test]
    fn hex16_reads_as_from_str_radix() {
        let mut inputs: Vec<[u8; 16]> = vec![
            *b"0123456789abcdef",
            *b"0123456789ABCDEF",
            *b"ffffffffffffffff",
            *b"0000000000000000",
            *b"+123456789abcdef",
            *b"++23456789abcdef",
            *b"-123456789abcdef",
        ];
        for at in 0..16 {
            for byte in 0..=255u8 {
                let mut id = *b"0123456789abcdef";
                id[at] = byte;
                inputs.push(id);
            }
        }
        for id in inputs {
            let want = std::str::from_utf8(&id)
                .ok()
                .and_then(|s| u64::from_str_radix(s, 16).ok());
            assert_eq!(hex16(&id), want, "{id:?}");
        }
    }

    #[test]
    fn same_is_string_equality() {
        let base: String = (0..40).map(|i| char::from(b'a' + i % 26)).collect();
        for len in 0..40 {
            let a = &base[..len];
            assert!(same(a, a));
            assert!(!same(a, &base[..len + 1]));
            for at in 0..len {
                let mut b = a.as_bytes().to_vec();
                b[at] = b'Z';
                let b = String::from_utf8(b).expect("ascii");
                assert!(!same(a, &b), "{len} {at}");
            }
        }
    }
}
