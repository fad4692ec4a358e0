//! Password verification off the shards: a small pool of helper threads
//! that runs `ringmq_engine::auth::decide` for the engine's
//! `Event::Authenticate` requests, and hands each verdict back to the shard
//! that asked, waking it.
//!
//! ```text
//!   shard (engine emits Authenticate{conn, token, ...})
//!     └─ ShardAuth::submit ──try_send──▶ bounded job queue (verify_queue_max_requests)
//!                                          │  full: refused at once, "server busy"
//!        helper threads (verify_threads) ◀─┘
//!          decide(store, request) (argon2: ~20 ms)
//!          throttle: record failure/success, delay for repeat offenders
//!          reply ──mpsc──▶ the shard's inbox, then AtomicWaker::wake
//!   shard's auth task: pops the verdict, waits out the delay (a timer on the
//!   shard, not a blocked helper), Broker::handle_auth_result(conn, token, ...)
//! ```
//!
//! Why this shape:
//! - argon2 is slow on purpose; on a shard it would stall every other
//!   client of that shard. Helper threads block only themselves.
//! - The job queue is bounded, so a burst of logins costs a bounded amount
//!   of memory and is answered "server busy" rather than queued forever.
//! - Nothing is cached: every login is verified against the current
//!   password file (reloaded on SIGHUP), so a wrong password never passes.
//! - The reply path wakes the shard the same way the ring mesh does
//!   (register, then re-check; the producer sends, then wakes), so a
//!   verdict is never left waiting for an unrelated wake-up.
//! - A verdict carries the engine's token: for a connection that closed
//!   meanwhile (its id maybe reused) the engine ignores it.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fs::File;
use std::future::poll_fn;
use std::io::Read;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::mpsc::{self, Receiver, Sender, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::thread;

use atomic_waker::AtomicWaker;
use bytes::Bytes;
use ringmq_engine::auth::password::FILE_MAX_BYTES;
use ringmq_engine::auth::scram::NONCE_MIN_BYTES;
use ringmq_engine::auth::throttle::Throttle;
use ringmq_engine::auth::{decide, AuthRequest, AuthVerdict, UserStore};
use ringmq_engine::broker::{ConnId, ShardId};
use ringmq_net::clock::Clock;

use crate::config::Config;
use crate::reload::{Hooks, Outcome, Reloadable};

/// Reads and parses a password file (at most `FILE_MAX_BYTES`).
pub fn load_store(path: &Path) -> Result<UserStore, String> {
    let file = path.display();
    let mut bytes = Vec::new();
    File::open(path)
        .and_then(|f| f.take(FILE_MAX_BYTES as u64 + 1).read_to_end(&mut bytes))
        .map_err(|e| format!("cannot read password file {file}: {e}"))?;
    UserStore::parse(&bytes).map_err(|e| format!("password file {file}: {e}"))
}

/// Starts password verification if `auth.password_file` is set: loads the
/// file, registers its SIGHUP reload hook, starts the helper threads.
pub fn start(
    config: &Config,
    hooks: &mut Hooks,
    clock: Clock,
) -> Result<Option<Arc<AuthService>>, String> {
    let a = &config.auth;
    if a.password_file.is_empty() {
        return Ok(None);
    }
    let path = std::path::PathBuf::from(&a.password_file);
    let store = load_store(&path)?;
    tracing::info!(
        file = %path.display(),
        users = store.len(),
        verify_threads = a.verify_threads,
        "password file loaded"
    );
    let shared = Reloadable::new(store);
    let target = shared.clone();
    hooks.register(
        format!("password file {}", path.display()),
        move || match load_store(&path) {
            Err(e) => Outcome::Refused(e),
            Ok(new) if *target.load() == new => Outcome::Unchanged,
            Ok(new) => {
                let users = new.len();
                target.store(new);
                Outcome::Changed(format!("{users} users"))
            }
        },
    );
    AuthService::start(shared, a.verify_threads, a.verify_queue_max_requests, clock).map(Some)
}

/// A verification for the helper threads.
struct Job {
    shard: ShardId,
    conn: ConnId,
    token: u64,
    peer: Option<SocketAddr>,
    client_id: Bytes,
    request: AuthRequest,
    reply: Sender<Done>,
    wake: Arc<AtomicWaker>,
}

/// A verdict on its way back to its shard.
pub struct Done {
    pub conn: ConnId,
    pub token: u64,
    pub verdict: AuthVerdict,
    /// Hold the answer back this long (repeat offender), in ms.
    pub delay_ms: u64,
    pub peer: Option<SocketAddr>,
    pub client_id: Bytes,
    pub username: Option<String>,
}

/// The helper threads and their queue, shared by all shards.
pub struct AuthService {
    jobs: SyncSender<Job>,
}

impl AuthService {
    /// Starts `threads` helper threads verifying against `store`; at most
    /// `queue_max` requests wait.
    pub fn start(
        store: Arc<Reloadable<UserStore>>,
        threads: usize,
        queue_max: usize,
        clock: Clock,
    ) -> Result<Arc<AuthService>, String> {
        let (jobs, rx) = mpsc::sync_channel::<Job>(queue_max);
        let rx = Arc::new(Mutex::new(rx));
        let throttle = Arc::new(Mutex::new(Throttle::new()));
        for i in 0..threads.max(1) {
            let (rx, store, throttle) = (rx.clone(), store.clone(), throttle.clone());
            thread::Builder::new()
                .name(format!("ringmq-auth-{i}"))
                .spawn(move || worker(&rx, &store, &throttle, clock))
                .map_err(|e| format!("cannot spawn password verification thread {i}: {e}"))?;
        }
        Ok(Arc::new(AuthService { jobs }))
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A helper that panicked while holding a lock leaves valid data (a
    // receiver, a table of counters): go on with it.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn worker(
    rx: &Mutex<Receiver<Job>>,
    store: &Reloadable<UserStore>,
    throttle: &Mutex<Throttle>,
    clock: Clock,
) {
    // Argon2 is slow on purpose and these threads share cores with the
    // shards: at the lowest priority a burst of password CONNECTs costs
    // established clients as little latency as the scheduler allows.
    if let Err(e) = ringmq_net::os::lower_thread_priority() {
        tracing::warn!("password verification thread keeps normal priority: {e}");
    }
    let mut urandom = File::open("/dev/urandom").ok();
    loop {
        // The lock is held while waiting: the other helpers wait on the
        // mutex instead of on the channel, which is the same thing.
        let job = lock(rx).recv();
        let Ok(job) = job else {
            return; // every shard is gone
        };
        let mut nonce = [0u8; NONCE_MIN_BYTES];
        let nonce_ok = match (&job.request, urandom.as_mut()) {
            (AuthRequest::ScramStart { .. }, Some(f)) => f.read_exact(&mut nonce).is_ok(),
            (AuthRequest::ScramStart { .. }, None) => false,
            _ => true,
        };
        let username = job.request.username();
        let verdict = if nonce_ok {
            decide(&store.load(), job.request, &nonce)
        } else {
            tracing::error!("cannot read /dev/urandom for a SCRAM nonce");
            AuthVerdict::Refuse(ringmq_engine::codec::ReasonCode::SERVER_UNAVAILABLE)
        };
        let delay_ms = match job.peer.map(|p| p.ip()) {
            Some(ip) => throttle_verdict(throttle, ip, &verdict, clock.now_ms()),
            None => 0,
        };
        let done = Done {
            conn: job.conn,
            token: job.token,
            verdict,
            delay_ms,
            peer: job.peer,
            client_id: job.client_id,
            username,
        };
        if job.reply.send(done).is_err() {
            tracing::debug!(shard = job.shard, "verdict for a shard that has stopped");
            continue;
        }
        job.wake.wake();
    }
}

/// Records the outcome and returns how long to hold the answer back.
fn throttle_verdict(
    throttle: &Mutex<Throttle>,
    ip: IpAddr,
    verdict: &AuthVerdict,
    now_ms: u64,
) -> u64 {
    let mut t = lock(throttle);
    if verdict.is_failure() {
        t.record_failure(ip, now_ms);
        t.delay_ms(ip, now_ms)
    } else if matches!(verdict, AuthVerdict::Accept { .. }) {
        // A repeat offender's success is held back like its failures (the
        // timing says nothing), then its failures are forgiven.
        let delay = t.delay_ms(ip, now_ms);
        t.record_success(ip);
        delay
    } else {
        0
    }
}

/// A shard's end: submits its requests, receives its verdicts.
pub struct ShardAuth {
    shard: ShardId,
    service: Arc<AuthService>,
    reply_tx: Sender<Done>,
    reply_rx: Receiver<Done>,
    wake: Arc<AtomicWaker>,
    /// Remote address of each connection, for the throttle and the logs.
    peers: RefCell<HashMap<ConnId, SocketAddr>>,
}

impl ShardAuth {
    pub fn new(shard: ShardId, service: Arc<AuthService>) -> ShardAuth {
        let (reply_tx, reply_rx) = mpsc::channel();
        ShardAuth {
            shard,
            service,
            reply_tx,
            reply_rx,
            wake: Arc::new(AtomicWaker::new()),
            peers: RefCell::new(HashMap::new()),
        }
    }

    /// Remembers a connection's remote address (until `forget`).
    pub fn remember(&self, conn: ConnId, peer: Option<SocketAddr>) {
        let mut peers = self.peers.borrow_mut();
        match peer {
            Some(p) => {
                peers.insert(conn, p);
            }
            None => {
                peers.remove(&conn);
            }
        }
    }

    /// Forgets a closed connection.
    pub fn forget(&self, conn: ConnId) {
        self.peers.borrow_mut().remove(&conn);
    }

    /// A connection's remote address, if known.
    pub fn peer(&self, conn: ConnId) -> Option<SocketAddr> {
        self.peers.borrow().get(&conn).copied()
    }

    /// Queues a verification; `false` if the queue is full (answer "busy").
    pub fn submit(&self, conn: ConnId, token: u64, client_id: Bytes, request: AuthRequest) -> bool {
        let job = Job {
            shard: self.shard,
            conn,
            token,
            peer: self.peer(conn),
            client_id,
            request,
            reply: self.reply_tx.clone(),
            wake: self.wake.clone(),
        };
        match self.service.jobs.try_send(job) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => false,
            Err(TrySendError::Disconnected(_)) => {
                tracing::error!(shard = self.shard, "password verification threads are gone");
                false
            }
        }
    }

    /// A verdict that has arrived, if any (the native loop's poll).
    pub fn try_next(&self) -> Option<Done> {
        self.reply_rx.try_recv().ok()
    }

    /// Wakes `waker` when the next verdict arrives (the native loop
    /// registers before it sleeps, then looks again with `try_next`).
    pub fn register(&self, waker: &std::task::Waker) {
        self.wake.register(waker);
    }

    /// The next verdict for this shard (register, then re-check: no lost
    /// wake-up).
    pub async fn next(&self) -> Done {
        poll_fn(|cx| {
            if let Ok(done) = self.reply_rx.try_recv() {
                return Poll::Ready(done);
            }
            self.wake.register(cx.waker());
            match self.reply_rx.try_recv() {
                Ok(done) => Poll::Ready(done),
                Err(_) => Poll::Pending,
            }
        })
        .await
    }
}
