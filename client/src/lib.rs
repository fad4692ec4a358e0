//! ringmq-client: the MQTT client glue shared by loadgen, the tests and
//! the bridges. It drives an engine [`Client`](ringmq_engine::client::Client)
//! over a monoio `TcpStream` (plain, TLS, WebSocket or both: [`transport`]) with the `ringmq_net::conn`
//! driver (batched writes: one write per wake-up of whatever accumulated)
//! plus a keep-alive timer task.
//!
//! ```text
//!   MqttConnection::with_client(|c| c.publish(..))  ──transmit──▶ writer task ──▶ socket
//!   socket ──▶ reader task ──▶ Client::handle_read ──▶ events ──▶ MqttConnection::poll_event
//!   timer task: sleeps until Client::poll_timeout, calls handle_timeout (PINGREQ)
//! ```
//!
//! Everything is single-threaded (`!Send`): a connection lives on the monoio
//! runtime of the thread that opened it. One task consumes a connection's
//! events (it waits in [`MqttConnection::wait`]); reads pause while
//! `ClientConfig::events_pause_at` events are pending, so a slow consumer
//! slows its own socket, never memory. Draining events before the next read
//! also lets the read buffer be reused in place (decoded messages are `Bytes`
//! slices of it): keep no `Message` payload past the drain if you want the
//! receive path allocation-free.
//!
//! Modules: [`config`] (how to open a connection, what CONNACK said),
//! [`error`] (why connecting failed), [`transport`] (TCP, TLS, ws, wss), [`connection`] ([`MqttConnection`]: commands,
//! events, close), `handler` (the state the driver's tasks, the timer task
//! and the consumer share, and the timer task).
#![deny(clippy::unwrap_used, clippy::expect_used)]
#![forbid(unsafe_code)]

pub mod config;
pub mod connection;
pub mod error;
mod handler;
pub mod transport;

pub use config::{ClientConfig, Connected};
pub use connection::MqttConnection;
pub use error::ConnectError;
pub use ringmq_net::clock::Clock;
pub use transport::{TlsTransport, Transport};
