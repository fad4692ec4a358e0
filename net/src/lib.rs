//! ringmq-net: transports that turn sockets into byte streams for the engine.
//!
//! This crate is the thin I/O layer between the kernel and the sans-IO
//! engine. It knows nothing about MQTT; the shard runtime (crate `ringmq`)
//! plugs the engine in through [`conn::Handler`].
//!
//! Modules:
//! - [`listener`]: listening sockets made with socket2 (`SO_REUSEPORT`,
//!   `SO_REUSEADDR`, backlog), one per shard on the same address, and bind
//!   errors that name the address.
//! - [`conn`]: the per-connection driver over monoio: bounded reads into a
//!   `BytesMut` handed to a callback, a writer that flushes whatever
//!   accumulated in one write per wakeup, close/flush/shutdown, and the fd
//!   hand-off between shards.
//! - [`wake`]: single-threaded waker slots used by the driver.
//! - [`os`]: the few raw OS calls the runtime needs (CPU affinity, signal
//!   masks, `shutdown(2)`, the open-file limit, a `timerfd` sleep for
//!   pacing), each behind a safe function.
//! - [`clock`]: the one process clock (`now_ms` for the engine, `now_ns`
//!   for latency stamps), copied to every thread.
//! - [`tls`]: TLS (rustls, `ring` provider) as a byte transform between
//!   the socket and the engine, and the helper threads that run server
//!   handshakes off the shards (`tls::offload`).
//! - [`connect`]: outgoing TCP connections (from a chosen source address).
//! - [`alloc`]: gives freed heap memory back to the OS (mimalloc's
//!   `mi_collect`) after a burst of closed connections.
//! - [`opslab`]: makes monoio's io_uring driver drop the pages of its
//!   operation slab after such a burst (it keeps them otherwise).
//!
//! The MQTT client connection that loadgen, the tests and bridges use is
//! the `ringmq-client` crate, built on [`conn`] and [`connect`].
//!
//! # Replacing the backend
//!
//! The driver runs on monoio's rent-based I/O: on the io_uring driver each
//! read is one `IORING_OP_RECV` into the connection's own buffer, on the
//! legacy driver it is an epoll-readiness `recv`. The seam is deliberately
//! small so a native io_uring backend can replace [`conn`] without touching
//! the shard runtime: the runtime only sees [`conn::Handler`] (bytes in,
//! outgoing batch out, closed) and [`conn::DriverHandle`] (transmit, close,
//! resume reads). A native backend would use multishot receive with a
//! provided-buffer ring (idle connections then hold no read buffer; the
//! handler would get a borrowed kernel-selected buffer and copy only a
//! trailing partial frame), registered file descriptors, `writev` of the
//! engine's queued `Bytes`, and batched submission once per loop turn.
#![deny(clippy::unwrap_used, clippy::expect_used)]
#![deny(unsafe_op_in_unsafe_fn)]

pub mod alloc;
pub mod clock;
pub mod conn;
pub mod connect;
pub mod lasting;
pub mod listener;
pub mod opslab;
pub mod os;
#[cfg(target_os = "linux")]
pub mod rxsock;
pub mod throttle;
pub mod tls;
#[cfg(target_os = "linux")]
pub mod uring;
pub mod wake;
pub mod ws;
