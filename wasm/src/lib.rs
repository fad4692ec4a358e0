//! ringmq in the browser: the MQTT client ([`client::MqttClient`]) and the
//! in-tab broker ([`broker::InTabBroker`]), both the sans-IO engine driven
//! by this thin layer of browser events: transport `onmessage` / `onopen`
//! / `onclose` handlers and `setTimeout` for the engine's deadlines (no
//! polling), with time from `performance.now()`.
//!
//! Features: `client` (the client and its transports) and `broker` (the
//! in-tab broker); both by default. Built into `wasm/pkg/` by
//! `wasm/build.sh`; the API is in docs/wasm.md.
//!
//! Modules: `js` (host bindings: clock, timers, random bytes, option
//! objects), `props` (MQTT 5 publish properties <-> JS objects),
//! `client` (the client), `broker` (the in-tab broker), `types` (the
//! TypeScript definitions of the option and event objects), `framing`
//! (the message framing of ports and channels).
#![deny(clippy::unwrap_used, clippy::expect_used)]

#[cfg(feature = "broker")]
pub mod broker;
#[cfg(feature = "client")]
pub mod client;
pub mod framing;
pub mod js;
pub mod props;
mod types;
