//! Store candidates for durable storage (issue 13) under the broker's
//! workload: fjall (LSM tree), redb (copy-on-write B-tree), SQLite (WAL,
//! via rusqlite). Same operations against each, through one small trait:
//!
//! - append message: insert `Messages[len16 ‖ client id ‖ seq64] = ~200 B`;
//! - delete on ack: remove the oldest outstanding message (a window of
//!   `WINDOW` messages stays stored, as if subscribers lag a little);
//! - update session: every fourth op rewrites `Sessions[len16 ‖ client id]`.
//!
//! Ops are grouped into batches (group commit of 1, 16, 256 ops); each
//! batch is one transaction / write batch, followed by an fsync ("sync")
//! or not ("nosync"). Per run: ops/s and the p50/p99 latency of one batch
//! (write + sync). Then the recovery scan: a store filled with
//! `SCAN_MESSAGES` messages and `SCAN_SESSIONS` sessions is closed,
//! reopened and read in full.
//!
//! Run (docs/benchmarks.md, "Store choice for durable storage"):
//! `CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 \
//!  cargo run --release -p ringmq-bench --features store-candidates --example storage_stores -- DIR`
//! DIR must be on the disk under test (not tmpfs). Optional second
//! argument: seconds per run (default 3).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

/// Messages kept outstanding before the oldest is deleted ("acked").
const WINDOW: u64 = 2_000;
/// Bytes of a message value (a small MQTT publish plus its header).
const MESSAGE_BYTES: usize = 200;
/// Bytes of a session value.
const SESSION_BYTES: usize = 120;
/// Client ids the ops spread over.
const CLIENTS: u64 = 1_000;
/// Most ops of one run (a cap for the fast cases).
const RUN_MAX_OPS: u64 = 400_000;
/// Recovery scan: stored messages and sessions.
const SCAN_MESSAGES: u64 = 1_000_000;
const SCAN_SESSIONS: u64 = 100_000;

#[derive(Clone, Copy, PartialEq)]
enum Ks {
    Sessions,
    Messages,
}

enum Op {
    Put(Ks, Vec<u8>, Vec<u8>),
    Del(Ks, Vec<u8>),
}

trait Store {
    fn name(&self) -> &'static str;
    /// One transaction / write batch; `sync`: durable (fsync) before returning.
    fn write(&mut self, ops: &[Op], sync: bool);
    /// Reads every record; returns (records, bytes).
    fn scan(&mut self) -> (u64, u64);
}

fn client_key(client: u64) -> Vec<u8> {
    let id = format!("client-{client:06}");
    let mut k = Vec::with_capacity(2 + id.len() + 8);
    k.extend_from_slice(&(id.len() as u16).to_be_bytes());
    k.extend_from_slice(id.as_bytes());
    k
}

fn message_key(seq: u64) -> Vec<u8> {
    let mut k = client_key(seq % CLIENTS);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

/// The op stream: session update every fourth op, otherwise append a
/// message or delete the oldest outstanding one.
struct Workload {
    i: u64,
    next_seq: u64,
    oldest: u64,
    message: Vec<u8>,
    session: Vec<u8>,
}

impl Workload {
    fn new() -> Self {
        Workload {
            i: 0,
            next_seq: 0,
            oldest: 0,
            message: vec![0x5a; MESSAGE_BYTES],
            session: vec![0x3c; SESSION_BYTES],
        }
    }
    fn next(&mut self) -> Op {
        self.i += 1;
        if self.i % 4 == 0 {
            return Op::Put(
                Ks::Sessions,
                client_key(self.i % CLIENTS),
                self.session.clone(),
            );
        }
        if self.next_seq - self.oldest >= WINDOW && self.i % 2 == 1 {
            let k = message_key(self.oldest);
            self.oldest += 1;
            return Op::Del(Ks::Messages, k);
        }
        let k = message_key(self.next_seq);
        self.next_seq += 1;
        Op::Put(Ks::Messages, k, self.message.clone())
    }
}

// ---- fjall -------------------------------------------------------------

struct Fjall {
    ks: fjall::Keyspace,
    sessions: fjall::PartitionHandle,
    messages: fjall::PartitionHandle,
}

impl Fjall {
    fn open(dir: &Path) -> Self {
        let ks = fjall::Config::new(dir).open().expect("fjall open");
        let opts = fjall::PartitionCreateOptions::default;
        let sessions = ks.open_partition("sessions", opts()).expect("partition");
        let messages = ks.open_partition("messages", opts()).expect("partition");
        Fjall {
            ks,
            sessions,
            messages,
        }
    }
    fn part(&self, ks: Ks) -> &fjall::PartitionHandle {
        match ks {
            Ks::Sessions => &self.sessions,
            Ks::Messages => &self.messages,
        }
    }
}

impl Store for Fjall {
    fn name(&self) -> &'static str {
        "fjall 2"
    }
    fn write(&mut self, ops: &[Op], sync: bool) {
        let mut b = self.ks.batch();
        for op in ops {
            match op {
                Op::Put(ks, k, v) => b.insert(self.part(*ks), k.as_slice(), v.as_slice()),
                Op::Del(ks, k) => b.remove(self.part(*ks), k.as_slice()),
            }
        }
        b.commit().expect("fjall commit");
        if sync {
            self.ks
                .persist(fjall::PersistMode::SyncAll)
                .expect("fjall persist");
        }
    }
    fn scan(&mut self) -> (u64, u64) {
        let (mut n, mut bytes) = (0, 0);
        for p in [&self.sessions, &self.messages] {
            for kv in p.iter() {
                let (k, v) = kv.expect("fjall read");
                n += 1;
                bytes += (k.len() + v.len()) as u64;
            }
        }
        (n, bytes)
    }
}

// ---- redb --------------------------------------------------------------

const REDB_SESSIONS: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new("sessions");
const REDB_MESSAGES: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new("messages");

struct Redb {
    db: redb::Database,
}

impl Redb {
    fn open(dir: &Path) -> Self {
        std::fs::create_dir_all(dir).expect("mkdir");
        let db = redb::Database::create(dir.join("store.redb")).expect("redb open");
        let tx = db.begin_write().expect("tx");
        tx.open_table(REDB_SESSIONS).expect("table");
        tx.open_table(REDB_MESSAGES).expect("table");
        tx.commit().expect("commit");
        Redb { db }
    }
}

impl Store for Redb {
    fn name(&self) -> &'static str {
        "redb 2"
    }
    fn write(&mut self, ops: &[Op], sync: bool) {
        let mut tx = self.db.begin_write().expect("tx");
        tx.set_durability(if sync {
            redb::Durability::Immediate
        } else {
            redb::Durability::None
        });
        {
            let mut s = tx.open_table(REDB_SESSIONS).expect("table");
            let mut m = tx.open_table(REDB_MESSAGES).expect("table");
            for op in ops {
                match op {
                    Op::Put(Ks::Sessions, k, v) => drop(s.insert(k.as_slice(), v.as_slice())),
                    Op::Put(Ks::Messages, k, v) => drop(m.insert(k.as_slice(), v.as_slice())),
                    Op::Del(Ks::Sessions, k) => drop(s.remove(k.as_slice())),
                    Op::Del(Ks::Messages, k) => drop(m.remove(k.as_slice())),
                }
            }
        }
        tx.commit().expect("redb commit");
    }
    fn scan(&mut self) -> (u64, u64) {
        use redb::ReadableTable;
        let (mut n, mut bytes) = (0, 0);
        let tx = self.db.begin_read().expect("read tx");
        for def in [REDB_SESSIONS, REDB_MESSAGES] {
            let t = tx.open_table(def).expect("table");
            for kv in t.iter().expect("iter") {
                let (k, v) = kv.expect("redb read");
                n += 1;
                bytes += (k.value().len() + v.value().len()) as u64;
            }
        }
        (n, bytes)
    }
}

// ---- SQLite (WAL) ------------------------------------------------------

struct Sqlite {
    conn: rusqlite::Connection,
    synchronous_full: Option<bool>,
}

impl Sqlite {
    fn open(dir: &Path) -> Self {
        std::fs::create_dir_all(dir).expect("mkdir");
        let conn = rusqlite::Connection::open(dir.join("store.sqlite")).expect("sqlite open");
        conn.pragma_update(None, "journal_mode", "WAL")
            .expect("wal");
        for t in ["sessions", "messages"] {
            conn.execute(
                &format!("CREATE TABLE IF NOT EXISTS {t} (k BLOB PRIMARY KEY, v BLOB NOT NULL) WITHOUT ROWID"),
                [],
            )
            .expect("create");
        }
        Sqlite {
            conn,
            synchronous_full: None,
        }
    }
}

impl Store for Sqlite {
    fn name(&self) -> &'static str {
        "SQLite 3 (rusqlite 0.32, WAL)"
    }
    fn write(&mut self, ops: &[Op], sync: bool) {
        if self.synchronous_full != Some(sync) {
            let mode = if sync { "FULL" } else { "OFF" };
            self.conn
                .pragma_update(None, "synchronous", mode)
                .expect("pragma");
            self.synchronous_full = Some(sync);
        }
        let tx = self.conn.transaction().expect("tx");
        for op in ops {
            let (sql, k, v) = match op {
                Op::Put(Ks::Sessions, k, v) => (
                    "INSERT OR REPLACE INTO sessions VALUES (?1, ?2)",
                    k,
                    Some(v),
                ),
                Op::Put(Ks::Messages, k, v) => (
                    "INSERT OR REPLACE INTO messages VALUES (?1, ?2)",
                    k,
                    Some(v),
                ),
                Op::Del(Ks::Sessions, k) => ("DELETE FROM sessions WHERE k = ?1", k, None),
                Op::Del(Ks::Messages, k) => ("DELETE FROM messages WHERE k = ?1", k, None),
            };
            let mut st = tx.prepare_cached(sql).expect("prepare");
            match v {
                Some(v) => st.execute(rusqlite::params![k, v]),
                None => st.execute(rusqlite::params![k]),
            }
            .expect("sqlite exec");
        }
        tx.commit().expect("sqlite commit");
    }
    fn scan(&mut self) -> (u64, u64) {
        let (mut n, mut bytes) = (0u64, 0u64);
        for t in ["sessions", "messages"] {
            let mut st = self
                .conn
                .prepare(&format!("SELECT k, v FROM {t}"))
                .expect("select");
            let mut rows = st.query([]).expect("query");
            while let Some(row) = rows.next().expect("row") {
                let k = row.get_ref(0).expect("k").as_blob().expect("blob").len();
                let v = row.get_ref(1).expect("v").as_blob().expect("blob").len();
                n += 1;
                bytes += (k + v) as u64;
            }
        }
        (n, bytes)
    }
}

// ---- driver ------------------------------------------------------------

type Opener = fn(&Path) -> Box<dyn Store>;

fn openers() -> Vec<(&'static str, Opener)> {
    vec![
        ("fjall", |d| Box::new(Fjall::open(d))),
        ("redb", |d| Box::new(Redb::open(d))),
        ("sqlite", |d| Box::new(Sqlite::open(d))),
    ]
}

fn fresh(base: &Path, name: &str) -> PathBuf {
    let dir = base.join(name);
    if dir.exists() {
        std::fs::remove_dir_all(&dir).expect("clean");
    }
    dir
}

fn run(store: &mut dyn Store, batch: usize, sync: bool, seconds: u64) {
    let mut w = Workload::new();
    let mut hist = Histogram::<u64>::new(3).expect("histogram");
    let mut ops = Vec::with_capacity(batch);
    let start = Instant::now();
    let limit = Duration::from_secs(seconds);
    let mut done = 0u64;
    while start.elapsed() < limit && done < RUN_MAX_OPS {
        ops.clear();
        ops.extend((0..batch).map(|_| w.next()));
        let t = Instant::now();
        store.write(&ops, sync);
        hist.record(t.elapsed().as_micros() as u64).expect("record");
        done += batch as u64;
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{:<32} batch {:>3} {:<6} {:>9.0} ops/s  batch p50 {:>7} us  p99 {:>7} us  ({} ops)",
        store.name(),
        batch,
        if sync { "sync" } else { "nosync" },
        done as f64 / secs,
        hist.value_at_quantile(0.5),
        hist.value_at_quantile(0.99),
        done
    );
}

fn fill(store: &mut dyn Store) {
    let message = vec![0x5a; MESSAGE_BYTES];
    let session = vec![0x3c; SESSION_BYTES];
    let mut ops = Vec::with_capacity(10_000);
    let mut seq = 0;
    while seq < SCAN_MESSAGES {
        ops.clear();
        for _ in 0..10_000 {
            ops.push(Op::Put(Ks::Messages, message_key(seq), message.clone()));
            seq += 1;
        }
        store.write(&ops, false);
    }
    let mut c = 0;
    while c < SCAN_SESSIONS {
        ops.clear();
        for _ in 0..10_000 {
            let id = format!("session-{c:08}");
            let mut k = (id.len() as u16).to_be_bytes().to_vec();
            k.extend_from_slice(id.as_bytes());
            ops.push(Op::Put(Ks::Sessions, k, session.clone()));
            c += 1;
        }
        store.write(&ops, false);
    }
    store.write(&[], true);
}

fn main() {
    let mut args = std::env::args().skip(1);
    let base = PathBuf::from(
        args.next()
            .expect("usage: storage_stores DIR [SECONDS] [STORE]"),
    );
    let seconds: u64 = args.next().map_or(3, |s| s.parse().expect("seconds"));
    let only = args.next();
    for (name, open) in openers() {
        if only.as_deref().is_some_and(|o| o != name) {
            continue;
        }
        for sync in [true, false] {
            for batch in [1, 16, 256] {
                let dir = fresh(&base, name);
                let mut store = open(&dir);
                run(store.as_mut(), batch, sync, seconds);
            }
        }
        let dir = fresh(&base, name);
        let t = Instant::now();
        {
            let mut store = open(&dir);
            fill(store.as_mut());
        }
        let filled = t.elapsed();
        let t = Instant::now();
        let mut store = open(&dir);
        let opened = t.elapsed();
        let (n, bytes) = store.scan();
        let scanned = t.elapsed();
        let disk = dir_bytes(&dir);
        println!(
            "{:<32} recovery: {n} records ({} MB of keys+values, {} MB on disk) fill {:.1} s, open {} ms, open+scan {} ms",
            store.name(),
            bytes / 1_000_000,
            disk / 1_000_000,
            filled.as_secs_f64(),
            opened.as_millis(),
            scanned.as_millis()
        );
        drop(store);
        std::fs::remove_dir_all(&dir).expect("clean");
    }
}

fn dir_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            total += if p.is_dir() {
                dir_bytes(&p)
            } else {
                e.metadata().map_or(0, |m| m.len())
            };
        }
    }
    total
}
