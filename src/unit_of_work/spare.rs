//! Buffers for encoded sessions, kept per thread: a commit takes one and gives it back when
//! its write is done, so a worker's writes reuse a few allocations instead of making one
//! each. A thread keeps at most `KEPT` of them, none larger than `KEEP_BYTES`: a worker does
//! not hold on to the memory of its largest session.

use std::cell::RefCell;
use std::ops::Deref;

/// Commits a worker has in flight at once seldom pass this; the buffers beyond it are
/// freed as before.
const KEPT: usize = 8;

/// A buffer that grew past this is freed, not kept.
const KEEP_BYTES: usize = 64 * 1024;

thread_local! {
    static SPARE: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

/// An encoded session in a buffer of this thread's, given back when dropped.
pub(crate) struct Encoded(Vec<u8>);

impl Encoded {
    /// Fills a buffer (this thread's spare, or a new one) with `fill`.
    pub(crate) fn with(fill: impl FnOnce(&mut Vec<u8>)) -> Self {
        // `try_with`: a thread being torn down has no spares, and needs none.
        let spare = SPARE.try_with(|spare| spare.borrow_mut().pop());
        let mut buffer = spare.ok().flatten().unwrap_or_default();
        // What the last session left is not read: `fill` writes from the start.
        buffer.clear();
        fill(&mut buffer);
        Self(buffer)
    }
}

impl Deref for Encoded {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl Drop for Encoded {
    fn drop(&mut self) {
        let buffer = std::mem::take(&mut self.0);
        if buffer.capacity() > KEEP_BYTES {
            return;
        }
        let _ = SPARE.try_with(|spare| {
            let mut spare = spare.borrow_mut();
            if spare.len() < KEPT {
                spare.push(buffer);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kept() -> Vec<usize> {
        SPARE.with(|spare| spare.borrow().iter().map(Vec::capacity).collect())
    }

    #[test]
    fn a_buffer_is_reused_cleared_and_kept_within_bounds() {
        let first = Encoded::with(|b| b.extend_from_slice(b"a longer session"));
        let address = first.as_ptr();
        drop(first);
        let second = Encoded::with(|b| b.extend_from_slice(b"short"));
        assert_eq!(second.as_ptr(), address, "the same allocation");
        assert_eq!(&*second, b"short", "nothing of the last session");
        drop(second);

        let large = Encoded::with(|b| b.resize(KEEP_BYTES + 1, b'x'));
        let before = kept();
        drop(large);
        assert_eq!(kept(), before, "a large buffer is freed");

        let many: Vec<Encoded> = (0..KEPT + 3)
            .map(|_| Encoded::with(|b| b.push(1)))
            .collect();
        drop(many);
        assert_eq!(kept().len(), KEPT, "no more than KEPT");
    }
}
