//! Attribute keys, interned process-wide.
//!
//! The same few dozen keys repeat on every span. A key that is interned is a
//! `&'static` reference to its one copy, which also carries a small number
//! (see [`Key::id`]): cloning and dropping it cost nothing, and no counter is
//! shared between threads. (Keys used to be `Arc<str>`: a profile put most of
//! dropping a span on the counters' atomic decrements, though on its own the
//! change was within the noise: those were where a drop first touched a cold
//! span.) Interned keys are never freed; at most [`MAX_INTERNED`] keys of at
//! most [`MAX_INTERNED_LEN`] bytes are (512 KiB at worst), after which keys
//! are owned by their span.

use std::borrow::Borrow;
use std::cell::RefCell;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::Deref;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use foldhash::{HashMap, HashMapExt};

/// Distinct keys interned per process; beyond, keys are allocated per span
/// (a bound against clients that send ever-new keys).
pub const MAX_INTERNED: usize = 4096;
/// Longer keys are not interned.
pub const MAX_INTERNED_LEN: usize = 128;

/// An attribute key.
#[derive(Clone)]
pub struct Key(Repr);

/// 16 bytes: the owned form is boxed twice (rare keys pay an indirection) so
/// that it fits beside the interned form's pointer, and an attribute (key
/// and value) takes 40 bytes.
#[derive(Clone)]
enum Repr {
    Interned(&'static Interned),
    Owned(Box<Box<str>>),
}

/// The one copy of an interned key: its text, and a small number given in
/// order of first use, so that a projection finds the reads of a span's key
/// by indexing a table instead of comparing or hashing.
#[derive(Debug)]
pub struct Interned {
    text: Box<str>,
    id: u32,
    /// The key as a JSON string, quotes and escapes included: writers copy
    /// it instead of escaping the key for every span.
    json: Box<str>,
}

impl Key {
    /// The key for `key`, interned when it is short and the table has room.
    /// Parsers call this for every attribute: a thread-local cache answers
    /// repeats without taking the process-wide lock.
    pub fn new(key: &str) -> Key {
        thread_local! {
            static SEEN: RefCell<HashMap<&'static str, &'static Interned>> = RefCell::new(HashMap::new());
        }
        if key.len() > MAX_INTERNED_LEN {
            return Key(Repr::Owned(Box::new(key.into())));
        }
        if let Some(k) = SEEN.with(|seen| seen.borrow().get(key).copied()) {
            return Key(Repr::Interned(k));
        }
        match intern_globally(key) {
            Some(k) => {
                SEEN.with(|seen| seen.borrow_mut().insert(&k.text, k));
                Key(Repr::Interned(k))
            }
            None => Key(Repr::Owned(Box::new(key.into()))),
        }
    }

    /// The key as a string.
    pub fn as_str(&self) -> &str {
        match &self.0 {
            Repr::Interned(k) => &k.text,
            Repr::Owned(s) => s,
        }
    }

    /// True when this key lives in the process-wide table.
    pub fn is_interned(&self) -> bool {
        matches!(self.0, Repr::Interned(_))
    }

    /// An owned key even when the text could be interned, as a thread gets
    /// once the table is full: for tests of the lookups that must still
    /// find it.
    #[cfg(test)]
    pub(crate) fn owned(key: &str) -> Key {
        Key(Repr::Owned(Box::new(key.into())))
    }

    /// An interned key as a JSON string (quoted, escaped); `None` for an
    /// owned key.
    #[inline]
    pub fn json(&self) -> Option<&str> {
        match self.0 {
            Repr::Interned(k) => Some(&k.json),
            Repr::Owned(_) => None,
        }
    }

    /// The number of an interned key (below [`MAX_INTERNED`]; the same for
    /// every copy of the key, on every thread); `None` for an owned key.
    #[inline]
    pub fn id(&self) -> Option<u32> {
        match self.0 {
            Repr::Interned(k) => Some(k.id),
            Repr::Owned(_) => None,
        }
    }
}

/// The process-wide copy of `key`, leaked once; `None` when the table is full.
/// Once it is full the lock is no longer taken: a client that sends ever-new
/// keys would otherwise take it for every attribute, on every thread. (A key
/// interned earlier that a thread had not cached yet is then owned there:
/// keys compare by their text, so only sharing is lost.)
fn intern_globally(key: &str) -> Option<&'static Interned> {
    static TABLE: Mutex<Option<HashMap<&'static str, &'static Interned>>> = Mutex::new(None);
    static FULL: AtomicBool = AtomicBool::new(false);
    if FULL.load(Ordering::Relaxed) {
        return None;
    }
    let mut table = TABLE.lock().unwrap_or_else(|e| e.into_inner());
    let table = table.get_or_insert_with(HashMap::new);
    if let Some(k) = table.get(key) {
        return Some(k);
    }
    if table.len() >= MAX_INTERNED {
        FULL.store(true, Ordering::Relaxed);
        return None;
    }
    let k: &'static Interned = Box::leak(Box::new(Interned {
        text: key.into(),
        id: table.len() as u32,
        json: serde_json::to_string(key).unwrap_or_default().into(),
    }));
    table.insert(&k.text, k);
    Some(k)
}

impl From<&str> for Key {
    fn from(key: &str) -> Key {
        Key::new(key)
    }
}

impl From<String> for Key {
    fn from(key: String) -> Key {
        Key::new(&key)
    }
}

impl Deref for Key {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl Borrow<str> for Key {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for Key {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq for Key {
    /// Two interned keys are equal exactly when they are the same copy (the
    /// table holds one per text), so the common case reads no key text.
    fn eq(&self, other: &Key) -> bool {
        match (&self.0, &other.0) {
            (Repr::Interned(a), Repr::Interned(b)) => std::ptr::eq(*a, *b),
            _ => self.as_str() == other.as_str(),
        }
    }
}

impl Eq for Key {}

impl PartialEq<str> for Key {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state)
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_keys_are_interned_once_and_long_keys_are_owned() {
        let a = Key::new("gen_ai.request.model");
        let b = Key::from(String::from("gen_ai.request.model"));
        assert!(a.is_interned() && b.is_interned());
        assert!(std::ptr::eq(a.as_str(), b.as_str()));
        // Another thread finds the same copy.
        let c = std::thread::spawn(|| Key::new("gen_ai.request.model").as_str().as_ptr() as usize)
            .join()
            .unwrap();
        assert_eq!(c, a.as_str().as_ptr() as usize);

        let long = "k".repeat(MAX_INTERNED_LEN + 1);
        let l = Key::new(&long);
        assert!(!l.is_interned());
        assert_eq!(&*l, long.as_str());
        assert_eq!(l, Key::new(&long));
    }

    #[test]
    fn interned_keys_compare_by_address_and_owned_keys_by_text() {
        let a = Key::new("x.compare");
        assert_eq!(a, Key::new("x.compare"));
        assert_ne!(a, Key::new("x.compare2"));
        let owned = Key::owned("x.compare");
        assert!(a.id().is_some() && owned.id().is_none());
        assert_eq!(a.id(), Key::new("x.compare").id());
        assert_ne!(a.id(), Key::new("x.compare2").id());
        assert_eq!(Key::new("x.q\"uote").json(), Some(r#""x.q\"uote""#));
        assert_eq!(owned.json(), None);
        assert_eq!(a, owned);
        assert_eq!(owned, a);
        assert_ne!(Key::owned("x.other"), a);
    }

    #[test]
    fn a_key_and_an_attribute_stay_small() {
        assert_eq!(std::mem::size_of::<Key>(), 16);
        assert_eq!(std::mem::size_of::<(Key, crate::span::AttrValue)>(), 40);
    }
}
