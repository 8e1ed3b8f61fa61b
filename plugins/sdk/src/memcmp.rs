//! `memcmp` and `bcmp` for the plugin (feature `memcmp`, on by default).
//!
//! Rust compares byte strings (`==` on `str` and `[u8]`, map keys, sorting)
//! through `memcmp`/`bcmp`, which wasi-libc implements a byte at a time. In
//! the default pipeline that loop was ~4% of all instructions: trace ids (32
//! bytes) compared in maps, model names, response ids. These compare 8 bytes
//! at a time and give the same results. Defined here, they are the ones the
//! linker takes (libc's are only pulled in for symbols nothing else defines).

/// Compares `n` bytes at `a` and `b`, as C's `memcmp`.
///
/// # Safety
/// `a` and `b` must be valid for reads of `n` bytes.
#[cfg(all(feature = "memcmp", target_family = "wasm"))]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    // SAFETY: the caller's guarantee, passed on.
    let (a, b) = unsafe { slices(a, b, n) };
    compare(a, b)
}

/// Whether `n` bytes at `a` and `b` differ (C's `bcmp`: zero when equal).
///
/// # Safety
/// `a` and `b` must be valid for reads of `n` bytes.
#[cfg(all(feature = "memcmp", target_family = "wasm"))]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    // SAFETY: the caller's guarantee, passed on.
    let (a, b) = unsafe { slices(a, b, n) };
    i32::from(differ(a, b))
}

/// The `n` bytes at `a` and at `b`.
///
/// # Safety
/// `a` and `b` must be valid for reads of `n` bytes while the slices live.
#[cfg(all(feature = "memcmp", target_family = "wasm"))]
unsafe fn slices<'a>(a: *const u8, b: *const u8, n: usize) -> (&'a [u8], &'a [u8]) {
    // SAFETY: the caller's guarantee.
    unsafe {
        (
            std::slice::from_raw_parts(a, n),
            std::slice::from_raw_parts(b, n),
        )
    }
}

/// Whether `a` and `b` (equal lengths) differ: words compared as they are,
/// with none of `compare`'s byte swaps (wasm has no instruction for one).
#[cfg_attr(not(all(feature = "memcmp", target_family = "wasm")), allow(dead_code))]
#[inline]
fn differ(a: &[u8], b: &[u8]) -> bool {
    let n = a.len().min(b.len());
    let (wa, ra) = a[..n].as_chunks::<8>();
    let (wb, rb) = b[..n].as_chunks::<8>();
    wa.iter()
        .zip(wb)
        .any(|(x, y)| u64::from_ne_bytes(*x) != u64::from_ne_bytes(*y))
        || ra.iter().zip(rb).any(|(x, y)| x != y)
}

/// Negative, zero or positive as the first differing byte of `a` is below,
/// equal to or above that of `b` (equal lengths). Compares words as
/// integers, never slices: slice equality would call `memcmp` itself.
#[cfg_attr(not(all(feature = "memcmp", target_family = "wasm")), allow(dead_code))]
#[inline]
fn compare(a: &[u8], b: &[u8]) -> i32 {
    let n = a.len().min(b.len());
    let (wa, ra) = a[..n].as_chunks::<8>();
    let (wb, rb) = b[..n].as_chunks::<8>();
    for (x, y) in wa.iter().zip(wb) {
        // Big-endian words order as their bytes do.
        let (x, y) = (u64::from_be_bytes(*x), u64::from_be_bytes(*y));
        if x != y {
            return if x < y { -1 } else { 1 };
        }
    }
    for (&x, &y) in ra.iter().zip(rb) {
        if x != y {
            return i32::from(x) - i32::from(y);
        }
    }
    0
}

#[cfg(test)]
mod tests {
    use super::{compare, differ};

    /// The same sign as a byte-by-byte comparison, for every length and
    /// every place of the first difference, either way round.
    #[test]
    fn orders_as_bytes_do() {
        for len in 0..40usize {
            for at in 0..len {
                for (x, y) in [(0u8, 1u8), (1, 0), (0x7f, 0x80), (0xff, 0), (b'a', b'b')] {
                    let a: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
                    let mut b = a.clone();
                    let mut a2 = a.clone();
                    a2[at] = x;
                    b[at] = y;
                    // Later bytes that would order the other way.
                    if at + 1 < len {
                        a2[at + 1] = 0;
                        b[at + 1] = 0xff;
                    }
                    let got = compare(&a2, &b);
                    assert_eq!(got.signum(), (x as i32 - y as i32).signum(), "{len} {at}");
                    assert_eq!(a2.cmp(&b) as i32, got.signum());
                    assert!(differ(&a2, &b), "{len} {at}");
                }
            }
            let a: Vec<u8> = (0..len).map(|i| i as u8).collect();
            assert_eq!(compare(&a, &a.clone()), 0);
            assert!(!differ(&a, &a.clone()));
        }
    }
}
