//! CONNECT / CONNACK, session creation, resume, takeover, detach, expiry
//! and the will message (MQTT 5.0 sections 3.1, 3.2, 4.1; 3.1.1 section 3.1).

use bytes::Bytes;

use super::auth::Credentials;
use super::authenticate::FirstStep;
use super::compact::compact_will;
use super::conn::{ConnState, Held};
use super::deliver::write_outbound;
use super::pending_auth::Admitted;
use super::persist::persisted;
use super::route::Source;
use super::session::{OutState, Session};
use super::timer::Timer;
use super::{owner_shard, Broker, CloseCause, ConnId, ConnectionRecord, Event, SessionId};
use crate::acl::Action;
use crate::codec::{ConnAck, ConnAckProperties, Connect, Packet, Protocol, PubAck, ReasonCode};
use crate::topic;

impl Broker {
    /// A client id for an empty one ([MQTT-3.1.3-6], v5 Assigned Client
    /// Identifier), chosen so that it hashes to this shard.
    fn assign_client_id(&mut self) -> Bytes {
        loop {
            self.assigned_ids += 1;
            let id = format!("ringmq-{}-{}", self.shard, self.assigned_ids);
            if owner_shard(id.as_bytes(), self.shard_count) == self.shard
                && !self.by_client_id.contains(&self.sessions, id.as_bytes())
            {
                return Bytes::from(id);
            }
        }
    }

    pub(super) fn handle_connect(&mut self, conn: ConnId, connect: Connect, now_ms: u64) {
        let protocol = connect.protocol;
        if let Some(c) = self.conns.get_mut(conn) {
            c.protocol = protocol;
            // Already for the CONNACK ([MQTT-3.1.2-24]); absent (and v3) = no limit.
            c.client_packet_size_max_bytes = connect
                .properties
                .maximum_packet_size_bytes
                .unwrap_or(u32::MAX);
        }
        if connect.client_id.len() > self.config.client_id_max_bytes {
            return self.connack_refuse(conn, ReasonCode::CLIENT_IDENTIFIER_NOT_VALID, now_ms);
        }
        let mut assigned = None;
        let client_id = if connect.client_id.is_empty() {
            // v3.1 requires an id; v3.1.1 allows an empty one only with a
            // clean session ([MQTT-3.1.3-7], [MQTT-3.1.3-8]); v5 always.
            if protocol == Protocol::V3_1 || (protocol == Protocol::V3_1_1 && !connect.clean_start)
            {
                return self.connack_refuse(conn, ReasonCode::CLIENT_IDENTIFIER_NOT_VALID, now_ms);
            }
            let id = self.assign_client_id();
            assigned = Some(id.clone());
            id
        } else {
            // Own copy: a slice would keep the whole read buffer it came
            // from alive for the life of the session.
            Bytes::copy_from_slice(&connect.client_id)
        };
        // A verified client certificate is the user name and stands for the
        // password (`use_identity_as_username`): nothing more to check.
        let certificate_identity = self.certificate_identities.remove(&conn);
        // The policy hook judges plain CONNECTs; enhanced authentication
        // names its user only inside the exchange (`first_auth_step`).
        if certificate_identity.is_none() && connect.properties.authentication_method.is_none() {
            let credentials = Credentials {
                client_id: &client_id,
                username: connect.username.as_deref(),
                password: connect.password.as_deref(),
            };
            if let Err(reason) = self.auth.authenticate(&credentials) {
                return self.refuse_login(conn, reason, now_ms);
            }
        }
        let reserved_will = connect
            .will
            .as_ref()
            .and_then(|w| topic::reserved_name(&w.topic));
        if let Some(reserved) = reserved_will {
            // A will on a topic reserved for the broker is refused up front,
            // like one the ACL denies: v5 with 0x87 ($SYS) or 0x90 ($share/),
            // v3.1.1 with return code 5 (not authorized), its only fit. A
            // will dropped silently would fail only when it is needed.
            self.stats.publishes_not_authorized += 1;
            let reason = if protocol.is_v5() {
                reserved.reason_code()
            } else {
                ReasonCode::NOT_AUTHORIZED
            };
            return self.connack_refuse(conn, reason, now_ms);
        }
        let admitted = Admitted {
            connect,
            client_id,
            assigned,
        };
        if certificate_identity.is_some() {
            return self.complete_connect(conn, admitted, certificate_identity, None, now_ms);
        }
        match self.first_auth_step(&admitted) {
            FirstStep::Accept => {
                let username = admitted.connect.username.clone();
                self.complete_connect(conn, admitted, username, None, now_ms)
            }
            FirstStep::Refuse(reason) => self.refuse_login(conn, reason, now_ms),
            FirstStep::Ask(request) => self.start_connect_auth(conn, admitted, request),
        }
    }

    /// Session creation or resumption and the CONNACK, once the client is
    /// authenticated as `username`: the certificate's identity if the
    /// listener uses it, the user name a user store confirmed, or the
    /// CONNECT's (not checked without a store). `auth_data`: v5
    /// Authentication Data for the CONNACK (enhanced authentication's last
    /// server message).
    pub(super) fn complete_connect(
        &mut self,
        conn: ConnId,
        admitted: Admitted,
        username: Option<Bytes>,
        auth_data: Option<Bytes>,
        now_ms: u64,
    ) {
        let Admitted {
            connect,
            client_id,
            assigned,
        } = admitted;
        let protocol = connect.protocol;
        let v5 = protocol.is_v5();
        let enhanced_auth = v5 && connect.properties.authentication_method.is_some();
        // Own copy (a slice would pin the read buffer).
        let username: Option<Box<[u8]>> = username.as_deref().map(Box::from);
        let acl = self.session_acl(username.as_deref(), &client_id);
        if let (Some(acl), Some(will)) = (&acl, &connect.will) {
            // A will the client could not publish itself is refused up
            // front: v5 CONNACK 0x87, v3.1.1 return code 5 (not authorized).
            if !acl.allows(Action::Write, &will.topic) {
                self.stats.publishes_not_authorized += 1;
                return self.connack_refuse(conn, ReasonCode::NOT_AUTHORIZED, now_ms);
            }
        }

        // Keep-alive: a v5 client asking for more than the bound (or for 0)
        // is told the bound as Server Keep Alive ([MQTT-3.2.2-21]).
        let mut keep_alive_s = connect.keep_alive_s;
        let mut server_keep_alive = None;
        let bound = self.config.keep_alive_max_s;
        if v5 && bound > 0 && (keep_alive_s == 0 || keep_alive_s > bound) {
            keep_alive_s = bound;
            server_keep_alive = Some(bound);
        }

        // Session expiry: v5 from the property (absent = 0); v3 clean = 0,
        // persistent = never (both capped by the configured maximum).
        let cap = self.config.session_expiry_max_s;
        let (expiry_interval_s, expiry_capped) = if v5 {
            let asked = connect.properties.session_expiry_interval_s.unwrap_or(0);
            (asked.min(cap), asked > cap)
        } else if connect.clean_start {
            (0, false)
        } else {
            (cap, false)
        };

        let mut properties = ConnAckProperties::default();
        if v5 {
            properties.receive_maximum = Some(self.config.receive_maximum);
            properties.maximum_packet_size_bytes = Some(self.config.packet_size_max_bytes);
            properties.topic_alias_maximum = Some(self.config.topic_alias_max);
            properties.assigned_client_identifier = assigned;
            properties.server_keep_alive_s = server_keep_alive;
            if expiry_capped {
                properties.session_expiry_interval_s = Some(expiry_interval_s);
            }
            if enhanced_auth {
                // [MQTT-4.12.0-5]: the CONNACK of enhanced authentication
                // names its method; it carries the server's last data.
                properties.authentication_method = connect.properties.authentication_method.clone();
                properties.authentication_data = auth_data;
            }
        }
        let ack = ConnAck {
            session_present: false, // set below; the size does not depend on it
            reason: ReasonCode::SUCCESS,
            properties,
        };
        // A client whose Maximum Packet Size cannot hold the CONNACK is
        // closed before anything happens to a session (no takeover).
        let Some(mut ack) = self.fit_connack(conn, ack) else {
            self.set_close_cause(
                conn,
                CloseCause::ConnectRefused(ReasonCode::PACKET_TOO_LARGE),
            );
            return self.close(conn, now_ms);
        };

        // Takeover: the old connection is closed ([MQTT-3.1.4-3]), v5 with 0x8E.
        // A session that is not kept (v3.1.1 CleanSession 1, v5 Session
        // Expiry 0) ends with that connection, so Clean Start 0 finds no
        // session and gets a new one with Session Present 0
        // ([MQTT-3.1.2-6], [MQTT-3.2.2-3]; 5.0 section 3.1.4).
        let recorded_before = self.persist.recorded;
        let existing = self.by_client_id.get(&self.sessions, &client_id);
        let kept = existing
            .and_then(|session| self.sessions.get(session))
            .is_some_and(|s| s.expiry_interval_s > 0);
        let old_session_ends = connect.clean_start || !kept;
        if let Some(session) = existing {
            if let Some(old) = self.sessions.get(session).and_then(|s| s.conn()) {
                self.take_over(old, session, old_session_ends, now_ms);
            }
        }
        let resumed = match existing {
            Some(session) if !old_session_ends && self.sessions.get(session).is_some() => {
                Some(session)
            }
            Some(session) => {
                self.end_session(session, now_ms);
                None
            }
            None => None,
        };
        let session_present = resumed.is_some();
        let generation = self.generation();
        let session = match resumed {
            Some(session) => {
                if let Some(s) = self.sessions.get_mut(session) {
                    // Reconnected before the will delay passed: no will ([MQTT-3.1.3-9]).
                    s.will = None;
                    s.generation = generation;
                }
                session
            }
            None => {
                // Its own copy of the id, not a second handle on
                // `client_id` (a `Bytes` clone would keep the CONNECT's
                // copy and its shared header for as long as the session
                // lives; docs/benchmarks.md, memory per idle connection).
                let session = self.sessions.insert(Session::new(
                    &client_id[..],
                    protocol,
                    expiry_interval_s,
                    generation,
                ));
                self.by_client_id.insert(&self.sessions, session);
                session
            }
        };
        if let Some(s) = self.sessions.get_mut(session) {
            s.set_conn(Some(conn));
            s.protocol = protocol;
            s.expiry_interval_s = expiry_interval_s;
            s.will = connect.will.map(|w| Box::new(compact_will(w)));
            s.username = username;
            s.acl = acl;
        }
        self.persist_session(session);

        {
            let Some(c) = self.conns.get_mut(conn) else {
                return;
            };
            c.state = ConnState::active(session);
            c.enhanced_auth = enhanced_auth;
            c.keep_alive_s = keep_alive_s;
            c.last_packet_ms = now_ms;
            if let Some(rare) = c.rare_mut_if_any() {
                rare.aliases = Box::default(); // made on first alias (v5 only reaches it)
            }
            c.client_receive_maximum = connect.properties.receive_maximum.unwrap_or(u16::MAX);
            c.aliases_out_max = if v5 {
                self.config
                    .topic_alias_outbound_max
                    .min(connect.properties.topic_alias_maximum.unwrap_or(0))
            } else {
                0
            };
        }
        // Keep-alive from now on (or none with 0) instead of the CONNECT timeout.
        self.schedule_deadline(conn);

        ack.session_present = session_present;
        // With `durable`, a CONNACK that created, resumed or ended a
        // stored session waits until that is written (`barrier.rs`);
        // nothing is sent to the client before it.
        let held = self.recorded_since(recorded_before);
        if held {
            let token = self.new_barrier_token();
            self.open_barrier(conn, token, 0, true);
            if let Some(c) = self.conns.get_mut(conn) {
                c.connack_held = true;
                let rare = c.rare_mut();
                rare.held.push_back(Held::Packet(Packet::ConnAck(ack)));
                rare.held.push_back(Held::Resume { session_present });
            }
        } else {
            self.write_packet(conn, &Packet::ConnAck(ack));
        }
        self.stats.connects_accepted += 1;
        if self.config.log_connections {
            // A copy for the record: a second handle on the session's
            // `Bytes` would give it a shared header for life.
            let username = self
                .sessions
                .get(session)
                .and_then(|s| s.username.as_deref().map(Bytes::copy_from_slice));
            self.record_connected(ConnectionRecord::Connected {
                conn,
                client_id: client_id.clone(),
                protocol,
                keep_alive_s,
                clean_start: connect.clean_start,
                session_present,
                username,
            });
        }
        if !held {
            self.resume(conn, session, session_present, now_ms);
        }
    }

    /// After the CONNACK: inflight messages again (when the session was
    /// resumed), then the queue.
    pub(super) fn resume(
        &mut self,
        conn: ConnId,
        session: SessionId,
        session_present: bool,
        now_ms: u64,
    ) {
        if let Some(c) = self.conns.get_mut(conn) {
            c.connack_held = false;
        }
        if session_present {
            self.resend_inflight(conn, session, now_ms);
        }
        self.drain_queue(session, now_ms);
    }

    /// Close the old connection of a session being taken over; `session_ends`
    /// when the new connection will not resume it (Clean Start 1, or the
    /// session is not kept beyond its connection). The caller ends it.
    fn take_over(&mut self, old: ConnId, session: SessionId, session_ends: bool, now_ms: u64) {
        let v5 = self.conns.get(old).is_some_and(|c| c.protocol.is_v5());
        if v5 {
            let d = crate::codec::Disconnect {
                reason: ReasonCode::SESSION_TAKEN_OVER,
                ..Default::default()
            };
            self.write_packet(old, &Packet::Disconnect(d));
        }
        self.set_closing(old);
        self.set_close_cause(old, CloseCause::TakenOver);
        self.events.push_back(Event::Close(old));
        // The old connection ended abnormally: its will is due now if the
        // session ends or the will has no delay; a delayed will is dropped
        // because the session is resumed within the delay ([MQTT-3.1.3-9]).
        let delay = self
            .sessions
            .get(session)
            .and_then(|s| s.will.as_ref())
            .map(|w| w.properties.will_delay_interval_s.unwrap_or(0));
        if let Some(delay) = delay {
            if session_ends || delay == 0 {
                self.publish_will(session, now_ms);
            }
        }
        if let Some(s) = self.sessions.get_mut(session) {
            s.set_conn(None);
            s.will = None;
        }
        if session_ends {
            // As when a connection drops: unacknowledged shared-subscription
            // messages go to another member before the session ends (4.8.2).
            self.redispatch_shared(session, now_ms);
        }
    }

    /// The connection of `session` is gone. Publishes or schedules the will
    /// (if `publish_will`), then ends the session or arms its expiry.
    pub(super) fn detach_session(&mut self, session: SessionId, publish_will: bool, now_ms: u64) {
        let generation = self.generation();
        let Some(s) = self.sessions.get_mut(session) else {
            return;
        };
        s.set_conn(None);
        s.generation = generation;
        s.set_offline_since_ms(now_ms);
        if !publish_will {
            s.will = None;
        }
        self.persist_session(session);
        // Unacknowledged shared-group messages go to another member first.
        self.redispatch_shared(session, now_ms);
        self.arm_offline(session, generation, 0, now_ms);
    }

    /// The timers of the offline session `session`, whose connection ended
    /// `offline_ms` ago: its will is published if due, else armed (it goes
    /// at the earlier of its delay and the session end, [MQTT-3.1.3-9]);
    /// then the session ends if its expiry passed, else that is armed.
    pub(super) fn arm_offline(
        &mut self,
        session: SessionId,
        generation: u64,
        offline_ms: u64,
        now_ms: u64,
    ) {
        let Some(s) = self.sessions.get(session) else {
            return;
        };
        let expiry_s = s.expiry_interval_s;
        let will_delay_s = s
            .will
            .as_ref()
            .map(|w| w.properties.will_delay_interval_s.unwrap_or(0));
        if let Some(delay_s) = will_delay_s {
            let wait_ms = u64::from(delay_s.min(expiry_s)) * 1000;
            let timer = Timer::Will {
                session,
                generation,
            };
            if self.due_or_arm(wait_ms, offline_ms, now_ms, timer) {
                self.publish_will(session, now_ms);
            }
        }
        if expiry_s == u32::MAX {
            return;
        }
        let timer = Timer::SessionExpiry {
            session,
            generation,
        };
        if self.due_or_arm(u64::from(expiry_s) * 1000, offline_ms, now_ms, timer) {
            self.end_session(session, now_ms);
        }
    }

    /// Whether `wait_ms` after a connection that ended `offline_ms` ago is
    /// now or past; if not, `timer` is armed for the time left.
    fn due_or_arm(&mut self, wait_ms: u64, offline_ms: u64, now_ms: u64, timer: Timer) -> bool {
        if wait_ms <= offline_ms {
            return true;
        }
        self.arm(now_ms + (wait_ms - offline_ms), timer);
        false
    }

    /// Remove a session and all its subscriptions (its will, if still
    /// pending, is published first: the session ended).
    pub(super) fn end_session(&mut self, session: SessionId, now_ms: u64) {
        if self
            .sessions
            .get(session)
            .is_some_and(|s| s.will.is_some() && s.conn().is_none())
        {
            self.publish_will(session, now_ms);
        }
        self.persist_session_end(session);
        let subs = match self.sessions.get_mut(session) {
            Some(s) => s.subscriptions.take(),
            None => return,
        };
        for sub in subs {
            self.remove_subscription(session, &sub.filter);
        }
        if let Some(s) = self.sessions.remove(session) {
            self.by_client_id.remove(&s.client_id, session);
        }
    }

    pub(super) fn publish_will(&mut self, session: SessionId, now_ms: u64) {
        let Some(will) = self.sessions.get_mut(session).and_then(|s| s.will.take()) else {
            return;
        };
        self.persist_session(session);
        let (client_id, username) = match self.sessions.get(session) {
            Some(s) => (
                Bytes::copy_from_slice(&s.client_id),
                s.username.as_deref().map(Bytes::copy_from_slice),
            ),
            None => return,
        };
        // Checked again: the ACL may have been reloaded since CONNECT.
        if !self
            .auth
            .may_publish(&client_id, username.as_deref(), &will.topic)
            || !self.acl_allows(session, Action::Write, &will.topic)
        {
            self.stats.publishes_not_authorized += 1;
            return;
        }
        let mut publish = crate::codec::Publish {
            dup: false,
            qos: will.qos,
            retain: will.retain,
            topic: will.topic,
            packet_id: 0,
            payload: will.payload,
            properties: crate::codec::PublishProperties {
                payload_format_indicator: will.properties.payload_format_indicator,
                message_expiry_interval_s: will.properties.message_expiry_interval_s,
                topic_alias: None,
                response_topic: will.properties.response_topic,
                correlation_data: will.properties.correlation_data,
                user: will.properties.user,
                subscription_identifiers: Vec::new(),
                content_type: will.properties.content_type,
            },
        };
        self.stats
            .count_received(publish.qos, publish.payload.len());
        if publish.retain {
            self.retain_local(&publish, now_ms, 0);
        }
        let source = Source::Local(Some(session));
        self.route(&mut publish, source, now_ms, now_ms, 0);
    }

    /// On resume: resend unacknowledged PUBLISH with DUP=1 and PUBREL for
    /// those awaiting PUBCOMP, in their original order ([MQTT-4.4.0-1]).
    fn resend_inflight(&mut self, conn: ConnId, session: SessionId, now_ms: u64) {
        let Some(s) = self.sessions.get_mut(session) else {
            return;
        };
        let Some(c) = self.conns.get_mut(conn) else {
            return;
        };
        let protocol = c.protocol;
        let stats = &mut self.stats;
        let durable = persisted(&self.persist, s);
        let persist = &mut self.persist;
        let client_id = &s.client_id;
        // An entry whose PUBLISH no longer encodes (over the protocol's
        // limits in the protocol of this connection) is dropped, which frees
        // its slot of the inflight window.
        // Only with something in flight: no `&mut` of QoS state it may not have.
        if !s.qos.inflight.is_empty() {
            s.qos.inflight.retain_mut(|o| {
                match o.state {
                    OutState::AwaitPubAck | OutState::AwaitPubRec => {
                        o.publish.dup = true;
                        let written = write_outbound(c, &mut o.publish, o.received_at_ms, now_ms);
                        if written.is_err() {
                            stats.dropped_too_large += 1;
                            if durable {
                                persist.delete_message(client_id, o.seq);
                            }
                        } else {
                            stats.packets_sent += 1;
                        }
                        written.is_ok()
                    }
                    OutState::AwaitPubComp => {
                        // A PUBREL without properties always encodes; were it
                        // not to, the entry stays for the next resume.
                        let rel = Packet::PubRel(PubAck::new(o.packet_id));
                        let written = crate::codec::encode(&rel, protocol, &mut c.out).is_ok();
                        debug_assert!(written, "a PUBREL always encodes");
                        stats.packets_sent += u64::from(written);
                        true
                    }
                }
            });
        }
        if !c.out.is_empty() {
            c.queue_transmit(conn, &mut self.events);
        }
    }
}
