//! Broker limits and behaviour switches (DESIGN.md section 5). Every limit
//! has a unit in its name and is enforced by the broker state machine; the
//! runtime fills this from the TOML config.

/// How a shared subscription group (`$share/{group}/...`) chooses the
/// member that gets each message (the names EMQX uses).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SharedPolicy {
    /// Strict rotation over all members broker-wide: the group's home shard
    /// chooses every message (members with a full window are passed over).
    #[default]
    RoundRobin,
    /// A member drawn uniformly at random, by the publishing shard.
    Random,
    /// The same member until it leaves or goes offline, chosen by the
    /// group's home shard.
    Sticky,
    /// The member a hash of the publisher's client id gives (one
    /// publisher's messages all go to one member while membership holds).
    HashClientId,
    /// The member a hash of the topic gives (one topic's messages all go
    /// to one member while membership holds).
    HashTopic,
    /// The member of the publishing shard with the fewest messages in
    /// flight and queued; members on other shards only when none here is
    /// online.
    LeastInflight,
}

impl SharedPolicy {
    /// Every policy, for documentation and validation.
    pub const ALL: [SharedPolicy; 6] = [
        SharedPolicy::RoundRobin,
        SharedPolicy::Random,
        SharedPolicy::Sticky,
        SharedPolicy::HashClientId,
        SharedPolicy::HashTopic,
        SharedPolicy::LeastInflight,
    ];

    /// The configuration name (`round_robin`, `random`, ...).
    pub fn name(self) -> &'static str {
        match self {
            SharedPolicy::RoundRobin => "round_robin",
            SharedPolicy::Random => "random",
            SharedPolicy::Sticky => "sticky",
            SharedPolicy::HashClientId => "hash_clientid",
            SharedPolicy::HashTopic => "hash_topic",
            SharedPolicy::LeastInflight => "least_inflight",
        }
    }

    /// The policy named `name`, if any.
    pub fn from_name(name: &str) -> Option<SharedPolicy> {
        SharedPolicy::ALL.into_iter().find(|p| p.name() == name)
    }
}

/// Limits and behaviour of one broker (identical on every shard).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrokerConfig {
    /// Connections per shard, beyond which new sockets are refused.
    pub connections_max: usize,
    /// Largest packet the broker accepts (fixed header included); sent as
    /// CONNACK Maximum Packet Size. Oversize => DISCONNECT 0x95.
    pub packet_size_max_bytes: u32,
    /// Accept clients that present no user name.
    pub allow_anonymous: bool,
    /// The runtime has a user store (password file): a CONNECT with a user
    /// name, or with SCRAM-SHA-256 enhanced authentication, is handed out as
    /// `Event::Authenticate` and waits for `handle_auth_result`. Without
    /// one, user names are not checked (and `allow_anonymous` must be true
    /// for anyone to get in: the runtime refuses to start otherwise).
    pub user_store: bool,
    /// Inbound QoS 2 messages a client may have unacknowledged (server
    /// Receive Maximum, CONNACK 0x21). Exceeded => DISCONNECT 0x93.
    pub receive_maximum: u16,
    /// Outbound QoS 1/2 messages in flight per session (further capped by
    /// the client's Receive Maximum).
    pub inflight_max: u16,
    /// Messages queued per session beyond the inflight window or while the
    /// client is offline. Full => the new message is dropped and counted.
    pub session_queue_max_messages: usize,
    /// Bytes buffered for a connection that the socket has not taken yet;
    /// past it QoS 0 messages wait in the connection's backlog (bounded
    /// below), QoS 1/2 in the session queue, and retained messages sent on
    /// SUBSCRIBE follow as the socket drains.
    pub outgoing_buffer_max_bytes: usize,
    /// QoS 0 messages waiting behind a full outgoing buffer, per
    /// connection; more => dropped and counted (`dropped_qos0_queue_messages`).
    pub outgoing_queue_max_messages: usize,
    /// Topic and payload bytes of those messages, per connection; more =>
    /// dropped and counted (`dropped_qos0_queue_bytes`).
    pub outgoing_queue_max_bytes: usize,
    /// Topic Alias Maximum offered to v5 clients (0 = aliases refused).
    pub topic_alias_max: u16,
    /// Outbound topic aliases per v5 connection (further capped by the
    /// client's Topic Alias Maximum, which is 0 when a client sends none: no
    /// aliases for it); past it the least recently used alias is replaced.
    /// 0 = off.
    pub topic_alias_outbound_max: u16,
    /// Topic levels allowed in a topic name or filter (a shared filter's
    /// levels are counted after `$share/{group}/`). The default, 256, is
    /// above what other brokers accept (Mosquitto 200, EMQX 128), so that
    /// no real deployment meets it; it bounds the trie walk's depth.
    pub topic_levels_max: usize,
    /// Subscriptions per session; more => SUBACK 0x97 Quota exceeded.
    pub subscriptions_per_session_max: usize,
    /// Retained messages per shard replica; more => new topics are not retained.
    pub retained_messages_max: usize,
    /// Payload bytes of retained messages per shard replica.
    pub retained_bytes_max: usize,
    /// Largest keep-alive the broker accepts; a client asking for more (or
    /// for 0) gets this as Server Keep Alive (v5). 0 = no bound.
    pub keep_alive_max_s: u16,
    /// Cap on the Session Expiry Interval of any session (v5 clients and v3
    /// clean-session=0 sessions, which never expire by themselves).
    pub session_expiry_max_s: u32,
    /// Longest client identifier accepted (bytes); longer => 0x85.
    pub client_id_max_bytes: usize,
    /// Entries a connection may have held behind pending cross-shard
    /// barriers (acknowledgements, retained sends for a new subscription, one
    /// mark per barrier; see `barrier.rs`), checked after each packet. A
    /// barrier lasts one ring round trip, so only a client that pipelines
    /// this many packets meanwhile meets it: it is disconnected (v5:
    /// DISCONNECT 0x97 Quota exceeded). The runtime cannot leave its input
    /// unread until the barrier clears, so closing is what bounds the
    /// memory: about 264 bytes an entry (2.6 MB at the default).
    pub barrier_held_max_entries: usize,
    /// A connection that sends no CONNECT within this time is closed.
    pub connect_timeout_ms: u64,
    /// Publish `$SYS/broker/...` statistics every this many seconds (0 = off).
    pub sys_interval_s: u32,
    /// How shared subscription groups choose a member, unless
    /// `shared_group_policies` names the group.
    pub shared_policy: SharedPolicy,
    /// Per-group overrides of `shared_policy`: (group name, policy).
    pub shared_group_policies: Vec<(String, SharedPolicy)>,
    /// Keep connection records (`Broker::poll_connection_record`): who
    /// connected and why each connection ended. Off: nothing recorded.
    pub log_connections: bool,
    /// Durable storage (`storage = "disk"`): the broker records what must
    /// survive a restart as `PersistOp`s (`Broker::take_persist_batch`) and
    /// holds the acknowledgements that promise it until the runtime
    /// reports the batch written (`crate::persist`, docs/storage.md). Off:
    /// nothing is recorded or held.
    pub durable: bool,
}

impl BrokerConfig {
    /// The in-tab broker's limits (the wasm package's `InTabBroker`, one
    /// shard inside a browser tab, docs/wasm.md): [`BrokerConfig::default`]
    /// with smaller memory bounds, because a tab has far less memory than a
    /// server and shares it with the page. At most 1024 connections,
    /// 16 MiB queued for one subscriber (`outgoing_queue_max_bytes`),
    /// 1000 messages queued for an offline session, and 10,000 retained
    /// messages of at most 64 MiB in all; everything else as the native
    /// default. Page options override single keys
    /// (`wasm/src/broker/options.rs`); the engine's scenario tests run with
    /// this base too (`RINGMQ_SIM_PROFILE=in-tab`, engine/tests/sim).
    pub fn in_tab() -> BrokerConfig {
        BrokerConfig {
            connections_max: 1024,
            session_queue_max_messages: 1000,
            outgoing_queue_max_bytes: 16 * 1024 * 1024,
            retained_messages_max: 10_000,
            retained_bytes_max: 64 * 1024 * 1024,
            ..BrokerConfig::default()
        }
    }

    /// The policy of the shared group named `group`.
    pub fn shared_policy_for(&self, group: &[u8]) -> SharedPolicy {
        self.shared_group_policies
            .iter()
            .find(|(name, _)| name.as_bytes() == group)
            .map_or(self.shared_policy, |(_, p)| *p)
    }
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            connections_max: 100_000,
            packet_size_max_bytes: 1024 * 1024,
            allow_anonymous: true,
            user_store: false,
            receive_maximum: 128,
            inflight_max: 128,
            session_queue_max_messages: 1000,
            outgoing_buffer_max_bytes: 1024 * 1024,
            // A burst of 500 64 KiB wills, or 10,000 1 KiB messages, to one
            // subscriber fits; a subscriber that stops reading costs at
            // most this much before it loses QoS 0 messages.
            outgoing_queue_max_messages: 100_000,
            outgoing_queue_max_bytes: 64 * 1024 * 1024,
            topic_alias_max: 32,
            topic_alias_outbound_max: 32,
            topic_levels_max: 256,
            subscriptions_per_session_max: 1000,
            retained_messages_max: 100_000,
            retained_bytes_max: 256 * 1024 * 1024,
            keep_alive_max_s: 0,
            session_expiry_max_s: 7 * 24 * 3600,
            client_id_max_bytes: 256,
            barrier_held_max_entries: 10_000,
            connect_timeout_ms: 10_000,
            sys_interval_s: 10,
            shared_policy: SharedPolicy::RoundRobin,
            shared_group_policies: Vec::new(),
            log_connections: false,
            durable: false,
        }
    }
}
