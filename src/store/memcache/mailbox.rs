//! Where each request's reply waits for it: a one-shot channel per request, like tokio's
//! `oneshot`, but its slots live in one slab per connection and are reused, so a request
//! allocates nothing for its answer (a `oneshot` allocates its shared state each time).
//! Single-threaded, as a connection is.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use slab::Slab;

/// The slots of one connection's requests in flight.
pub(super) struct Mailbox<T> {
    slots: RefCell<Slab<Slot<T>>>,
}

impl<T> Default for Mailbox<T> {
    fn default() -> Self {
        Self {
            slots: RefCell::new(Slab::new()),
        }
    }
}

struct Slot<T> {
    /// `None` until sent; `Some(None)` when the sender went without sending.
    sent: Option<Option<T>>,
    waker: Option<Waker>,
    /// The receiver is gone: what is sent is dropped and the slot freed.
    abandoned: bool,
}

/// A sender and a receiver for one value.
pub(super) fn channel<T>(mailbox: &Rc<Mailbox<T>>) -> (Sender<T>, Receiver<T>) {
    let key = mailbox.slots.borrow_mut().insert(Slot {
        sent: None,
        waker: None,
        abandoned: false,
    });
    let sender = Sender {
        mailbox: Some(Rc::clone(mailbox)),
        key,
    };
    let receiver = Receiver {
        mailbox: Some(Rc::clone(mailbox)),
        key,
    };
    (sender, receiver)
}

/// Sends one value. Dropped without sending, it tells the receiver so (`None`): a
/// receiver never waits on a sender that is gone.
pub(super) struct Sender<T> {
    /// `None` once it has sent.
    mailbox: Option<Rc<Mailbox<T>>>,
    key: usize,
}

impl<T> Sender<T> {
    pub(super) fn send(mut self, value: T) {
        self.deliver(Some(value));
    }

    fn deliver(&mut self, value: Option<T>) {
        let Some(mailbox) = self.mailbox.take() else {
            return;
        };
        let waker = {
            let mut slots = mailbox.slots.borrow_mut();
            let Some(slot) = slots.get_mut(self.key) else {
                return;
            };
            if slot.abandoned {
                let freed = slots.remove(self.key);
                drop(slots);
                drop((freed, value));
                return;
            }
            slot.sent = Some(value);
            slot.waker.take()
        };
        // Woken with the slab released.
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        self.deliver(None);
    }
}

/// The value, when it comes: `None` if the sender went without sending. Dropped before
/// then, it leaves its slot to be freed when the sender is done.
pub(super) struct Receiver<T> {
    /// `None` once it has received.
    mailbox: Option<Rc<Mailbox<T>>>,
    key: usize,
}

impl<T> Future for Receiver<T> {
    type Output = Option<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let this = self.get_mut();
        let Some(mailbox) = &this.mailbox else {
            // Polled again after it received: nothing more comes.
            return Poll::Ready(None);
        };
        let mut slots = mailbox.slots.borrow_mut();
        let Some(slot) = slots.get_mut(this.key) else {
            return Poll::Ready(None);
        };
        if let Some(sent) = slot.sent.take() {
            let freed = slots.remove(this.key);
            drop(slots);
            drop(freed);
            this.mailbox = None;
            return Poll::Ready(sent);
        }
        let replaced = match &mut slot.waker {
            Some(waker) if waker.will_wake(cx.waker()) => None,
            waker => waker.replace(cx.waker().clone()),
        };
        // Dropped with the slab released, like everything a slot held: a waker's drop
        // may end a task, and with it a sender of this mailbox.
        drop(slots);
        drop(replaced);
        Poll::Pending
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        let Some(mailbox) = self.mailbox.take() else {
            return;
        };
        let mut slots = mailbox.slots.borrow_mut();
        let Some(slot) = slots.get_mut(self.key) else {
            return;
        };
        let freed = if slot.sent.is_some() {
            (Some(slots.remove(self.key)), None)
        } else {
            slot.abandoned = true;
            (None, slot.waker.take())
        };
        drop(slots);
        drop(freed);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::Wake;

    use super::*;

    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn poll<T>(rx: &mut Receiver<T>, waker: &Waker) -> Poll<Option<T>> {
        Pin::new(rx).poll(&mut Context::from_waker(waker))
    }

    fn in_use<T>(mailbox: &Mailbox<T>) -> usize {
        mailbox.slots.borrow().len()
    }

    #[test]
    fn a_value_sent_before_or_after_the_poll_arrives_once_and_frees_its_slot() {
        let mailbox = Rc::new(Mailbox::default());
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(Arc::clone(&count));

        let (tx, mut rx) = channel(&mailbox);
        tx.send(1);
        assert_eq!(poll(&mut rx, &waker), Poll::Ready(Some(1)));
        assert_eq!(poll(&mut rx, &waker), Poll::Ready(None), "nothing twice");

        let (tx, mut rx) = channel(&mailbox);
        assert_eq!(poll(&mut rx, &waker), Poll::Pending);
        tx.send(2);
        assert_eq!(count.0.load(Ordering::SeqCst), 1, "woken once");
        assert_eq!(poll(&mut rx, &waker), Poll::Ready(Some(2)));
        drop(rx);
        assert_eq!(in_use(&mailbox), 0);
    }

    #[test]
    fn a_sender_gone_without_sending_is_told_and_wakes_the_receiver() {
        let mailbox = Rc::new(Mailbox::<u8>::default());
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(Arc::clone(&count));
        let (tx, mut rx) = channel(&mailbox);
        assert_eq!(poll(&mut rx, &waker), Poll::Pending);
        drop(tx);
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        assert_eq!(poll(&mut rx, &waker), Poll::Ready(None));
        assert_eq!(in_use(&mailbox), 0);
    }

    #[test]
    fn a_receiver_gone_frees_its_slot_when_the_sender_is_done_and_slots_are_reused() {
        let mailbox = Rc::new(Mailbox::default());
        let (tx, rx) = channel(&mailbox);
        drop(rx);
        assert_eq!(in_use(&mailbox), 1, "kept until the reply comes");
        tx.send(String::from("late"));
        assert_eq!(in_use(&mailbox), 0);

        let (tx, rx) = channel(&mailbox);
        tx.send(String::from("unread"));
        drop(rx);
        assert_eq!(in_use(&mailbox), 0);

        let (gone_tx, gone_rx) = channel(&mailbox);
        drop(gone_rx);
        drop(gone_tx);
        let open = |n| {
            (0..n)
                .map(|_| channel::<String>(&mailbox))
                .collect::<Vec<_>>()
        };
        let keys = |open: &[(Sender<String>, Receiver<String>)]| {
            let mut keys: Vec<usize> = open.iter().map(|(tx, _)| tx.key).collect();
            keys.sort_unstable();
            keys
        };
        let first = open(3);
        assert_eq!(in_use(&mailbox), 3);
        let used = keys(&first);
        drop(first);
        assert_eq!(in_use(&mailbox), 0);
        assert_eq!(keys(&open(3)), used, "the same slots again");
    }
}
