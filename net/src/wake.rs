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
/// A `Cell`, not a `RefCell`: every connection has two (16 bytes each,
/// not 24), and no borrow is ever held across a call.
#[derive(Default)]
pub struct WakerSlot {
    waker: Cell<Option<Waker>>,
}

impl WakerSlot {
    /// An empty slot.
    pub fn new() -> Self {
        Self::default()
    }

    /// Stores `waker` (replacing an older one of another task).
    pub fn register(&self, waker: &Waker) {
        let keep = match self.waker.take() {
            Some(current) if current.will_wake(waker) => current,
            _ => waker.clone(),
        };
        self.waker.set(Some(keep));
    }

    /// Wakes the registered task, if any, and empties the slot.
    pub fn wake(&self) {
        let waker = self.waker.take();
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

    /// Whether the flag was set, clearing it (for a loop that polls
    /// instead of awaiting: the native shard loop).
    pub fn take(&self) -> bool {
        self.set.replace(false)
    }

    /// Waits until the flag is set, then clears it.
    pub async fn wait(&self) {
        self.slot.wait_until(|| self.set.get()).await;
        self.set.set(false);
    }
}

thread_local! {
    /// Tasks that yielded, waiting for the kicker task to wake them.
    static YIELDED: RefCell<Vec<Waker>> = const { RefCell::new(Vec::new()) };
    /// Wakes this thread's kicker task; `None` until the first yield.
    static KICKER: RefCell<Option<std::rc::Rc<Notify>>> = const { RefCell::new(None) };
}

/// Yields to the scheduler once, so the shard's other ready tasks (and its
/// I/O completions) run before this task continues (a work budget per loop
/// turn, STYLE habit 8).
///
/// Why not `wake_by_ref` + `Pending`: monoio 0.2 puts a task that wakes
/// itself during its own poll at the *front* of the run queue, so it would
/// run again before anything else. Here the waker is parked and a small
/// kicker task (spawned on first use, one per thread) is woken instead; the
/// kicker runs after the tasks already queued and wakes the yielders from
/// outside their poll, which queues them at the back.
pub async fn yield_now() {
    let mut yielded = false;
    poll_fn(|cx| {
        if yielded {
            return Poll::Ready(());
        }
        yielded = true;
        YIELDED.with(|y| y.borrow_mut().push(cx.waker().clone()));
        kicker().notify();
        Poll::Pending
    })
    .await
}

fn kicker() -> std::rc::Rc<Notify> {
    KICKER.with(|k| {
        k.borrow_mut()
            .get_or_insert_with(|| {
                let notify = std::rc::Rc::new(Notify::new());
                let n = notify.clone();
                monoio::spawn(async move {
                    let mut wakers = Vec::new();
                    loop {
                        n.wait().await;
                        YIELDED.with(|y| std::mem::swap(&mut *y.borrow_mut(), &mut wakers));
                        for w in wakers.drain(..) {
                            w.wake();
                        }
                    }
                });
                notify
            })
            .clone()
    })
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

    /// A yielding task lets a task queued behind it run before it continues.
    #[test]
    fn yield_now_goes_to_the_back_of_the_queue() {
        let mut rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .build()
            .unwrap_or_else(|e| panic!("runtime: {e}"));
        rt.block_on(async {
            let log = Rc::new(RefCell::new(Vec::new()));
            let (a, b) = (log.clone(), log.clone());
            let spinner = monoio::spawn(async move {
                for i in 0..3 {
                    a.borrow_mut().push(format!("spin{i}"));
                    yield_now().await;
                }
            });
            let other = monoio::spawn(async move {
                b.borrow_mut().push("other".to_string());
            });
            spinner.await;
            other.await;
            let log = log.borrow();
            let spin1 = log.iter().position(|x| x == "spin1");
            let other = log.iter().position(|x| x == "other");
            assert!(
                other < spin1,
                "the other task ran before the yielder resumed: {log:?}"
            );
        });
    }
}
