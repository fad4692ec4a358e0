//! `loadgen`: MQTT load generator for ringmq and peer brokers.
//!
//! - [`cli`]: subcommands and options; [`build`]: the plan from them.
//! - [`plan`]: the resolved plan, the state the threads share, their waits.
//! - [`run`]: the thread-per-core runner and its coordination.
//! - [`progress`]: the live progress on stderr (phase, time left, rates).
//! - [`worker`]: a worker thread's set-up and subscribers; [`publisher`]: a publisher task.
//! - [`conn`]: the connection-count scenario.
//! - [`payload`], [`tracker`]: the payload header; loss / duplicate / order checks.
//! - [`stats`]: recorders, the summary (JSON), .hgrm output; [`text`]: the text summary.
//! - [`series`]: the per-second series of the measured window.
//! - [`meta`]: date, command line, versions, machine, parameters of a run;
//!   [`probe`]: the broker's `$SYS/broker/version`.
//! - [`selfcheck`]: was loadgen itself the bottleneck (CPU, send lag, receive backlog).
//! - [`report`]: the HTML report; [`svg`]: its chart pieces.
#![forbid(unsafe_code)]
#![deny(clippy::unwrap_used, clippy::expect_used)]

mod build;
mod cli;
mod conn;
mod meta;
mod payload;
mod plan;
mod probe;
mod progress;
mod publisher;
mod report;
mod reqresp;
mod retained;
mod run;
#[cfg(target_os = "linux")]
mod rxthread;
mod selfcheck;
mod series;
mod stats;
mod subscribe;
mod svg;
mod text;
mod tracker;
mod worker;

use std::sync::Arc;

use clap::Parser;
use ringmq_engine::codec::QoS;

use build::{conn_plan, pub_plan, pubsub_plan, reqresp_plan, retained_plan, sub_plan};
use cli::{Cli, Command, ConnectArgs, Topology};
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
        Some(Command::Reqresp(args)) => reqresp_plan(&args).and_then(|p| execute(p, &args.connect)),
        Some(Command::Retained(args)) => {
            retained_plan(&args).and_then(|p| execute(p, &args.connect))
        }
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
        Scenario::Pub | Scenario::PubSub | Scenario::ReqResp => tl
            .pubs_end_ns
            .min(measure_start_ns + plan.duration_ns)
            .saturating_sub(measure_start_ns),
        Scenario::Sub => plan.duration_ns,
        // From the common SUBSCRIBE to the last subscriber's last message
        // (the whole timeout if one never got them all).
        Scenario::Retained if rec.missing == 0 && !rec.latency.is_empty() => rec.latency.max(),
        Scenario::Retained => plan.duration_ns,
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
        // One reply per request.
        None if plan.scenario == Scenario::ReqResp => Some(
            plan.expected_received(&tl.pub_sent)
                .saturating_sub(rec.received_total),
        ),
        None if plan.scenario == Scenario::Retained => Some(rec.missing),
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
        msgs_expected_total: match plan.scenario {
            Scenario::PubSub | Scenario::ReqResp => Some(plan.expected_received(&tl.pub_sent)),
            Scenario::Retained => Some(plan.retained_topics * u64::from(plan.subs)),
            _ => None,
        },
        lost,
        duplicated,
        reordered,
        foreign: rec.foreign,
        acked: rec.acked,
        ack_failures: rec.ack_failures,
        errors: rec.errors,
        error_samples: rec.error_samples.clone(),
        mqtt_bytes_received_total: rec.mqtt_bytes_received,
        mqtt_bytes_sent_total: rec.mqtt_bytes_sent,
        ..Summary::default()
    };
    if plan.topology == Some(Topology::Shared) {
        s.per_subscriber_received = (0..plan.subs)
            .map(|sub| {
                trackers
                    .iter()
                    .filter(|(s, _, _)| *s == sub)
                    .map(|(_, _, t)| t.unique())
                    .sum()
            })
            .collect();
    }
    let kind = match plan.scenario {
        Scenario::PubSub => "end_to_end",
        Scenario::ReqResp => "round_trip",
        Scenario::Retained => "retained_all",
        Scenario::Pub if plan.qos != QoS::AtMostOnce => "publish_ack",
        Scenario::Conn if plan.conn_churn => "churn_cycle",
        Scenario::Conn => "connect",
        _ => "none",
    };
    s.set_latency(kind, &rec.latency);
    if plan.rx_thread {
        s.receive_time = Some("kernel".into());
    }
    if plan.rate_per_pub > 0.0 {
        s.set_send_lag(&rec.send_lag);
    }
    let p99_us = |h: &hdrhistogram::Histogram<u64>| {
        (!h.is_empty()).then(|| h.value_at_quantile(0.99) as f64 / 1000.0)
    };
    s.self_check = Some(selfcheck::SelfCheck::judge(
        tl.thread_busy_pct.clone(),
        s.send_lag_us_p99,
        p99_us(&rec.recv_backlog),
    ));
    if plan.scenario == Scenario::Conn {
        s.conns_requested = Some(plan.conn_count);
        s.conns_opened = Some(rec.conns_opened);
        s.conns_failed = Some(rec.conns_failed);
        s.conns_dropped = Some(rec.conns_dropped);
        s.conns_per_s = Some(per_s(rec.conns_opened));
        s.conns_target_per_s = Some(plan.conn_rate_per_s);
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
    if !plan.pin.is_empty() {
        let cpus: Vec<String> = plan.pin.iter().map(|c| c.to_string()).collect();
        put("pin", cpus.join(","));
    }
    put("keep_alive_s", plan.keep_alive_s.to_string());
    put("transport", plan.transport.name().to_string());
    put("warmup_s", (plan.warmup_ns as f64 / 1e9).to_string());
    put("duration_s", (plan.duration_ns as f64 / 1e9).to_string());
    put("drain_s", (plan.drain_ns as f64 / 1e9).to_string());
    if plan.scenario == Scenario::Conn {
        put("count", plan.conn_count.to_string());
        put("rate_conns_per_s", plan.conn_rate_per_s.to_string());
        put("concurrency", plan.conn_concurrency.to_string());
        put("churn", plan.conn_churn.to_string());
        return p;
    }
    put("qos", plan.qos.as_u8().to_string());
    put("pubs", plan.pubs.to_string());
    put("subs", plan.subs.to_string());
    put("size_bytes", plan.size_bytes.to_string());
    put("rate_msgs_per_s_per_pub", plan.rate_per_pub.to_string());
    put("inflight", plan.inflight.to_string());
    put("retain", plan.retain.to_string());
    put("burst", plan.burst.to_string());
    put("write_each", plan.write_each.to_string());
    if plan.scenario == Scenario::Retained {
        put("retained_topics", plan.retained_topics.to_string());
        put("subs", plan.subs.to_string());
        put("size_bytes", plan.size_bytes.to_string());
        put("qos", plan.qos.as_u8().to_string());
        put("timeout_s", (plan.duration_ns as f64 / 1e9).to_string());
        return p;
    }
    if plan.scenario == Scenario::ReqResp {
        put("requesters", plan.pubs.to_string());
        put("responders", plan.responders.to_string());
    }
    put("topic_alias_max", plan.topic_alias_max.to_string());
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
