//! A connection's authentication in progress ([`PendingAuth`]) and the
//! CONNECT it is deciding ([`Admitted`]): the state `conn.rs` keeps per
//! connection and `authenticate.rs` drives, below both so neither imports
//! the other.

use bytes::Bytes;

use crate::auth::ScramState;
use crate::codec::Connect;

/// A CONNECT that passed every check but authentication.
pub(super) struct Admitted {
    pub(super) connect: Connect,
    /// The client id to use (the CONNECT's, owned, or an assigned one).
    pub(super) client_id: Bytes,
    /// `Some` when the broker assigned the client id (v5 CONNACK property).
    pub(super) assigned: Option<Bytes>,
}

/// A connection's authentication in progress.
pub(super) struct PendingAuth {
    /// Matches the verdict to this request.
    pub(super) token: u64,
    pub(super) phase: Phase,
    /// The CONNECT being decided; `None` for a re-authentication.
    pub(super) admitted: Option<Box<Admitted>>,
}

pub(super) enum Phase {
    /// The runtime is verifying (`Event::Authenticate` out).
    Verifying,
    /// SCRAM server-first sent; waiting for the client's AUTH.
    AwaitClient(Box<ScramState>),
}
