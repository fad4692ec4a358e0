//! Close pacing: at most [`CLOSE_STEPS_PER_TURN`] steps of connection
//! closes per loop turn of a shard, so that a burst of closes (hundreds of
//! clients disconnecting at once) cannot stall the connections that stay.
//!
//! A graceful close is several steps, each a few microseconds on the shard
//! (`conn` module docs): the closing flush (the engine's last bytes and a
//! TLS close_notify encrypted and sent; on loopback the kernel processes
//! the peer's receive inline), the FIN (`shutdown(SHUT_WR)`, the same), and
//! the report ([`Handler::on_closed`](super::Handler::on_closed): the
//! engine ends the session, then the sockets and sessions are dropped).
//! Run inline for 1,800 connections that closed together they held a shard
//! for ~28 ms, and monoio runs every ready task before it looks at its
//! completions again, so a message for an open connection waited behind
//! all of them (docs/benchmarks.md, handshake storm).
//!
//! Each step first asks the shard's [`ClosePacer`] for a turn. The first
//! [`CLOSE_STEPS_PER_TURN`] are admitted at once; later ones wait in
//! arrival order, and the pacer admits the next batch only after the
//! runtime has looked at its completions again: it sends itself a byte
//! over a socket pair and waits for it through the driver (on io_uring the
//! receive completes inline, so its completion comes with whatever else
//! completed meanwhile, and the tasks those wake run before the next
//! batch; on epoll the byte's arrival is an event of the next
//! `epoll_wait`, with the other sockets' events: `TurnMarker`). With nothing else to do the next turn comes at once, so closes
//! are as fast as before on an idle shard. Close work is only ever
//! delayed, never dropped: every waiting step is admitted in order.
//!
//! The native io_uring loop applies the same budget with its own per-turn
//! counter (its `close` module); it needs no socket pair because it owns
//! its loop.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::Future;
use std::io::{self, Write};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use crate::alloc::{shrunk_capacity, SHRINK_MIN_CAPACITY};

/// Most close steps (a closing flush, a FIN, a close report) one shard
/// runs per loop turn; the rest wait for the next turn (module docs).
/// At ~15 µs per graceful TLS close (three steps; docs/benchmarks.md,
/// handshake storm) this bounds the close work between two looks at the
/// shard's completions to ~0.1 ms.
pub const CLOSE_STEPS_PER_TURN: u32 = 16;

/// Wait between two batches where the socket pair marks no turn (out of
/// descriptors), in milliseconds: the runtime's timers then mark the turns. Also how long a count of admitted steps
/// lasts with no pacer running.
const FALLBACK_TURN_MS: u64 = 1;

/// One waiting close step.
#[derive(Default)]
struct Ticket {
    admitted: Cell<bool>,
    /// The waiting future was dropped (its task ended): skip it.
    abandoned: Cell<bool>,
    waker: RefCell<Option<Waker>>,
}

/// A shard's close budget (module docs). `!Send`: one per shard thread.
pub struct ClosePacer {
    budget: u32,
    /// Steps admitted since the pacer last saw a turn end (or, with no
    /// pacer running, since `window_at`).
    used: Cell<u32>,
    /// When the first step of the current count was admitted.
    window_at: Cell<Option<Instant>>,
    /// How long a count lasts with no pacer running.
    window: Duration,
    waiting: RefCell<VecDeque<Rc<Ticket>>>,
    /// The pacer task is running.
    pacing: Cell<bool>,
    /// Steps that had to wait for a later turn.
    deferred: Cell<u64>,
    /// Turns the pacer task has seen end.
    turns: Cell<u64>,
    /// Of those, turns marked by a timer (no socket pair).
    timed_turns: Cell<u64>,
}

thread_local! {
    static PACER: Rc<ClosePacer> = Rc::new(ClosePacer::new(CLOSE_STEPS_PER_TURN));
}

/// The current thread's pacer.
pub fn pacer() -> Rc<ClosePacer> {
    PACER.with(Rc::clone)
}

impl ClosePacer {
    /// A pacer admitting `budget` steps per turn (at least one).
    pub fn new(budget: u32) -> ClosePacer {
        ClosePacer {
            budget: budget.max(1),
            used: Cell::new(0),
            window_at: Cell::new(None),
            window: Duration::from_millis(FALLBACK_TURN_MS),
            waiting: RefCell::new(VecDeque::new()),
            pacing: Cell::new(false),
            deferred: Cell::new(0),
            turns: Cell::new(0),
            timed_turns: Cell::new(0),
        }
    }

    /// The same, with counts lasting `window` when no pacer runs (tests:
    /// a slow machine must not reset a count within one turn).
    pub fn with_window(budget: u32, window: Duration) -> ClosePacer {
        ClosePacer {
            window,
            ..ClosePacer::new(budget)
        }
    }

    /// Close steps that waited for a later turn so far.
    pub fn deferred(&self) -> u64 {
        self.deferred.get()
    }

    /// Turns the pacer task has seen end so far (each admits a batch).
    pub fn turns(&self) -> u64 {
        self.turns.get()
    }

    /// Of [`turns`](Self::turns), those marked by a timer tick
    /// ([`FALLBACK_TURN_MS`]) because the socket pair could not be made or
    /// failed; the others were marked by the driver.
    pub fn timed_turns(&self) -> u64 {
        self.timed_turns.get()
    }

    /// Resolves when this close step may run: at once while the turn's
    /// budget lasts and nothing waits, else after the steps ahead of it.
    /// Must be awaited on a monoio runtime (the pacer task runs there).
    pub fn admit(self: &Rc<Self>) -> Admit {
        let admit = self.take_or_queue();
        if admit.ticket.is_some() && !self.pacing.replace(true) {
            monoio::spawn(pace(self.clone()));
        }
        admit
    }

    /// A unit of this turn's budget, or a place in the queue.
    fn take_or_queue(&self) -> Admit {
        if self.waiting.borrow().is_empty() {
            // Occasional closes with no pacer running: a count older than
            // a turn's worth of time is stale (else every `budget`-th close
            // would wait for a turn of its own).
            let now = Instant::now();
            let fresh = self
                .window_at
                .get()
                .is_some_and(|at| now.duration_since(at) < self.window);
            if !fresh {
                self.used.set(0);
                self.window_at.set(Some(now));
            }
            if self.used.get() < self.budget {
                self.used.set(self.used.get() + 1);
                return Admit { ticket: None };
            }
        }
        let ticket = Rc::new(Ticket::default());
        self.waiting.borrow_mut().push_back(ticket.clone());
        self.deferred.set(self.deferred.get() + 1);
        Admit {
            ticket: Some(ticket),
        }
    }

    /// A turn ended: admits the next batch in order. Returns whether steps
    /// are still waiting.
    fn next_turn(&self) -> bool {
        self.used.set(0);
        self.window_at.set(Some(Instant::now()));
        let mut waiting = self.waiting.borrow_mut();
        while self.used.get() < self.budget {
            let Some(ticket) = waiting.pop_front() else {
                break;
            };
            if ticket.abandoned.get() {
                continue;
            }
            ticket.admitted.set(true);
            self.used.set(self.used.get() + 1);
            let waker = ticket.waker.borrow_mut().take();
            if let Some(waker) = waker {
                waker.wake();
            }
        }
        // A burst of closes grew the queue: its capacity goes once it has
        // drained (after 18,500 closes on monoio it kept 256 KiB), all of
        // it once empty: shrunk to the minimum while the burst's last closes
        // waited, the queue was a new block among the burst's freed ones,
        // where it kept 16 KiB of allocator pages resident after them
        // (docs/benchmarks.md, "Memory given back after closes: the first
        // `$SYS` publish at start-up").
        if waiting.is_empty() && waiting.capacity() >= SHRINK_MIN_CAPACITY {
            *waiting = VecDeque::new();
        } else if let Some(to) = shrunk_capacity(waiting.len(), waiting.capacity()) {
            waiting.shrink_to(to);
        }
        !waiting.is_empty()
    }
}

/// The future of [`ClosePacer::admit`].
pub struct Admit {
    ticket: Option<Rc<Ticket>>,
}

impl Future for Admit {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let Some(ticket) = &self.ticket else {
            return Poll::Ready(());
        };
        if ticket.admitted.get() {
            return Poll::Ready(());
        }
        *ticket.waker.borrow_mut() = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl Drop for Admit {
    fn drop(&mut self) {
        if let Some(ticket) = &self.ticket {
            ticket.abandoned.set(true);
        }
    }
}

/// The pacer task: one batch per turn of the runtime until nobody waits.
async fn pace(pacer: Rc<ClosePacer>) {
    // Cleared however the task ends (also when its runtime is dropped with
    // the task pending), so that a later runtime on this thread paces again.
    let _pacing = Pacing(pacer.clone());
    let mut marker = match TurnMarker::new() {
        Ok(marker) => Some(marker),
        Err(e) => {
            tracing::debug!(error = %e, "close pacing on timers (no socket pair)");
            None
        }
    };
    loop {
        let marked = match &mut marker {
            Some(m) => match m.next().await {
                Ok(()) => true,
                Err(e) => {
                    tracing::debug!(error = %e, "close pacing on timers");
                    marker = None;
                    false
                }
            },
            None => false,
        };
        if !marked {
            // No socket pair: a timer marks the turn.
            monoio::time::sleep(Duration::from_millis(FALLBACK_TURN_MS)).await;
            pacer.timed_turns.set(pacer.timed_turns.get() + 1);
        }
        pacer.turns.set(pacer.turns.get() + 1);
        if !pacer.next_turn() {
            break;
        }
    }
}

struct Pacing(Rc<ClosePacer>);

impl Drop for Pacing {
    fn drop(&mut self) {
        self.0.pacing.set(false);
    }
}

/// Marks the runtime's turns: a byte sent to ourselves over a socket pair,
/// received through the driver.
///
/// The receive is issued before the byte is sent, so that only the driver
/// can complete it: on io_uring the receive is queued and completes with
/// the ring's next completions; on epoll (monoio's readiness driver) its
/// first attempt finds the socket empty, which clears the readiness monoio
/// had cached, and the byte's arrival then comes as an event of the next
/// `epoll_wait`, with the other connections' events. Sent first, the byte
/// was read at once on epoll (monoio keeps a socket readable until a read
/// would block), which marked no turn: the pacer then waited a timer tick
/// (about 1.5 ms) per batch, and 18,500 closing connections (three steps
/// each, 16 per batch) took 5-6 s (docs/benchmarks.md, "Memory given back
/// after closes: monoio on epoll").
struct TurnMarker {
    tx: std::os::unix::net::UnixStream,
    rx: monoio::net::UnixStream,
    buf: Vec<u8>,
}

impl TurnMarker {
    fn new() -> io::Result<TurnMarker> {
        let (tx, rx) = std::os::unix::net::UnixStream::pair()?;
        tx.set_nonblocking(true)?;
        rx.set_nonblocking(true)?;
        Ok(TurnMarker {
            tx,
            rx: monoio::net::UnixStream::from_std(rx)?,
            buf: Vec::with_capacity(64),
        })
    }

    /// Resolves once the runtime has been through its completions (or
    /// readiness events).
    async fn next(&mut self) -> io::Result<()> {
        use monoio::io::AsyncReadRent;
        let tx = &self.tx;
        let mut buf = std::mem::take(&mut self.buf);
        loop {
            let mut read = std::pin::pin!(self.rx.read(buf));
            let mut polls = 0u32;
            let mut sent: io::Result<()> = Ok(());
            let done = std::future::poll_fn(|cx| {
                polls += 1;
                let read = read.as_mut().poll(cx);
                if polls == 1 && read.is_pending() {
                    // The receive waits on the driver now: send the byte.
                    if let Err(e) = (&*tx).write_all(&[1]) {
                        sent = Err(e);
                        return Poll::Ready(None);
                    }
                }
                read.map(Some)
            })
            .await;
            sent?;
            let Some((result, mut returned)) = done else {
                return Err(io::ErrorKind::BrokenPipe.into());
            };
            returned.clear();
            buf = returned;
            if result? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            if polls > 1 {
                self.buf = buf;
                return Ok(());
            }
            // A byte left from an earlier turn (its receive was
            // abandoned): it is drained now; receive again.
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::task::Wake;

    struct Noop;
    impl Wake for Noop {
        fn wake(self: std::sync::Arc<Self>) {}
    }

    fn ready(admit: &mut Admit) -> bool {
        let waker = Waker::from(std::sync::Arc::new(Noop));
        let mut cx = Context::from_waker(&waker);
        Pin::new(admit).poll(&mut cx).is_ready()
    }

    #[test]
    fn admits_a_budget_per_turn_in_arrival_order() {
        let pacer = ClosePacer::with_window(4, Duration::from_secs(3600));
        let mut steps: Vec<Admit> = (0..10).map(|_| pacer.take_or_queue()).collect();
        let admitted = |steps: &mut Vec<Admit>| -> Vec<usize> {
            (0..steps.len()).filter(|&i| ready(&mut steps[i])).collect()
        };
        assert_eq!(
            admitted(&mut steps),
            vec![0, 1, 2, 3],
            "the first turn's budget"
        );
        assert_eq!(pacer.deferred(), 6);
        // A step whose task ended while waiting takes no unit of budget:
        // the next turn admits the 5th, 7th, 8th and 9th.
        drop(steps.remove(5));
        assert!(pacer.next_turn(), "steps still wait");
        assert_eq!(admitted(&mut steps), vec![0, 1, 2, 3, 4, 5, 6, 7]);
        assert!(!pacer.next_turn(), "the last one was admitted");
        assert_eq!(admitted(&mut steps).len(), 9);
        // With the queue empty, the budget of the turn still counts ...
        assert_eq!(pacer.used.get(), 1);
        let mut more: Vec<Admit> = (0..4).map(|_| pacer.take_or_queue()).collect();
        assert_eq!(
            admitted(&mut more),
            vec![0, 1, 2],
            "three left in this turn"
        );
        // ... until its window has passed with no pacer running.
        let quick = ClosePacer::with_window(1, Duration::ZERO);
        let mut spaced: Vec<Admit> = (0..3).map(|_| quick.take_or_queue()).collect();
        assert_eq!(admitted(&mut spaced), vec![0, 1, 2]);
        assert_eq!(quick.deferred(), 0);
    }

    /// The queue a burst of closes grew gives its capacity back once it
    /// has drained, keeping the order of what still waits.
    #[test]
    fn the_queue_lets_go_of_a_bursts_capacity() {
        let burst = 8 * SHRINK_MIN_CAPACITY;
        let pacer = ClosePacer::with_window(1, Duration::from_secs(3600));
        let mut steps: Vec<Admit> = (0..burst).map(|_| pacer.take_or_queue()).collect();
        assert!(ready(&mut steps[0]), "the turn's one unit");
        let peak = pacer.waiting.borrow().capacity();
        assert!(peak >= burst - 1);
        // Steps whose tasks ended cost no budget: the next turn admits the
        // first live one behind them and drops the rest from the queue.
        let last = steps.pop();
        steps.truncate(1);
        let mut last = last.unwrap_or_else(|| panic!("a last step"));
        assert!(!pacer.next_turn(), "the last step was admitted");
        assert!(ready(&mut last));
        let after = pacer.waiting.borrow().capacity();
        assert_eq!(after, 0, "capacity {after} after the burst (was {peak})");
        // A queue that never grew past the minimum keeps its block.
        let mut few: Vec<Admit> = (0..8).map(|_| pacer.take_or_queue()).collect();
        let small = pacer.waiting.borrow().capacity();
        few.truncate(7);
        assert!(pacer.next_turn(), "steps still waiting");
        assert_eq!(pacer.waiting.borrow().capacity(), small);
    }

    /// A shard closing many connections in one turn still runs a
    /// connection that became ready meanwhile before the next batch of
    /// close steps (on io_uring and on epoll).
    #[test]
    fn a_burst_of_closes_yields_to_a_ready_connection() {
        crate::conn::tests::on_each_runtime(burst_yields);
    }

    async fn burst_yields(driver: &'static str) {
        const CLOSES: usize = 40;
        const BUDGET: u32 = 16;
        let pacer = Rc::new(ClosePacer::with_window(BUDGET, Duration::from_secs(3600)));
        let log: Rc<RefCell<Vec<String>>> = Rc::default();
        let (tx, rx) =
            std::os::unix::net::UnixStream::pair().unwrap_or_else(|e| panic!("pair: {e}"));
        rx.set_nonblocking(true)
            .unwrap_or_else(|e| panic!("nonblocking: {e}"));
        let rx = monoio::net::UnixStream::from_std(rx).unwrap_or_else(|e| panic!("adopt: {e}"));
        // An open connection waiting for its next message.
        let flow = monoio::spawn({
            let log = log.clone();
            async move {
                use monoio::io::AsyncReadRent;
                let mut rx = rx;
                let (read, _) = rx.read(Vec::with_capacity(8)).await;
                assert_eq!(read.unwrap_or_else(|e| panic!("flow read: {e}")), 1);
                log.borrow_mut().push("flow".into());
            }
        });
        monoio::time::sleep(Duration::from_millis(5)).await;
        let tx = Rc::new(tx);
        let closes: Vec<_> = (0..CLOSES)
            .map(|i| {
                let (pacer, log, tx) = (pacer.clone(), log.clone(), tx.clone());
                monoio::spawn(async move {
                    pacer.admit().await;
                    if i == 0 {
                        // The flow's message arrives while the first
                        // batch of closes runs.
                        (&*tx)
                            .write_all(&[1])
                            .unwrap_or_else(|e| panic!("write: {e}"));
                    }
                    log.borrow_mut().push(format!("close {i}"));
                })
            })
            .collect();
        for close in closes {
            close.await;
        }
        flow.await;
        let log = log.borrow();
        let flow_at = log.iter().position(|e| e == "flow");
        let next_batch_at = log.iter().position(|e| e == &format!("close {BUDGET}"));
        assert!(
            flow_at < next_batch_at,
            "{driver}: the ready connection ran after the next batch of closes: {log:?}"
        );
        let order: Vec<&String> = log.iter().filter(|e| *e != "flow").collect();
        let expected: Vec<String> = (0..CLOSES).map(|i| format!("close {i}")).collect();
        assert_eq!(
            order,
            expected.iter().collect::<Vec<_>>(),
            "{driver}: arrival order"
        );
        assert_eq!(pacer.deferred(), (CLOSES - BUDGET as usize) as u64);
        assert!(pacer.turns() >= 2, "{driver}: {} turns", pacer.turns());
        // Every turn was marked by the driver, none by a timer tick: on
        // epoll the marker's byte used to be read at once (a 1.5 ms tick
        // per batch instead).
        assert_eq!(pacer.timed_turns(), 0, "{driver}: turns marked by timers");
        assert!(!pacer.pacing.get(), "{driver}: the pacer task ended");
    }
}
