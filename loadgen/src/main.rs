//! `loadgen`: MQTT load generator for ringmq and peer brokers.
//!
//! - [`cli`]: subcommands and options.
//! - [`plan`]: the resolved plan, the state the threads share, their waits.
//! - [`run`]: the thread-per-core runner and its coordination.
//! - [`progress`]: the live progress on stderr (phase, time left, rates).
//! - [`worker`]: a worker thread's publishers and subscribers.
//! - [`conn`]: the connection-count scenario.
//! - [`payload`], [`tracker`]: the payload header; loss / duplicate / order checks.
//! - [`stats`]: recorders, the summary (text, JSON), .hgrm output.
//! - [`series`]: the per-second series of the measured window.
//! - [`meta`]: date, command line, versions, machine, parameters of a run;
//!   [`probe`]: the broker's `$SYS/broker/version`.
//! - [`report`]: the HTML report; [`svg`]: its chart pieces.
#![forbid(unsafe_code)]
#![deny(clippy::unwrap_used, clippy::expect_used)]

mod cli;
mod conn;
mod meta;
mod payload;
mod plan;
mod probe;
mod progress;
mod report;
mod run;
mod series;
mod stats;
mod svg;
mod tracker;
mod worker;

use std::sync::Arc;

use bytes::Bytes;
use clap::Parser;
use ringmq_client::{TlsTransport, Transport};
use ringmq_engine::codec::QoS;
use ringmq_net::tls::client::{self as tls_client, ClientTlsSettings};

use cli::{
    Cli, Command, ConnArgs, ConnectArgs, MessageArgs, PubArgs, PubSubArgs, SubArgs, TimingArgs,
    Topology, TransportKind,
};
use plan::{Plan, Scenario, ThreadResult};
use run::Timeline;
use stats::{Recorder, Summary};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Report(args)) => report_command(&args),
        Some(Command::Pub(args)) => pub_plan(&args).and_then(|p| execute(p, &args.connect)),
        Some(Command::Sub(args)) => sub_plan(&args).and_then(|p| execute(p, &args.connect)),
        Some(Command::Pubsub(args)) => pubsub_plan(&args).and_then(|p| execute(p, &args.connect)),
        Some(Command::Conn(args)) => conn_plan(&args).and_then(|p| execute(p, &args.connect)),
        None => pubsub_plan(&cli.pubsub).and_then(|p| execute(p, &cli.pubsub.connect)),
    };
    if let Err(e) = result {
        eprintln!("loadgen: error: {e}");
        std::process::exit(1);
    }
}

fn report_command(args: &cli::ReportArgs) -> Result<(), String> {
    let runs = report::load(&args.inputs)?;
    let html = report::page(&args.title, &runs);
    std::fs::write(&args.output, html).map_err(|e| format!("{}: {e}", args.output.display()))?;
    eprintln!(
        "loadgen: wrote {} ({} runs)",
        args.output.display(),
        runs.len()
    );
    Ok(())
}

fn seconds_to_ns(name: &str, s: f64) -> Result<u64, String> {
    if !(0.0..=1e6).contains(&s) {
        return Err(format!(
            "{name} must be between 0 and 1000000 seconds, got {s}"
        ));
    }
    Ok((s * 1e9) as u64)
}

/// The transport from --transport and the TLS options (refused without
/// `--transport tls`, so a forgotten flag cannot silently measure TCP).
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
    match c.transport {
        TransportKind::Tcp => match tls_flag {
            Some(flag) => Err(format!("{flag} needs --transport tls")),
            None => Ok(Transport::Tcp),
        },
        TransportKind::Tls => {
            let settings = ClientTlsSettings {
                cafile: c.cafile.clone(),
                cert_file: c.cert.clone(),
                key_file: c.key.clone(),
                insecure: c.insecure,
                alpn: vec![b"mqtt".to_vec()],
            };
            let config = tls_client::client_config(&settings).map_err(|e| e.to_string())?;
            let name = c.server_name.as_deref().unwrap_or(&c.host);
            let server_name = tls_client::server_name(name).map_err(|e| e.to_string())?;
            Ok(Transport::Tls(TlsTransport {
                config,
                server_name,
            }))
        }
    }
}

/// The fields every scenario shares, with their checks.
fn base_plan(scenario: Scenario, c: &ConnectArgs, t: Option<&TimingArgs>) -> Result<Plan, String> {
    let threads = match c.threads {
        Some(0) => return Err("--threads must be at least 1".into()),
        Some(n) => n,
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
        warmup_ns,
        duration_ns,
        drain_ns,
        qos: QoS::AtMostOnce,
        size_bytes: payload::HEADER_BYTES,
        rate_per_pub: 0.0,
        count: u64::MAX,
        inflight: 1,
        retain: false,
        pubs: 0,
        subs: 0,
        topology: None,
        pub_topics: Vec::new(),
        sub_filters: Vec::new(),
        conn_count: 0,
        conn_rate_per_s: 0.0,
        conn_concurrency: 1,
        conns_per_source: u64::MAX,
    })
}

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
    plan.size_bytes = m.size_bytes;
    plan.rate_per_pub = m.rate_per_pub;
    plan.count = if m.count == 0 { u64::MAX } else { m.count };
    plan.inflight = m.inflight;
    plan.retain = m.retain;
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

fn pub_plan(a: &PubArgs) -> Result<Plan, String> {
    let mut plan = base_plan(Scenario::Pub, &a.connect, Some(&a.timing))?;
    apply_message(&mut plan, &a.message)?;
    if a.pubs == 0 {
        return Err("--pubs must be at least 1".into());
    }
    plan.pubs = a.pubs;
    plan.pub_topics = pub_topics(&a.topic, a.pubs)?;
    Ok(plan)
}

fn sub_plan(a: &SubArgs) -> Result<Plan, String> {
    let mut plan = base_plan(Scenario::Sub, &a.connect, Some(&a.timing))?;
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

fn pubsub_plan(a: &PubSubArgs) -> Result<Plan, String> {
    let mut plan = base_plan(Scenario::PubSub, &a.connect, Some(&a.timing))?;
    apply_message(&mut plan, &a.message)?;
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
    plan.pubs = pubs;
    plan.subs = subs;
    plan.topology = Some(a.topology);
    plan.pub_topics = pub_topics(&a.topic, pubs)?;
    Ok(plan)
}

fn conn_plan(a: &ConnArgs) -> Result<Plan, String> {
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
    plan.duration_ns = seconds_to_ns("--duration", a.duration_s)?;
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
    // Each connection is one descriptor; 64 more for the runtime and stdio.
    match ringmq_net::os::raise_fd_limit(a.count + 64) {
        Ok(limit) if limit < a.count + 64 => {
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

fn execute(plan: Plan, c: &ConnectArgs) -> Result<(), String> {
    let plan = Arc::new(plan);
    let broker_version = probe::broker_version(&plan);
    let date_utc = meta::now_rfc3339();
    let (results, timeline) = run::run(plan.clone(), c.quiet)?;
    let (mut summary, recorder) = summarize(&plan, c, results, &timeline);
    summary.per_second = recorder.series.points(summary.measured_s);
    summary.meta = meta::Meta {
        date_utc,
        command: meta::command_line(),
        loadgen_version: env!("CARGO_PKG_VERSION").into(),
        broker_version,
        machine: meta::Machine::this(),
        parameters: parameters(&plan),
    };
    if c.json {
        eprint!("{}", summary.text());
        let line = serde_json::to_string(&summary).map_err(|e| format!("JSON: {e}"))?;
        println!("{line}");
    } else {
        print!("{}", summary.text());
    }
    if let Some(path) = &c.hgrm {
        std::fs::write(path, stats::hgrm(&recorder.latency))
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}

fn summarize(
    plan: &Plan,
    c: &ConnectArgs,
    results: Vec<ThreadResult>,
    tl: &Timeline,
) -> (Summary, Recorder) {
    let mut rec = Recorder::new();
    let mut trackers = Vec::new();
    for r in results {
        rec.merge(r.recorder);
        trackers.extend(r.trackers);
    }
    let measure_start_ns = tl.start_ns + plan.warmup_ns;
    let measured_ns = match plan.scenario {
        // Publishers may stop early (--count): rates are over the time they ran.
        Scenario::Pub | Scenario::PubSub => tl
            .pubs_end_ns
            .min(measure_start_ns + plan.duration_ns)
            .saturating_sub(measure_start_ns),
        Scenario::Sub => plan.duration_ns,
        // The time it took to open the connections (not the hold).
        Scenario::Conn => tl.pubs_end_ns.saturating_sub(tl.start_ns),
    };
    let measured_s = measured_ns as f64 / 1e9;
    let per_s = |n: u64| {
        if measured_s > 0.0 {
            n as f64 / measured_s
        } else {
            0.0
        }
    };
    let (duplicated, reordered) = trackers.iter().fold((0, 0), |(d, r), (_, _, t)| {
        (d + t.duplicates, r + t.reordered)
    });
    let lost = match plan.topology {
        // `sub` alone does not know what was sent.
        None => None,
        Some(Topology::Shared) => {
            let unique: u64 = trackers.iter().map(|(_, _, t)| t.unique()).sum();
            Some(plan.expected_received(&tl.pub_sent).saturating_sub(unique))
        }
        Some(_) => Some(
            trackers
                .iter()
                .filter(|(s, p, _)| plan.wired(*s, *p))
                .map(|(_, p, t)| {
                    let sent = tl.pub_sent.get(*p as usize).copied().unwrap_or(0);
                    sent.saturating_sub(t.unique())
                })
                .sum(),
        ),
    };
    let mut s = Summary {
        scenario: plan.scenario.name().into(),
        label: c.label.clone(),
        topology: plan.topology.map(|t| format!("{t:?}").to_lowercase()),
        broker: plan.addr.to_string(),
        transport: plan.transport.name().into(),
        mqtt_version: plan.protocol.level(),
        qos: plan.qos.as_u8(),
        payload_bytes: plan.size_bytes,
        pubs: plan.pubs,
        subs: plan.subs,
        threads: plan.threads,
        driver: if monoio::utils::detect_uring() {
            "io_uring"
        } else {
            "legacy"
        }
        .into(),
        rate_msgs_per_s_per_pub: plan.rate_per_pub,
        warmup_s: plan.warmup_ns as f64 / 1e9,
        duration_s: plan.duration_ns as f64 / 1e9,
        measured_s,
        msgs_sent: rec.sent_measured,
        msgs_received: rec.received_measured,
        msgs_per_s_sent: per_s(rec.sent_measured),
        msgs_per_s_received: per_s(rec.received_measured),
        msgs_sent_total: rec.sent_total,
        msgs_received_total: rec.received_total,
        msgs_expected_total: (plan.scenario == Scenario::PubSub)
            .then(|| plan.expected_received(&tl.pub_sent)),
        lost,
        duplicated,
        reordered,
        foreign: rec.foreign,
        acked: rec.acked,
        ack_failures: rec.ack_failures,
        errors: rec.errors,
        error_samples: rec.error_samples.clone(),
        ..Summary::default()
    };
    let kind = match plan.scenario {
        Scenario::PubSub => "end_to_end",
        Scenario::Pub if plan.qos != QoS::AtMostOnce => "publish_ack",
        Scenario::Conn => "connect",
        _ => "none",
    };
    s.set_latency(kind, &rec.latency);
    if plan.rate_per_pub > 0.0 {
        s.set_send_lag(&rec.send_lag);
    }
    if plan.scenario == Scenario::Conn {
        s.conns_requested = Some(plan.conn_count);
        s.conns_opened = Some(rec.conns_opened);
        s.conns_failed = Some(rec.conns_failed);
        s.conns_dropped = Some(rec.conns_dropped);
        s.conns_per_s = Some(per_s(rec.conns_opened));
        s.duration_s = plan.duration_ns as f64 / 1e9;
    }
    (s, rec)
}

/// The plan's parameters that the summary's own fields do not already hold.
fn parameters(plan: &Plan) -> std::collections::BTreeMap<String, String> {
    let mut p = std::collections::BTreeMap::new();
    let mut put = |k: &str, v: String| {
        p.insert(k.to_string(), v);
    };
    put("threads", plan.threads.to_string());
    put("keep_alive_s", plan.keep_alive_s.to_string());
    put("transport", plan.transport.name().to_string());
    put("warmup_s", (plan.warmup_ns as f64 / 1e9).to_string());
    put("duration_s", (plan.duration_ns as f64 / 1e9).to_string());
    put("drain_s", (plan.drain_ns as f64 / 1e9).to_string());
    if plan.scenario == Scenario::Conn {
        put("count", plan.conn_count.to_string());
        put("rate_conns_per_s", plan.conn_rate_per_s.to_string());
        put("concurrency", plan.conn_concurrency.to_string());
        return p;
    }
    put("qos", plan.qos.as_u8().to_string());
    put("pubs", plan.pubs.to_string());
    put("subs", plan.subs.to_string());
    put("size_bytes", plan.size_bytes.to_string());
    put("rate_msgs_per_s_per_pub", plan.rate_per_pub.to_string());
    put("inflight", plan.inflight.to_string());
    put("retain", plan.retain.to_string());
    if plan.count != u64::MAX {
        put("count_per_pub", plan.count.to_string());
    }
    if let Some(t) = plan.topology {
        put("topology", format!("{t:?}").to_lowercase());
    }
    if let Some(t) = plan.pub_topics.first() {
        put("topic_first", String::from_utf8_lossy(t).into_owned());
    }
    if let Some(f) = plan.sub_filters.first() {
        put("filter_first", String::from_utf8_lossy(f).into_owned());
    }
    p
}
