//! A future boxed where it is made: the box comes first, then the future, so that the
//! compiler can build the future in the box rather than on the stack and copy it in.

use std::future::Future;

use futures_util::future::LocalBoxFuture;

/// `make`'s future, made once its box is there. Made first and then boxed, a future is
/// copied in whole: hundreds of bytes, most of them for states it has not reached.
pub(crate) fn made_in_box<'a, F: Future + 'a>(
    make: impl FnOnce() -> F,
) -> LocalBoxFuture<'a, F::Output> {
    let boxed: Box<F> = Box::write(Box::new_uninit(), make());
    Box::into_pin(boxed)
}
