//! The [`Plan`] from the command line: one function per subcommand
//! (`pub_plan`, `sub_plan`, `pubsub_plan`, `conn_plan`) on top of the
//! fields every scenario shares (`base_plan`: address, transport, threads
//! and pinning, timing), each flag checked with a clear error.

use bytes::Bytes;
use ringmq_client::{TlsTransport, Transport};
use ringmq_engine::codec::QoS;
use ringmq_net::tls::client::{self as tls_client, ClientTlsSettings};
use ringmq_net::ws::client::WsClientSettings;

use crate::cli::{
    self, ConnArgs, ConnectArgs, MessageArgs, PubArgs, PubSubArgs, ReqRespArgs, RetainedArgs,
    SubArgs, TimingArgs, Topology, TransportKind,
};
use crate::payload;
use crate::plan::{Plan, Scenario};
use crate::run;

/// Most retained topics one `retained` run stores (each subscriber keeps
/// one bit per topic).
const RETAINED_TOPICS_MAX: u64 = 10_000_000;

fn seconds_to_ns(name: &str, s: f64) -> Result<u64, String> {
    if !(0.0..=1e6).contains(&s) {
        return Err(format!(
            "{name} must be between 0 and 1000000 seconds, got {s}"
        ));
    }
    Ok((s * 1e9) as u64)
}

/// The transport from --transport, the TLS options (refused without
/// `--transport tls` or `wss`, so a forgotten flag cannot silently measure
/// TCP) and the WebSocket ones.
fn transport(c: &ConnectArgs) -> Result<Transport, String> {
    let tls_flag = [
        (c.cafile.is_some(), "--cafile"),
        (c.cert.is_some(), "--cert"),
        (c.key.is_some(), "--key"),
        (c.insecure, "--insecure"),
        (c.server_name.is_some(), "--server-name"),
    ]
    .into_iter()
    .find_map(|(set, name)| set.then_some(name));
    if let (false, Some(flag)) = (c.transport.is_tls(), tls_flag) {
        return Err(format!("{flag} needs --transport tls or wss"));
    }
    if !c.ws_path.starts_with('/') || c.ws_path.contains(char::is_whitespace) {
        return Err(format!(
            "--ws-path must start with / and hold no spaces, got {:?}",
            c.ws_path
        ));
    }
    if c.ws_frame_max == 0 {
        return Err("--ws-frame-max must be at least 1 byte".into());
    }
    let ws = || WsClientSettings {
        host: format!("{}:{}", c.host, run::port_of(c)),
        path: c.ws_path.clone(),
        frame_max_bytes: c.ws_frame_max,
        ..WsClientSettings::default()
    };
    match c.transport {
        TransportKind::Tcp => Ok(Transport::Tcp),
        TransportKind::Ws => Ok(Transport::Ws(ws())),
        TransportKind::Tls => tls_transport(c).map(Transport::Tls),
        TransportKind::Wss => Ok(Transport::Wss(tls_transport(c)?, ws())),
    }
}

/// The TLS client settings from the TLS options. ALPN `mqtt` on tls; none
/// on wss (a WebSocket server may expect `http/1.1` or nothing, and every
/// server accepts a client that offers none).
fn tls_transport(c: &ConnectArgs) -> Result<TlsTransport, String> {
    let alpn = match c.transport {
        TransportKind::Tls => vec![b"mqtt".to_vec()],
        _ => Vec::new(),
    };
    let settings = ClientTlsSettings {
        cafile: c.cafile.clone(),
        cert_file: c.cert.clone(),
        key_file: c.key.clone(),
        insecure: c.insecure,
        alpn,
    };
    let config = tls_client::client_config(&settings).map_err(|e| e.to_string())?;
    let name = c.server_name.as_deref().unwrap_or(&c.host);
    let server_name = tls_client::server_name(name).map_err(|e| e.to_string())?;
    Ok(TlsTransport {
        config,
        server_name,
    })
}

/// A CPU list as taskset writes it ("0,2-3"), every CPU one this process
/// may run on.
fn cpu_list(list: &str) -> Result<Vec<usize>, String> {
    let bad = || format!("--pin {list:?}: expected CPU numbers and ranges like 0,2-3");
    let mut cpus = Vec::new();
    for part in list.split(',').map(str::trim) {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        let (a, b): (usize, usize) = (a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?);
        if a > b || b - a > 4096 {
            return Err(bad());
        }
        cpus.extend(a..=b);
    }
    let allowed = ringmq_net::os::allowed_cpus();
    if let Some(cpu) = cpus.iter().find(|c| !allowed.contains(c)) {
        return Err(format!(
            "--pin: CPU {cpu} is not one this process may run on ({allowed:?})"
        ));
    }
    Ok(cpus)
}

/// The fields every scenario shares, with their checks.
fn base_plan(scenario: Scenario, c: &ConnectArgs, t: Option<&TimingArgs>) -> Result<Plan, String> {
    let pin = match &c.pin {
        Some(list) => cpu_list(list)?,
        None => Vec::new(),
    };
    let threads = match c.threads {
        Some(0) => return Err("--threads must be at least 1".into()),
        Some(n) => n,
        None if !pin.is_empty() => pin.len(),
        None => ringmq_net::os::allowed_cpus().len().max(1),
    };
    let (warmup_ns, duration_ns, drain_ns) = match t {
        Some(t) => (
            seconds_to_ns("--warmup", t.warmup_s)?,
            seconds_to_ns("--duration", t.duration_s)?,
            seconds_to_ns("--drain", t.drain_s)?,
        ),
        None => (0, 0, 0),
    };
    if t.is_some() && duration_ns == 0 {
        return Err("--duration must be more than 0 seconds".into());
    }
    Ok(Plan {
        scenario,
        addr: run::resolve(c)?,
        transport: transport(c)?,
        protocol: run::protocol_of(c.protocol_version),
        client_prefix: c
            .client_prefix
            .clone()
            .unwrap_or_else(|| format!("loadgen-{}", std::process::id())),
        username: c.username.clone().map(Bytes::from),
        password: c.password.clone().map(Bytes::from),
        keep_alive_s: c.keep_alive_s,
        threads,
        pin,
        rx_thread: false,
        warmup_ns,
        duration_ns,
        drain_ns,
        qos: QoS::AtMostOnce,
        size_bytes: payload::HEADER_BYTES,
        rate_per_pub: 0.0,
        count: u64::MAX,
        inflight: 1,
        retain: false,
        burst: 1,
        write_each: false,
        topic_alias_max: 0,
        pubs: 0,
        subs: 0,
        topology: None,
        pub_topics: Vec::new(),
        sub_filters: Vec::new(),
        responders: 0,
        resp_topics: Vec::new(),
        request_filter: Bytes::new(),
        retained_topics: 0,
        retained_prefix: String::new(),
        retained_keep: false,
        conn_count: 0,
        conn_rate_per_s: 0.0,
        conn_concurrency: 1,
        conn_churn: false,
        conns_per_source: u64::MAX,
    })
}

/// Largest --burst: messages a paced publisher sends back to back.
const BURST_MAX_MESSAGES: u32 = 65_536;

fn apply_message(plan: &mut Plan, m: &MessageArgs) -> Result<(), String> {
    plan.qos = QoS::from_u8(m.qos).ok_or("--qos must be 0, 1 or 2")?;
    if m.size_bytes < payload::HEADER_BYTES || m.size_bytes > cli::PAYLOAD_MAX_BYTES {
        return Err(format!(
            "--size must be between {} (loadgen's header) and {} bytes, got {}",
            payload::HEADER_BYTES,
            cli::PAYLOAD_MAX_BYTES,
            m.size_bytes
        ));
    }
    if !m.rate_per_pub.is_finite() || m.rate_per_pub < 0.0 {
        return Err(format!(
            "--rate must be 0 (unlimited) or more, got {}",
            m.rate_per_pub
        ));
    }
    if m.inflight == 0 {
        return Err("--inflight must be at least 1".into());
    }
    if m.burst == 0 || m.burst > BURST_MAX_MESSAGES {
        return Err(format!(
            "--burst must be between 1 and {BURST_MAX_MESSAGES} messages, got {}",
            m.burst
        ));
    }
    plan.size_bytes = m.size_bytes;
    plan.rate_per_pub = m.rate_per_pub;
    plan.count = if m.count == 0 { u64::MAX } else { m.count };
    plan.inflight = m.inflight;
    plan.retain = m.retain;
    plan.burst = m.burst;
    plan.write_each = m.write_each;
    Ok(())
}

/// Topic of each publisher, with %i replaced.
fn pub_topics(pattern: &str, pubs: u32) -> Result<Vec<Bytes>, String> {
    if pattern.contains(['+', '#']) {
        return Err(format!(
            "--topic {pattern:?}: wildcards are not allowed in topic names"
        ));
    }
    if pattern.is_empty() {
        return Err("--topic must not be empty".into());
    }
    Ok((0..pubs)
        .map(|i| Bytes::from(pattern.replace("%i", &i.to_string())))
        .collect())
}

pub fn pub_plan(a: &PubArgs) -> Result<Plan, String> {
    let mut plan = base_plan(Scenario::Pub, &a.connect, Some(&a.timing))?;
    apply_message(&mut plan, &a.message)?;
    if a.pubs == 0 {
        return Err("--pubs must be at least 1".into());
    }
    plan.pubs = a.pubs;
    plan.pub_topics = pub_topics(&a.topic, a.pubs)?;
    Ok(plan)
}

/// --topic-alias-max: MQTT 5 only.
fn apply_topic_alias_max(plan: &mut Plan, max: u16) -> Result<(), String> {
    if max > 0 && !plan.protocol.is_v5() {
        return Err("--topic-alias-max needs --protocol-version 5".into());
    }
    plan.topic_alias_max = max;
    Ok(())
}

pub fn sub_plan(a: &SubArgs) -> Result<Plan, String> {
    let mut plan = base_plan(Scenario::Sub, &a.connect, Some(&a.timing))?;
    apply_topic_alias_max(&mut plan, a.alias.topic_alias_max)?;
    plan.qos = QoS::from_u8(a.qos).ok_or("--qos must be 0, 1 or 2")?;
    if a.subs == 0 {
        return Err("--subs must be at least 1".into());
    }
    if a.topic.is_empty() {
        return Err("--topic must not be empty".into());
    }
    plan.subs = a.subs;
    plan.sub_filters = (0..a.subs)
        .map(|i| Bytes::from(a.topic.replace("%i", &i.to_string())))
        .collect();
    Ok(plan)
}

pub fn pubsub_plan(a: &PubSubArgs) -> Result<Plan, String> {
    let mut plan = base_plan(Scenario::PubSub, &a.connect, Some(&a.timing))?;
    apply_message(&mut plan, &a.message)?;
    apply_topic_alias_max(&mut plan, a.alias.topic_alias_max)?;
    let (pubs, subs) = match a.topology {
        Topology::Fanout => (a.pubs.unwrap_or(1), a.subs.unwrap_or(10)),
        Topology::Fanin => (a.pubs.unwrap_or(10), a.subs.unwrap_or(1)),
        Topology::Shared => (a.pubs.unwrap_or(1), a.subs.unwrap_or(4)),
        Topology::Pairs => {
            let n = a.pubs.or(a.subs).unwrap_or(10);
            (a.pubs.unwrap_or(n), a.subs.unwrap_or(n))
        }
    };
    if pubs == 0 || subs == 0 {
        return Err("--pubs and --subs must be at least 1".into());
    }
    if a.topology == Topology::Pairs {
        if pubs != subs {
            return Err(format!(
                "--topology pairs needs --pubs = --subs (got {pubs} and {subs})"
            ));
        }
        if !a.topic.contains("%i") && pubs > 1 {
            return Err(format!(
                "--topology pairs needs %i in --topic so each pair has its own topic (got {:?})",
                a.topic
            ));
        }
    }
    if a.rx_thread && !matches!(plan.transport, ringmq_client::Transport::Tcp) {
        return Err(format!(
            "--rx-thread needs --transport tcp (kernel receive times date TCP segments, not {} records)",
            plan.transport.name()
        ));
    }
    plan.rx_thread = a.rx_thread;
    plan.pubs = pubs;
    plan.subs = subs;
    plan.topology = Some(a.topology);
    plan.pub_topics = pub_topics(&a.topic, pubs)?;
    Ok(plan)
}

/// --topic-prefix: a topic name (no wildcards), without a trailing `/`.
fn topic_prefix(given: &str) -> Result<String, String> {
    let prefix = given.trim_end_matches('/');
    if prefix.is_empty() || prefix.contains(['+', '#']) {
        return Err(format!(
            "--topic-prefix must be a non-empty topic name without wildcards, got {given:?}"
        ));
    }
    Ok(prefix.to_string())
}

pub fn reqresp_plan(a: &ReqRespArgs) -> Result<Plan, String> {
    let mut plan = base_plan(Scenario::ReqResp, &a.connect, Some(&a.timing))?;
    apply_message(&mut plan, &a.message)?;
    // Response Topic and Correlation Data are MQTT 5 properties.
    plan.protocol = ringmq_engine::codec::Protocol::V5;
    if a.requesters == 0 || a.responders == 0 {
        return Err("--requesters and --responders must be at least 1".into());
    }
    if a.message.retain {
        return Err("--retain makes no sense for requests".into());
    }
    let prefix = topic_prefix(&a.topic_prefix)?;
    plan.pubs = a.requesters;
    plan.responders = a.responders;
    let (requests, responses) = (0..a.requesters)
        .map(|i| crate::reqresp::topics(&prefix, i))
        .unzip();
    plan.pub_topics = requests;
    plan.resp_topics = responses;
    plan.request_filter = crate::reqresp::request_filter(&prefix, a.responders);
    Ok(plan)
}

pub fn retained_plan(a: &RetainedArgs) -> Result<Plan, String> {
    let mut plan = base_plan(Scenario::Retained, &a.connect, None)?;
    plan.qos = QoS::from_u8(a.qos).ok_or("--qos must be 0, 1 or 2")?;
    plan.duration_ns = seconds_to_ns("--timeout", a.timeout_s)?;
    if plan.duration_ns == 0 {
        return Err("--timeout must be more than 0 seconds".into());
    }
    if a.topics == 0 || a.subs == 0 {
        return Err("--topics and --subs must be at least 1".into());
    }
    if a.topics > RETAINED_TOPICS_MAX {
        return Err(format!("--topics is at most {RETAINED_TOPICS_MAX}"));
    }
    if a.size_bytes < payload::HEADER_BYTES || a.size_bytes > cli::PAYLOAD_MAX_BYTES {
        return Err(format!(
            "--size must be between {} and {} bytes",
            payload::HEADER_BYTES,
            cli::PAYLOAD_MAX_BYTES
        ));
    }
    let prefix = topic_prefix(&a.topic_prefix)?;
    plan.size_bytes = a.size_bytes;
    plan.subs = a.subs;
    plan.retained_topics = a.topics;
    plan.retained_prefix = prefix;
    plan.retained_keep = a.keep;
    Ok(plan)
}

pub fn conn_plan(a: &ConnArgs) -> Result<Plan, String> {
    let mut plan = base_plan(Scenario::Conn, &a.connect, None)?;
    if a.count == 0 {
        return Err("--count must be at least 1".into());
    }
    if !a.rate_per_s.is_finite() || a.rate_per_s < 0.0 {
        return Err(format!(
            "--rate must be 0 (unlimited) or more, got {}",
            a.rate_per_s
        ));
    }
    plan.duration_ns = if a.churn {
        0
    } else {
        seconds_to_ns("--duration", a.duration_s)?
    };
    plan.conn_churn = a.churn;
    plan.conn_count = a.count;
    plan.conn_rate_per_s = a.rate_per_s;
    plan.conn_concurrency = a.concurrency.max(1);
    plan.conns_per_source = match a.conns_per_source {
        Some(0) => return Err("--conns-per-source must be at least 1".into()),
        Some(n) => n,
        None => run::default_conns_per_source(),
    };
    let sources = a.count.div_ceil(plan.conns_per_source);
    if sources > 1 {
        let loopback = matches!(plan.addr.ip(), std::net::IpAddr::V4(v4) if v4.is_loopback());
        if !loopback {
            return Err(format!(
                "--count {} needs {sources} source addresses (--conns-per-source {}); that is only done for a 127.x.x.x --host",
                a.count, plan.conns_per_source
            ));
        }
        if sources > 250 {
            return Err("--count needs more than 250 source addresses".into());
        }
    }
    // Each open connection is one descriptor; 64 more for the runtime and
    // stdio. Churn holds none: at most --concurrency per thread are open.
    let open = if a.churn {
        a.count
            .min((plan.conn_concurrency as u64).saturating_mul(plan.threads as u64))
    } else {
        a.count
    };
    match ringmq_net::os::raise_fd_limit(open + 64) {
        Ok(limit) if limit < open + 64 => {
            return Err(format!(
                "--count {} needs more open files than the limit of {limit} (raise `ulimit -n`)",
                a.count
            ))
        }
        Ok(_) => {}
        Err(e) => eprintln!("loadgen: warning: cannot raise the open-file limit: {e}"),
    }
    Ok(plan)
}
