//! A session's memcached key: the store's prefix, then the id.

use std::ops::Deref;

use arrayvec::ArrayString;

/// Keys up to this long are built on the stack: the default prefix's (30 bytes) and most
/// others. memcached takes up to 250.
const INLINE: usize = 64;

/// `prefix + id`, built without an allocation when it fits in [`INLINE`] bytes: every
/// store operation makes one.
pub(super) enum Key {
    Inline(ArrayString<INLINE>),
    Heap(String),
}

impl Key {
    pub(super) fn new(prefix: &str, id: &str) -> Self {
        let mut inline = ArrayString::new();
        match inline
            .try_push_str(prefix)
            .and_then(|()| inline.try_push_str(id))
        {
            Ok(()) => Self::Inline(inline),
            Err(_) => Self::Heap([prefix, id].concat()),
        }
    }
}

impl Deref for Key {
    type Target = str;

    fn deref(&self) -> &str {
        match self {
            Self::Inline(key) => key,
            Self::Heap(key) => key,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_key_is_on_the_stack_and_a_long_one_on_the_heap_both_whole() {
        let id = "a".repeat(22);
        let short = Key::new("session:", &id);
        assert!(matches!(short, Key::Inline(_)));
        assert_eq!(&*short, format!("session:{id}"));
        let at_limit = Key::new(&"p".repeat(INLINE - 22), &id);
        assert!(matches!(at_limit, Key::Inline(_)));
        assert_eq!(at_limit.len(), INLINE);
        let prefix = "p".repeat(INLINE - 21);
        let long = Key::new(&prefix, &id);
        assert!(matches!(long, Key::Heap(_)));
        assert_eq!(&*long, format!("{prefix}{id}"));
    }
}
