//! Single-threaded waker slots: how one task of a shard tells another
//! "something changed, look again" without a lock, a channel or an
//! allocation. Everything here is `!Send`: it never leaves its shard.

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::task::{Poll, Waker};

/// Holds at most one waker of one waiting task.
///
/// The waiter re-checks its condition after every wake-up (spurious wakes
/// are harmless); the notifier changes the condition first, then calls
/// [`WakerSlot::wake`].
#[derive(Default)]
pub struct WakerSlot {
    waker: RefCell<Option<Waker>>,
}

impl WakerSlot {
    /// An empty slot.
    pub fn new() -> Self {
        Self::default()
    }

    /// Stores `waker` (replacing an older one of another task).
    pub fn register(&self, waker: &Waker) {
        let mut slot = self.waker.borrow_mut();
        match slot.as_ref() {
            Some(current) if current.will_wake(waker) => {}
            _ => *slot = Some(waker.clone()),
        }
    }

    /// Wakes the registered task, if any, and empties the slot.
    pub fn wake(&self) {
        let waker = self.waker.borrow_mut().take();
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Resolves once `ready()` is true; re-evaluated after each wake.
    pub async fn wait_until(&self, mut ready: impl FnMut() -> bool) {
        poll_fn(|cx| {
            if ready() {
                return Poll::Ready(());
            }
            self.register(cx.waker());
            Poll::Pending
        })
        .await
    }
}

/// A level-triggered flag with one waiter: `notify` sets it, `wait`
/// resolves (and clears it) once it is set.
#[derive(Default)]
pub struct Notify {
    set: Cell<bool>,
    slot: WakerSlot,
}

impl Notify {
    /// A cleared flag.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the flag and wakes the waiter.
    pub fn notify(&self) {
        self.set.set(true);
        self.slot.wake();
    }

    /// Waits until the flag is set, then clears it.
    pub async fn wait(&self) {
        self.slot.wait_until(|| self.set.get()).await;
        self.set.set(false);
    }
}

/// Yields to the scheduler once, so other ready tasks of the shard run
/// (a work budget per loop turn, STYLE habit 8).
pub async fn yield_now() {
    let mut yielded = false;
    poll_fn(|cx| {
        if yielded {
            return Poll::Ready(());
        }
        yielded = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::rc::Rc;

    #[test]
    fn notify_wakes_waiter_once() {
        let mut rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .build()
            .unwrap_or_else(|e| panic!("runtime: {e}"));
        rt.block_on(async {
            let n = Rc::new(Notify::new());
            let n2 = n.clone();
            let task = monoio::spawn(async move {
                n2.wait().await;
                7
            });
            yield_now().await;
            n.notify();
            assert_eq!(task.await, 7);
            assert!(!n.set.get(), "wait clears the flag");
        });
    }
}
