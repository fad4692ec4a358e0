//! ringmq-engine: the sans-IO core of ringmq.
//!
//! Nothing in this crate performs I/O, reads a clock, spawns a thread or
//! blocks. Every stateful piece takes inputs (bytes, "closed", the current
//! time as a `u64` of milliseconds, messages from other shards) and produces
//! outputs (bytes to write, closes, messages for other shards, the next
//! deadline). That is what lets the same code run on io_uring shards, the
//! portable fallback, the in-browser broker and under fuzzers.
//!
//! Modules:
//! - [`codec`]: MQTT 3.1 / 3.1.1 / 5.0 packets, zero-copy decode, exact-length encode.
//! - [`topic`]: topic name / filter validation, the subscription trie, shared subscriptions.
//! - [`acl`]: the ACL file, compiled into per-user tries, specialised per session.
//! - [`auth`]: password file (argon2id), SCRAM-SHA-256, failed-login throttle.
//! - [`broker`]: one shard's broker state machine (sessions, router replica, retained).
//! - [`persist`]: durable state: the records a shard stores and their encoding.
//! - [`client`]: the client-side state machine used by loadgen, tests and wasm.
// The property table macro (codec/property_macro.rs) walks 27 rows per
// property struct, one nested expansion per row and per packet kind it
// compares; the default limit of 128 is too low for that.
#![recursion_limit = "256"]
#![forbid(unsafe_code)]
#![deny(clippy::unwrap_used, clippy::expect_used)]

pub mod acl;
pub mod auth;
pub mod broker;
pub mod client;
pub mod codec;
pub mod persist;
pub mod topic;
