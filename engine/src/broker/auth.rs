//! The authentication / authorization hook. The runtime installs an
//! implementation (password file, ACL file); the engine only asks.

use crate::codec::ReasonCode;

/// What a client presented in CONNECT.
#[derive(Clone, Copy, Debug)]
pub struct Credentials<'a> {
    pub client_id: &'a [u8],
    pub username: Option<&'a [u8]>,
    pub password: Option<&'a [u8]>,
}

/// Decides who may connect, publish and subscribe.
pub trait Authenticator {
    /// `Ok(())` to accept the connection, or the CONNACK reason code to
    /// refuse it with (0x86 bad user name or password, 0x87 not authorized).
    fn authenticate(&mut self, credentials: &Credentials<'_>) -> Result<(), ReasonCode>;
    /// May this client publish to `topic`?
    fn may_publish(&self, _client_id: &[u8], _username: Option<&[u8]>, _topic: &[u8]) -> bool {
        true
    }
    /// May this client subscribe to `filter`?
    fn may_subscribe(&self, _client_id: &[u8], _username: Option<&[u8]>, _filter: &[u8]) -> bool {
        true
    }
}

/// The built-in policy: anonymous clients allowed or not, nothing else checked.
#[derive(Clone, Copy, Debug)]
pub struct AnonymousPolicy {
    pub allow_anonymous: bool,
}

impl Authenticator for AnonymousPolicy {
    fn authenticate(&mut self, credentials: &Credentials<'_>) -> Result<(), ReasonCode> {
        if credentials.username.is_none() && !self.allow_anonymous {
            return Err(ReasonCode::NOT_AUTHORIZED);
        }
        Ok(())
    }
}
