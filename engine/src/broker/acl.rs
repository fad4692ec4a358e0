//! Applying the ACL ([`crate::acl`]) in the broker: the per-session view
//! built at CONNECT, rebuilt for every session by [`Broker::set_acl`], and
//! the one check every path uses. With no ACL installed every check is a
//! single `None` test (everything allowed, the default).
//!
//! Where it is checked: PUBLISH ([`Action::Write`], `publish`), the will
//! topic at CONNECT and again when the will is published (`connect`),
//! each SUBSCRIBE filter ([`Action::Subscribe`], `subscribe`), and every
//! delivery to a session, retained messages included ([`Action::Read`],
//! `deliver`).

use std::sync::Arc;

use super::{Broker, SessionId};
use crate::acl::{Acl, Action, SessionAcl};

impl Broker {
    /// Installs (or, with `None`, removes) the ACL. Every session's view is
    /// rebuilt at once, so the new rules apply to the next message of
    /// every client; subscriptions made under the old rules stay, but what
    /// they deliver is checked against the new ones. Control plane:
    /// allocates per session.
    pub fn set_acl(&mut self, acl: Option<Arc<Acl>>) {
        for s in self.sessions.values_mut() {
            s.acl = acl
                .as_deref()
                .map(|a| Box::new(a.session(s.username.as_deref(), &s.client_id)));
        }
        self.acl = acl;
    }

    /// The ACL in force, if any.
    pub fn acl(&self) -> Option<&Arc<Acl>> {
        self.acl.as_ref()
    }

    /// The view of the installed ACL for a client (at CONNECT).
    pub(super) fn session_acl(
        &self,
        username: Option<&[u8]>,
        client_id: &[u8],
    ) -> Option<Box<SessionAcl>> {
        self.acl
            .as_deref()
            .map(|a| Box::new(a.session(username, client_id)))
    }

    /// May `session` do `action` on `topic`? True without an ACL.
    pub(super) fn acl_allows(&self, session: SessionId, action: Action, topic: &[u8]) -> bool {
        match self.sessions.get(session).and_then(|s| s.acl.as_ref()) {
            None => true,
            Some(acl) => acl.allows(action, topic),
        }
    }
}
