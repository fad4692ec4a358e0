//! ringmq-net: transports that turn sockets into byte streams for the engine.
#![deny(clippy::unwrap_used, clippy::expect_used)]

pub mod client;
