//! What a lost connection means to the application: the text and reason
//! code of the `disconnect` event and of rejections, and whether retrying
//! can help (a refused user name, password or authorization cannot).

use ringmq_engine::client::DisconnectReason;

/// Whether a refusal will not heal by retrying (credentials, authorization).
pub fn refusal_is_final(reason: DisconnectReason) -> bool {
    matches!(
        reason,
        DisconnectReason::ConnectRefused(r) if matches!(r.0, 0x84 | 0x85 | 0x86 | 0x87 | 0x8C)
    )
}

/// The `disconnect` event's `reason` text and `reasonCode`.
pub fn describe(reason: DisconnectReason) -> (String, Option<u8>) {
    match reason {
        DisconnectReason::ConnectRefused(r) => (
            format!("connection refused (reason 0x{:02X})", r.0),
            Some(r.0),
        ),
        DisconnectReason::ConnectTimeout => ("no CONNACK in time".into(), None),
        DisconnectReason::Server(r) => (
            format!("disconnected by the server (reason 0x{:02X})", r.0),
            Some(r.0),
        ),
        DisconnectReason::Client(r) => ("disconnected by the client".into(), Some(r.0)),
        DisconnectReason::KeepAliveTimeout => ("no PINGRESP in time".into(), None),
        DisconnectReason::TransportClosed => ("connection closed".into(), None),
        DisconnectReason::ProtocolError(r) => {
            (format!("protocol error (reason 0x{:02X})", r.0), Some(r.0))
        }
    }
}
