//! Server handshakes off the shards: a small pool of helper threads runs
//! the expensive handshake steps (ECDHE, the certificate signature, the
//! client-certificate check with mTLS) while the shard goes on serving its
//! established connections.
//!
//! ```text
//!   shard: read ciphertext ──(session, cipher)──▶ helper thread (nice 19)
//!          await Pending    ◀──(session, plaintext, outcome)── TlsSession::read
//!          write the session's output, read again until established
//! ```
//!
//! Why a pool and not a budget on the shard: one handshake step (the
//! ClientHello: key exchange plus signature, ~200 µs with ECDSA P-256 and
//! about 1 ms with RSA-2048 on a 2020s x86 core) cannot be split, so a
//! shard that runs it inline delays every ready connection by that much,
//! and dozens of ClientHellos arriving together queue their steps
//! back to back. On the pool the shard only moves the session (a `Box`)
//! and the ciphertext in and out: a few microseconds per step.
//!
//! - The session moves whole: a `TlsSession` is `Send`, and while it is on
//!   a helper thread the shard holds only the [`Pending`] future, so no
//!   lock guards a session.
//! - Helper threads run at the lowest priority
//!   ([`crate::os::lower_thread_priority`]), like the password verifiers:
//!   a shard that wakes preempts them at once, yet they progress when the
//!   shard is busy.
//! - The queue is bounded by the connections themselves: each connection
//!   has at most one step in flight, and the engine bounds the connections
//!   (`limits.connections_max`); a handshake that never completes is cut by
//!   the CONNECT timeout like any connection that sends no CONNECT.
//! - The reply comes back through a [`Slot`]: one atomic pointer the
//!   helper publishes the finished step with (a single store) and the shard
//!   takes it with (a single swap), then the helper wakes the waiting task
//!   through an [`AtomicWaker`] (register, then re-check: no lost
//!   wake-up). Nothing the shard waits on can be held by a helper: a helper
//!   preempted at nice 19 on a busy core, even for a long time, never
//!   stalls a shard (a mutex, or a channel whose receiver waits for a
//!   sender's half-written slot, would be a priority inversion). Any
//!   executor whose wakers are `Send` can await [`Pending`] (monoio's are,
//!   with its `sync` feature).
//! - An event loop without futures (the native io_uring loop) gets its steps back through a [`StepInbox`] instead:
//!   [`HandshakePool::submit_to`] tags the step with the loop's own
//!   connection token, the helper pushes the finished step onto the
//!   inbox's lock-free stack (a compare-and-swap loop: a helper preempted
//!   in it holds nothing the loop waits for) and wakes the loop's waker;
//!   the loop takes every finished step with one swap
//!   ([`StepInbox::take_all`]).
//! - [`HandshakeStats`] counts the steps run on the pool and the server
//!   handshake steps that ran inline on a shard anyway (with the longest
//!   one's thread CPU time), so tests and operators can check that the
//!   shards stay out of handshake crypto.

use std::future::Future;
use std::pin::Pin;
use std::ptr;
use std::sync::atomic::AtomicPtr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::thread;

use atomic_waker::AtomicWaker;
use bytes::BytesMut;

use super::{TlsError, TlsRead, TlsSession};

/// Most helper threads a pool may have.
pub const THREADS_MAX: usize = 64;

/// One handshake step done by a helper thread.
pub struct Step {
    pub session: Box<TlsSession>,
    /// The plaintext the step produced (TLS 1.3 clients may send their
    /// first application data with their Finished).
    pub plain: BytesMut,
    pub result: Result<TlsRead, TlsError>,
}

/// Where a helper thread leaves a finished step: null until then.
struct Slot {
    step: AtomicPtr<Step>,
    waker: AtomicWaker,
}

impl Slot {
    /// Publishes `step` (once per slot).
    fn put(&self, step: Step) {
        let new = Box::into_raw(Box::new(step));
        let old = self.step.swap(new, Ordering::AcqRel);
        if !old.is_null() {
            // SAFETY: a non-null pointer in the slot always comes from
            // `Box::into_raw` above and is owned by the slot; swapping it
            // out transfers that ownership here.
            drop(unsafe { Box::from_raw(old) });
        }
    }

    /// Takes the step, if published.
    fn take(&self) -> Option<Step> {
        let p = self.step.swap(ptr::null_mut(), Ordering::AcqRel);
        if p.is_null() {
            return None;
        }
        // SAFETY: as in `put`: the pointer came from `Box::into_raw` and
        // the swap gave this caller sole ownership of it.
        Some(*unsafe { Box::from_raw(p) })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        // A step finished for a task that went away (connection closed).
        drop(self.take());
    }
}

/// Where a finished step goes back to.
enum Reply {
    /// The [`Pending`] future of one step.
    Slot(Arc<Slot>),
    /// An event loop's inbox, tagged with the loop's token for the
    /// connection.
    Inbox(Arc<StepInbox>, u64),
}

/// A step for a helper thread, and where it goes back to.
struct Job {
    session: Box<TlsSession>,
    cipher: BytesMut,
    reply: Reply,
}

/// Finished steps of one event loop (module docs): a lock-free stack the
/// helper threads push onto, and the loop's waker.
pub struct StepInbox {
    head: AtomicPtr<InboxNode>,
    waker: Waker,
}

struct InboxNode {
    tag: u64,
    step: Step,
    next: *mut InboxNode,
}

impl std::fmt::Debug for StepInbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StepInbox").finish_non_exhaustive()
    }
}

impl StepInbox {
    /// An empty inbox whose pushes wake `waker`.
    pub fn new(waker: Waker) -> Arc<StepInbox> {
        Arc::new(StepInbox {
            head: AtomicPtr::new(ptr::null_mut()),
            waker,
        })
    }

    /// Pushes a finished step (helper thread), then wakes the loop.
    fn push(&self, tag: u64, step: Step) {
        let node = Box::into_raw(Box::new(InboxNode {
            tag,
            step,
            next: ptr::null_mut(),
        }));
        let mut head = self.head.load(Ordering::Acquire);
        loop {
            // SAFETY: `node` came from `Box::into_raw` above and is not
            // visible to any other thread until the exchange succeeds.
            unsafe { (*node).next = head };
            match self
                .head
                .compare_exchange_weak(head, node, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => break,
                Err(current) => head = current,
            }
        }
        self.waker.wake_by_ref();
    }

    /// Appends every finished step to `out`, oldest first, with the tag it
    /// was submitted with.
    pub fn take_all(&self, out: &mut Vec<(u64, Step)>) {
        let mut p = self.head.swap(ptr::null_mut(), Ordering::AcqRel);
        let start = out.len();
        while !p.is_null() {
            // SAFETY: every node on the stack came from `Box::into_raw` in
            // `push`; the swap took the whole list out of the shared head,
            // so this thread owns each node exactly once.
            let node = unsafe { Box::from_raw(p) };
            p = node.next;
            out.push((node.tag, node.step));
        }
        out[start..].reverse();
    }
}

impl Drop for StepInbox {
    fn drop(&mut self) {
        // Steps finished for a loop that has gone: drop their sessions.
        let mut rest = Vec::new();
        self.take_all(&mut rest);
    }
}

/// Counters shared by the pool and the drivers that use it.
#[derive(Debug, Default)]
pub struct HandshakeStats {
    offloaded_steps: AtomicU64,
    inline_steps: AtomicU64,
    inline_step_max_us: AtomicU64,
}

/// A snapshot of [`HandshakeStats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HandshakeCounts {
    /// Handshake steps the helper threads ran.
    pub offloaded_steps: u64,
    /// Server handshake steps that ran on a shard (the driver's fallback).
    pub inline_steps: u64,
    /// The longest of those, in microseconds of the shard thread's CPU.
    pub inline_step_max_us: u64,
}

impl HandshakeStats {
    /// The current counts.
    pub fn counts(&self) -> HandshakeCounts {
        HandshakeCounts {
            offloaded_steps: self.offloaded_steps.load(Ordering::Relaxed),
            inline_steps: self.inline_steps.load(Ordering::Relaxed),
            inline_step_max_us: self.inline_step_max_us.load(Ordering::Relaxed),
        }
    }

    /// Records a server handshake step that ran on the calling (shard)
    /// thread and took `cpu_us` of its CPU time.
    pub fn record_inline(&self, cpu_us: u64) {
        self.inline_steps.fetch_add(1, Ordering::Relaxed);
        self.inline_step_max_us.fetch_max(cpu_us, Ordering::Relaxed);
    }
}

/// The helper threads and their queue, shared by every shard.
pub struct HandshakePool {
    jobs: Sender<Job>,
    stats: Arc<HandshakeStats>,
}

impl std::fmt::Debug for HandshakePool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HandshakePool")
            .field("stats", &self.stats.counts())
            .finish_non_exhaustive()
    }
}

impl HandshakePool {
    /// Starts `threads` (1..=[`THREADS_MAX`]) helper threads named
    /// `{name}-{i}`.
    pub fn start(threads: usize, name: &str) -> Result<Arc<HandshakePool>, String> {
        let (jobs, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        let stats = Arc::new(HandshakeStats::default());
        for i in 0..threads.clamp(1, THREADS_MAX) {
            let (rx, stats) = (rx.clone(), stats.clone());
            thread::Builder::new()
                .name(format!("{name}-{i}"))
                .spawn(move || worker(&rx, &stats))
                .map_err(|e| format!("cannot spawn TLS handshake thread {i}: {e}"))?;
        }
        Ok(Arc::new(HandshakePool { jobs, stats }))
    }

    /// The pool's counters.
    pub fn stats(&self) -> &Arc<HandshakeStats> {
        &self.stats
    }

    /// Hands one step (feed `cipher` to `session`) to a helper thread. The
    /// session comes back with the step's outcome through the returned
    /// future; `Err` gives both back if the helper threads are gone.
    #[allow(clippy::result_large_err)]
    pub fn submit(
        &self,
        session: Box<TlsSession>,
        cipher: BytesMut,
    ) -> Result<Pending, (Box<TlsSession>, BytesMut)> {
        let slot = Arc::new(Slot {
            step: AtomicPtr::new(ptr::null_mut()),
            waker: AtomicWaker::new(),
        });
        let job = Job {
            session,
            cipher,
            reply: Reply::Slot(slot.clone()),
        };
        match self.jobs.send(job) {
            Ok(()) => Ok(Pending { slot }),
            Err(mpsc::SendError(job)) => Err((job.session, job.cipher)),
        }
    }

    /// Hands one step to a helper thread like [`HandshakePool::submit`],
    /// for an event loop without futures: the finished step is pushed onto
    /// `inbox` with `tag` (module docs). `Err` gives both back if the
    /// helper threads are gone.
    #[allow(clippy::result_large_err)]
    pub fn submit_to(
        &self,
        session: Box<TlsSession>,
        cipher: BytesMut,
        inbox: &Arc<StepInbox>,
        tag: u64,
    ) -> Result<(), (Box<TlsSession>, BytesMut)> {
        let job = Job {
            session,
            cipher,
            reply: Reply::Inbox(inbox.clone(), tag),
        };
        self.jobs
            .send(job)
            .map_err(|mpsc::SendError(job)| (job.session, job.cipher))
    }
}

/// A step on its way back from a helper thread.
pub struct Pending {
    slot: Arc<Slot>,
}

impl Future for Pending {
    type Output = Step;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Step> {
        if let Some(step) = self.slot.take() {
            return Poll::Ready(step);
        }
        self.slot.waker.register(cx.waker());
        // A helper thread answers every job (it puts, then wakes), so an
        // empty slot means "not yet".
        match self.slot.take() {
            Some(step) => Poll::Ready(step),
            None => Poll::Pending,
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A helper that panicked while holding the lock leaves a valid
    // receiver: go on with it.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn worker(rx: &Mutex<Receiver<Job>>, stats: &HandshakeStats) {
    if let Err(e) = crate::os::lower_thread_priority() {
        tracing::warn!("TLS handshake thread keeps normal priority: {e}");
    }
    loop {
        // The lock is held while waiting: the other helpers wait on the
        // mutex instead of on the channel, which is the same thing.
        let job = lock(rx).recv();
        let Ok(Job {
            mut session,
            cipher,
            reply,
        }) = job
        else {
            return; // the pool was dropped
        };
        let mut plain = BytesMut::new();
        let result = session.read(&cipher, &mut plain);
        stats.offloaded_steps.fetch_add(1, Ordering::Relaxed);
        let step = Step {
            session,
            plain,
            result,
        };
        match reply {
            // If the task has gone (connection closed meanwhile), the last
            // `Arc` of the slot drops the step with its session.
            Reply::Slot(slot) => {
                slot.put(step);
                slot.waker.wake();
            }
            // A loop that no longer knows the tag drops the step.
            Reply::Inbox(inbox, tag) => inbox.push(tag, step),
        }
    }
}
