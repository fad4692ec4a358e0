use super::*;
use ringmq_net::conn::DriverConfig;
use ringmq_net::listener::ListenerOptions;
use ringmq_net::tls::TlsVersion;

fn load(text: &str) -> Result<Config, ConfigError> {
    Config::load_str(Some((text, "test.toml")), &Overrides::default())
}

fn err(text: &str) -> String {
    match load(text) {
        Ok(c) => panic!("expected an error, got {c:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn embedded_defaults_are_complete_and_valid() {
    let c = Config::defaults().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.listeners.len(), 1);
    assert_eq!(c.listeners[0].bind.to_string(), "127.0.0.1:1883");
    assert_eq!(c.listeners[0].protocol, listener::Protocol::Mqtt);
    assert!(
        c.listeners[0].tls.is_none(),
        "the default listener is plain TCP"
    );
    assert_eq!(c.runtime.io, IoMode::Auto);
    assert_eq!(c.runtime.shards, 0);
    assert!(c.auth.allow_anonymous);
}

#[test]
fn embedded_defaults_match_the_engine_defaults() {
    // The TOML file documents the engine's defaults; keep them in step.
    // One deliberate difference: the engine records connections only when
    // asked (`log_connections`), the binary logs them by default.
    let c = Config::defaults().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        c.broker_config(),
        BrokerConfig {
            log_connections: true,
            ..BrokerConfig::default()
        }
    );
}

#[test]
fn file_overrides_only_what_it_sets() {
    let c = load("[limits]\nconnections_max = 7\n").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.limits.connections_max, 7);
    assert_eq!(c.broker_config().connections_max, 7);
    let d = Config::defaults().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        c.limits.packet_size_max_bytes,
        d.limits.packet_size_max_bytes
    );
    assert_eq!(c.runtime, d.runtime);
}

#[test]
fn command_line_overrides_win() {
    let o = Overrides {
        listen: vec!["127.0.0.1:0".into(), "[::1]:0".into()],
        shards: Some(3),
        io: Some(IoMode::Epoll),
        log_level: Some("debug".into()),
    };
    let c = Config::load_str(Some(("[runtime]\nshards = 5\nio = \"uring\"\n", "f")), &o)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.runtime.shards, 3);
    assert_eq!(c.runtime.io, IoMode::Epoll);
    assert_eq!(c.runtime.log_level, "debug");
    assert_eq!(c.listeners.len(), 2);
    assert!(c.listeners.iter().all(|l| l.tls.is_none() && l.nodelay));
}

#[test]
fn unknown_top_level_key_names_it_the_file_and_the_choices() {
    let e = err("[limts]\nconnections_max = 1\n");
    assert!(
        e.starts_with("unknown key `limts` in config test.toml (line 1), expected one of"),
        "{e}"
    );
    assert!(
        e.contains("`listener`") && e.contains("`limits`") && e.contains("`runtime`"),
        "{e}"
    );
}

#[test]
fn unknown_nested_key_names_the_full_path() {
    let e = err("\n[limits]\nconnections_mx = 1\n");
    assert!(
        e.starts_with("unknown key `limits.connections_mx` in config test.toml (line 3)"),
        "{e}"
    );
    assert!(e.contains("`connections_max`"), "{e}");
}

#[test]
fn wrong_type_names_the_key_and_the_expected_type() {
    let e = err("[runtime]\nshards = \"two\"\n");
    assert!(
        e.starts_with(
            "wrong type for key `runtime.shards` in config test.toml (line 2): found string"
        ),
        "{e}"
    );
    assert!(e.contains("expected u16"), "{e}");
    let e = err("[runtime]\nio = \"kqueue\"\n");
    assert!(
        e.contains("`runtime.io`") && e.contains("auto") && e.contains("epoll"),
        "{e}"
    );
    let e = err("[limits]\nreceive_maximum = 70000\n");
    assert!(
        e.contains("`limits.receive_maximum`") && e.contains("u16"),
        "{e}"
    );
}

#[test]
fn syntax_error_names_the_file() {
    let e = err("[runtime\nshards = 1\n");
    assert!(
        e.starts_with("config test.toml is not valid TOML (line 1)"),
        "{e}"
    );
}

#[test]
fn out_of_range_values_are_refused() {
    assert!(err("[runtime]\nshards = 65\n").contains("invalid value for `runtime.shards`: 65"));
    assert!(err("[runtime]\nring_capacity_slots = 1\n")
        .contains("`runtime.ring_capacity_slots`: 1 (expected 2..="));
    assert!(err("[limits]\nconnections_max = 0\n").contains("`limits.connections_max`"));
    assert!(err("[[listener]]\nbind = \"localhost\"\n")
        .contains("invalid value for `listener[0].bind`: \"localhost\""));
    assert!(
        err("[listener]\nlisten = [\"localhost\"]\n").contains("`listener[0].bind`: \"localhost\"")
    );
    assert!(err("listener = []\n").contains("invalid value for `listener`: []"));
    assert!(err("[listener]\nlisten = []\n").contains("invalid value for `listener`"));
    assert!(err("[runtime]\nlog_level = \"info,[[\"\n").contains("`runtime.log_level`"));
}

#[test]
fn ring_bounds_accept_both_ends() {
    let (lo, hi) = bounds::RING_CAPACITY_SLOTS;
    assert!(load(&format!("[runtime]\nring_capacity_slots = {lo}\n")).is_ok());
    assert!(load(&format!("[runtime]\nring_capacity_slots = {hi}\n")).is_ok());
    assert!(load(&format!("[runtime]\nring_capacity_slots = {}\n", hi + 1)).is_err());
}

#[test]
fn shard_count_auto_is_capped() {
    let c = Config::defaults().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.shard_count(4), 4);
    assert_eq!(c.shard_count(0), 1);
    assert_eq!(c.shard_count(1000), SHARDS_MAX);
}

#[test]
fn examples_parse() {
    for (name, text) in [
        (
            "public.toml",
            include_str!("../../../config/examples/public.toml"),
        ),
        (
            "small-device.toml",
            include_str!("../../../config/examples/small-device.toml"),
        ),
        (
            "epoll.toml",
            include_str!("../../../config/examples/epoll.toml"),
        ),
    ] {
        Config::load_str(Some((text, name)), &Overrides::default())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

#[test]
fn embedded_defaults_match_the_driver_and_listener_defaults() {
    // net's `Default`s are what loadgen and the tests' clients get; they
    // must be the broker's documented defaults, not a second opinion.
    let c = Config::defaults().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.driver_config(), DriverConfig::default());
    assert_eq!(c.listeners[0].options(), ListenerOptions::default());
}

/// `(section.key, default)` of every row of the key tables in
/// docs/configuration.md, the default as written there (without backticks).
fn documented_defaults() -> Vec<(String, String)> {
    let doc = include_str!("../../../docs/configuration.md");
    let mut section = String::new();
    let mut rows = Vec::new();
    for line in doc.lines() {
        if let Some(name) = line.strip_prefix("## `[") {
            // `[limits]`, or `[[listener]]` (an array of tables).
            section = name
                .trim_start_matches('[')
                .trim_end_matches("]`")
                .trim_end_matches(']')
                .to_string();
            continue;
        }
        // Any other heading (`### TLS keys`) ends the table of defaults.
        if line.starts_with("## ") || line.starts_with("### ") {
            section.clear();
            continue;
        }
        let cells: Vec<&str> = line.split(" | ").collect();
        if section.is_empty() || cells.len() < 4 || !cells[0].starts_with("| `") {
            continue;
        }
        let key = cells[0].trim_start_matches("| ").trim_matches('`');
        let default = cells[2].trim_matches('`');
        rows.push((format!("{section}.{key}"), default.to_string()));
    }
    rows
}

#[test]
fn documented_defaults_are_the_embedded_defaults() {
    let file: toml::Table = EMBEDDED_DEFAULTS
        .parse()
        .unwrap_or_else(|e| panic!("config/ringmq.toml: {e}"));
    let mut embedded = Vec::new();
    for (section, table) in &file {
        // `[[listener]]`: the built-in list has one table, whose keys are
        // also the defaults of keys other listener tables omit.
        let table = match table.as_array() {
            Some(list) if list.len() == 1 => &list[0],
            _ => table,
        };
        let Some(table) = table.as_table() else {
            panic!("config/ringmq.toml: `{section}` is not a section");
        };
        for (key, value) in table {
            embedded.push((format!("{section}.{key}"), value.to_string()));
        }
    }
    let mut documented = documented_defaults();
    embedded.sort();
    documented.sort();
    assert!(embedded.len() > 30, "{embedded:?}");
    assert_eq!(
        documented, embedded,
        "docs/configuration.md and config/ringmq.toml disagree"
    );
}

#[test]
fn listener_tables_take_omitted_keys_from_the_built_in_listener() {
    let c = load(
        "[[listener]]\nbind = \"127.0.0.1:0\"\n\n[[listener]]\nbind = \"[::1]:0\"\nnodelay = false\nbacklog_connections = 7\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        c.listeners.len(),
        2,
        "a file's list replaces the built-in one"
    );
    assert_eq!(c.listeners[0].backlog_connections, 1024);
    assert!(c.listeners[0].nodelay);
    assert_eq!(c.listeners[1].backlog_connections, 7);
    assert!(!c.listeners[1].nodelay);
}

#[test]
fn old_single_listener_table_still_works() {
    let c = load("[listener]\nlisten = [\"127.0.0.1:1\", \"127.0.0.1:2\"]\nnodelay = false\n")
        .unwrap_or_else(|e| panic!("{e}"));
    let binds: Vec<String> = c.listeners.iter().map(|l| l.bind.to_string()).collect();
    assert_eq!(binds, vec!["127.0.0.1:1", "127.0.0.1:2"]);
    assert!(c
        .listeners
        .iter()
        .all(|l| !l.nodelay && l.backlog_connections == 1024));
    // Without `listen`, the settings apply to the built-in address.
    let c = load("[listener]\nbacklog_connections = 5\n").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.listeners[0].bind.to_string(), "127.0.0.1:1883");
    assert_eq!(c.listeners[0].backlog_connections, 5);
}

#[test]
fn tls_table_is_parsed_with_defaults() {
    let c = load(
        "[[listener]]\nbind = \"127.0.0.1:8883\"\n[listener.tls]\ncert_file = \"s.pem\"\nkey_file = \"s.key\"\n\
         client_ca_file = \"ca.pem\"\nrequire_client_cert = true\nuse_identity_as_username = true\n\
         [[listener.tls.sni]]\nserver_names = [\"a.example\"]\ncert_file = \"a.pem\"\nkey_file = \"a.key\"\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let Some(tls) = &c.listeners[0].tls else {
        panic!("no tls")
    };
    assert_eq!(
        tls.settings.versions,
        vec![TlsVersion::Tls12, TlsVersion::Tls13]
    );
    assert!(tls.settings.require_client_cert && tls.use_identity_as_username);
    assert_eq!(tls.settings.sni[0].server_names, vec!["a.example"]);
    assert_eq!(c.listeners[0].describe(), "mqtts://127.0.0.1:8883");
    assert_eq!(tls.settings.alpn, vec![b"mqtt".to_vec()]);
}

#[test]
fn a_wss_listener_also_accepts_the_browsers_alpn() {
    let c = load(
        "[[listener]]\nbind = \"127.0.0.1:8884\"\nprotocol = \"ws\"\n\
         [listener.tls]\ncert_file = \"s.pem\"\nkey_file = \"s.key\"\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let Some(tls) = &c.listeners[0].tls else {
        panic!("no tls")
    };
    assert_eq!(
        tls.settings.alpn,
        vec![b"http/1.1".to_vec(), b"mqtt".to_vec()]
    );
}

#[test]
fn listener_errors_name_the_key_and_the_accepted_values() {
    let e = err("[[listener]]\nbind = \"127.0.0.1:1\"\nprotocol = \"gopher\"\n");
    assert!(
        e.contains("`listener[0].protocol`")
            && e.contains("unknown variant `gopher`")
            && e.contains("`mqtt`")
            && e.contains("`ws`")
            && e.contains("`http`"),
        "{e}"
    );
    let e = err("[[listener]]\nbind = \"127.0.0.1:1\"\npath = \"/mqtt\"\n");
    assert!(
        e.contains("listener[0].path") && e.contains("only with protocol = \"ws\""),
        "{e}"
    );
    let e = err("[[listener]]\nbind = \"127.0.0.1:1\"\nprotocol = \"ws\"\npath = \"mqtt\"\n");
    assert!(
        e.contains("listener[0].path") && e.contains("starting with /"),
        "{e}"
    );
    let e = err(
        "[[listener]]\nbind = \"127.0.0.1:1\"\nprotocol = \"ws\"\nws_handshake_max_bytes = 10\n",
    );
    assert!(
        e.contains("listener[0].ws_handshake_max_bytes") && e.contains("at least 256"),
        "{e}"
    );
    let e = err("[[listener]]\nbind = \"127.0.0.1:1\"\nlisten = [\"x\"]\n");
    assert!(
        e.contains("unknown key `listener[0].listen`") && e.contains("`bind`"),
        "{e}"
    );
    let e = err("[[listener]]\nnodelay = true\n");
    assert!(e.contains("`listener[0].bind`: (missing)"), "{e}");
    let tls = "[[listener]]\nbind = \"127.0.0.1:1\"\n[listener.tls]\ncert_file = \"c\"\nkey_file = \"k\"\n";
    let e = err(&format!("{tls}require_client_cert = true\n"));
    assert!(
        e.contains("`listener[0].tls.require_client_cert`") && e.contains("client_ca_file"),
        "{e}"
    );
    let e = err(&format!("{tls}use_identity_as_username = true\n"));
    assert!(
        e.contains("`listener[0].tls.use_identity_as_username`"),
        "{e}"
    );
    let e = err(&format!("{tls}versions = [\"1.1\"]\n"));
    assert!(
        e.contains("listener[0].tls.versions") && e.contains("`1.2`"),
        "{e}"
    );
    let e = err(&format!("{tls}certfile = \"x\"\n"));
    assert!(
        e.contains("unknown key `listener[0].tls.certfile`") && e.contains("`cert_file`"),
        "{e}"
    );
    let http = "[[listener]]\nbind = \"127.0.0.1:1\"\nprotocol = \"http\"\n";
    let c = load(http).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.listeners[0].protocol, listener::Protocol::Http);
    assert_eq!(c.listeners[0].describe(), "http://127.0.0.1:1");
    let e = err(&format!("{http}path = \"/x\"\n"));
    assert!(e.contains("listener[0].path"), "{e}");
    let e = err(&format!(
        "{http}[listener.tls]\ncert_file = \"c\"\nkey_file = \"k\"\n"
    ));
    assert!(
        e.contains("listener[0].tls") && e.contains("HTTPS is not supported"),
        "{e}"
    );
    let e = err("[[listener]]\nbind = \"127.0.0.1:1\"\n[[listener]]\nbind = \"127.0.0.1:1\"\n");
    assert!(
        e.contains("`listener[1].bind`") && e.contains("listener[0]"),
        "{e}"
    );
}

#[test]
fn shared_subscription_policy_and_group_overrides() {
    let c = load(
        "[shared_subscriptions]\npolicy = \"least_inflight\"\ngroups = { pinned = \"sticky\", dev = \"hash_clientid\" }\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let b = c.broker_config();
    assert_eq!(b.shared_policy, SharedPolicy::LeastInflight);
    assert_eq!(b.shared_policy_for(b"pinned"), SharedPolicy::Sticky);
    assert_eq!(b.shared_policy_for(b"dev"), SharedPolicy::HashClientId);
    assert_eq!(b.shared_policy_for(b"other"), SharedPolicy::LeastInflight);
    let d = Config::defaults().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(d.broker_config().shared_policy, SharedPolicy::RoundRobin);
    let e = err("[shared_subscriptions]\npolicy = \"roundrobin\"\n");
    assert!(e.contains("shared_subscriptions.policy"), "{e}");
    let e = err("[shared_subscriptions]\ngroups = { g = \"fair\" }\n");
    assert!(e.contains("shared_subscriptions.groups"), "{e}");
}

#[test]
fn effective_toml_reads_back_as_the_same_configuration() {
    let c = load(
        "[[listener]]\nbind = \"127.0.0.1:8883\"\n[listener.tls]\ncert_file = \"s.pem\"\nkey_file = \"s.key\"\n\
         client_ca_file = \"ca.pem\"\nversions = [\"1.3\"]\n\
         [[listener.tls.sni]]\nserver_names = [\"a.example\"]\ncert_file = \"a.pem\"\nkey_file = \"a.key\"\n\
         [[listener]]\nbind = \"[::1]:1883\"\nnodelay = false\n\
         [[listener]]\nbind = \"127.0.0.1:8080\"\nprotocol = \"ws\"\npath = \"/ws\"\n\
         allowed_origins = [\"https://a.example\"]\nws_frame_max_bytes = 4096\n\
         [limits]\nconnections_max = 7\n[runtime]\nio = \"epoll\"\n\
         [shared_subscriptions.groups]\ng = \"random\"\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let text = c.to_toml();
    assert!(text.contains("[[listener]]"), "{text}");
    assert!(text.contains("connections_max = 7"), "{text}");
    assert!(text.contains("io = \"epoll\""), "{text}");
    assert!(
        text.contains("protocol = \"ws\"") && text.contains("path = \"/ws\""),
        "{text}"
    );
    let back = load(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(back, c, "{text}");
    let defaults = Config::defaults().unwrap_or_else(|e| panic!("{e}"));
    let back = load(&defaults.to_toml()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(back, defaults);
}

#[test]
fn a_mosquitto_file_gets_a_hint_to_the_mapping_table() {
    let e =
        err("# mosquitto.conf\npersistence true\nlistener 1883 0.0.0.0\nallow_anonymous false\n");
    assert!(e.contains("not valid TOML"), "{e}");
    assert!(
        e.contains("looks like a Mosquitto configuration file (line 2: `persistence true`)"),
        "{e}"
    );
    assert!(
        e.contains("\"Mapping Mosquitto options\" in docs/security.md"),
        "{e}"
    );
    // A TOML typo gets no such hint.
    let e = err("[limits\nconnections_max = 7\n");
    assert!(!e.contains("Mosquitto"), "{e}");
}

#[test]
fn closed_broker_without_a_way_to_authenticate_is_refused() {
    let e = err("[auth]\nallow_anonymous = false\n");
    assert!(
        e.starts_with("auth.allow_anonymous = false, but no way to authenticate"),
        "{e}"
    );
    assert!(e.contains("ringmq passwd -c FILE USER"), "{e}");
    // Client certificates as identity are a way to authenticate.
    let mtls = "[[listener]]\nbind = \"127.0.0.1:8883\"\n[listener.tls]\ncert_file = \"s.pem\"\n\
                key_file = \"s.key\"\nclient_ca_file = \"ca.pem\"\nrequire_client_cert = true\n\
                use_identity_as_username = true\n[auth]\nallow_anonymous = false\n";
    assert!(load(mtls).is_ok());
    let c = load("[auth]\nallow_anonymous = false\npassword_file = \"/etc/ringmq/passwd\"\n")
        .unwrap_or_else(|e| panic!("{e}"));
    let b = c.broker_config();
    assert!(!b.allow_anonymous && b.user_store);
    // The defaults: anonymous allowed, no store, on loopback only.
    let d = Config::defaults().unwrap_or_else(|e| panic!("{e}"));
    assert!(d.auth.password_file.is_empty());
    assert!(!d.broker_config().user_store);
    assert!(d.listeners.iter().all(|l| l.bind.ip().is_loopback()));
}

#[test]
fn verify_bounds_accept_both_ends_and_refuse_beyond() {
    let (lo, hi) = bounds::VERIFY_THREADS;
    for n in [lo, hi] {
        assert!(load(&format!("[auth]\nverify_threads = {n}\n")).is_ok());
    }
    for n in [lo - 1, hi + 1] {
        let e = err(&format!("[auth]\nverify_threads = {n}\n"));
        assert!(e.contains("auth.verify_threads"), "{e}");
    }
    let (lo, hi) = bounds::VERIFY_QUEUE_MAX_REQUESTS;
    for n in [lo, hi] {
        assert!(load(&format!("[auth]\nverify_queue_max_requests = {n}\n")).is_ok());
    }
    for n in [lo - 1, hi + 1] {
        let e = err(&format!("[auth]\nverify_queue_max_requests = {n}\n"));
        assert!(e.contains("auth.verify_queue_max_requests"), "{e}");
    }
}

#[test]
fn storage_keys_are_checked_and_name_what_was_expected() {
    let c = Config::defaults().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.storage.storage, StorageMode::Memory);
    assert!(!c.broker_config().durable, "memory is not durable");
    let disk = load("[storage]\nstorage = \"disk\"\ndata_dir = \"/tmp/x\"\nfsync = \"interval\"\n")
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(disk.broker_config().durable);
    assert_eq!(disk.storage.fsync, Fsync::Interval);
    let (lo, hi) = bounds::FSYNC_INTERVAL_MS;
    assert!(load(&format!("[storage]\nfsync_interval_ms = {lo}\n")).is_ok());
    assert!(load(&format!("[storage]\nfsync_interval_ms = {hi}\n")).is_ok());
    assert!(err(&format!("[storage]\nfsync_interval_ms = {}\n", hi + 1))
        .contains("`storage.fsync_interval_ms`: 60001 (expected 1..=60000)"));
    assert!(err("[storage]\nfsync_interval_ms = 0\n").contains("`storage.fsync_interval_ms`"));
    let e = err("[storage]\nstorage = \"disk\"\ndata_dir = \"\"\n");
    assert!(
        e.contains("`storage.data_dir`") && e.contains("a directory"),
        "{e}"
    );
    let e = err("[storage]\nfsync = \"sometimes\"\n");
    assert!(e.contains("storage.fsync") && e.contains("always"), "{e}");
    let e = err("[storage]\nstorage = \"tape\"\n");
    assert!(e.contains("storage.storage") && e.contains("disk"), "{e}");
}

#[test]
fn tracing_values_are_checked() {
    let off = Config::defaults().unwrap_or_else(|e| panic!("{e}"));
    assert!(!off.tracing.enabled());
    for (text, key) in [
        (
            "[tracing]\nsampling_ratio = 1.5\n",
            "tracing.sampling_ratio",
        ),
        (
            "[tracing]\nsampling_ratio = -0.1\n",
            "tracing.sampling_ratio",
        ),
        (
            "[tracing]\nqueue_max_spans = 0\n",
            "tracing.queue_max_spans",
        ),
        (
            "[tracing]\nqueue_max_spans = 10\nbatch_max_spans = 11\n",
            "tracing.batch_max_spans",
        ),
        (
            "[tracing]\nexport_interval_ms = 1\n",
            "tracing.export_interval_ms",
        ),
        (
            "[tracing]\nexport_timeout_ms = 0\n",
            "tracing.export_timeout_ms",
        ),
        ("[tracing]\nservice_name = \" \"\n", "tracing.service_name"),
        (
            "[tracing]\nendpoint = \"127.0.0.1:4318\"\n",
            "tracing.endpoint",
        ),
        ("[tracing]\nendpoint = \"http://\"\n", "tracing.endpoint"),
    ] {
        let e = err(text);
        assert!(e.contains(key), "{text}: {e}");
    }
}

/// A build without the `otel` feature refuses an endpoint, naming the
/// feature, instead of silently not tracing.
#[cfg(not(feature = "otel"))]
#[test]
fn a_tracing_endpoint_needs_the_otel_feature() {
    let e = err("[tracing]\nendpoint = \"http://127.0.0.1:4318/v1/traces\"\n");
    assert!(e.contains("--features otel"), "{e}");
}

#[cfg(feature = "otel")]
#[test]
fn a_tracing_endpoint_is_accepted_with_the_otel_feature() {
    let c =
        load("[tracing]\nendpoint = \"http://127.0.0.1:4318/v1/traces\"\nsampling_ratio = 0.25\n")
            .unwrap_or_else(|e| panic!("{e}"));
    assert!(c.tracing.enabled());
    assert_eq!(c.tracing.sampling_ratio, 0.25);
}
