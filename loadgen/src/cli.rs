//! Command line: subcommands and their options (clap derive). Option names
//! follow emqtt-bench / mqtt-benchmark where they overlap.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Largest payload loadgen sends: 16 MiB.
pub const PAYLOAD_MAX_BYTES: usize = 16 * 1024 * 1024;

#[derive(Parser, Debug)]
#[command(
    name = "loadgen",
    about = "MQTT load generator: pub / sub / pubsub / conn scenarios with HdrHistogram latency",
    long_about = "MQTT load generator. Without a subcommand it runs `pubsub` (the default \
                  benchmark) with the options given.\n\nEvery run stops by itself (--duration or \
                  --count) and only ever connects to --host.",
    version,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub pubsub: PubSubArgs,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Publishers only: publish throughput, and PUBACK / PUBCOMP latency for QoS 1 / 2.
    Pub(PubArgs),
    /// Subscribers only: receive throughput, loss / duplicates / order of loadgen payloads.
    Sub(SubArgs),
    /// Publishers and subscribers in one process: end-to-end latency (the default benchmark).
    Pubsub(PubSubArgs),
    /// Open many connections at a rate and hold them: connect latency and failures.
    Conn(ConnArgs),
    /// Request/response round trips (MQTT 5): requests carry a Response Topic and
    /// Correlation Data, loadgen's responders answer, requesters time the round trip.
    Reqresp(ReqRespArgs),
    /// Retained-message storm: store --topics retained messages, then time how long
    /// --subs subscribers take to receive all of them.
    Retained(RetainedArgs),
    /// Turn --json outputs into one self-contained HTML page (run metadata, latency and throughput charts, table).
    Report(ReportArgs),
}

/// MQTT protocol version as the CONNECT protocol level.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ProtocolVersion {
    /// MQTT 3.1 (MQIsdp)
    #[value(name = "3")]
    V3,
    /// MQTT 3.1.1
    #[value(name = "4")]
    V4,
    /// MQTT 5.0
    #[value(name = "5")]
    V5,
}

/// How publishers and subscribers are wired in `pubsub`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Topology {
    /// Every subscriber subscribes to every publisher's topic (1 -> N).
    Fanout,
    /// Same wiring as fanout, written for N publishers -> few subscribers.
    Fanin,
    /// Publisher i -> subscriber i on its own topic (--pubs = --subs).
    Pairs,
    /// Subscribers share `$share/loadgen/<topic>`: each message goes to one of them.
    Shared,
}

/// How loadgen's connections carry MQTT.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum TransportKind {
    /// Plain TCP (default port 1883).
    Tcp,
    /// TLS over TCP (default port 8883): --cafile or --insecure, --cert/--key for mutual TLS.
    Tls,
    /// WebSocket (default port 8080, path --ws-path): HTTP upgrade, subprotocol mqtt.
    Ws,
    /// WebSocket over TLS (default port 8443): the TLS options as for tls.
    Wss,
}

impl TransportKind {
    /// The port used when --port is not given.
    pub fn default_port(self) -> u16 {
        match self {
            TransportKind::Tcp => 1883,
            TransportKind::Tls => 8883,
            TransportKind::Ws => 8080,
            TransportKind::Wss => 8443,
        }
    }

    /// Whether the TLS options apply.
    pub fn is_tls(self) -> bool {
        matches!(self, TransportKind::Tls | TransportKind::Wss)
    }
}

/// Where and how to connect, and how to report.
#[derive(Args, Debug, Clone)]
pub struct ConnectArgs {
    /// Broker address (loadgen only connects here).
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Broker port (default: 1883 tcp, 8883 tls, 8080 ws, 8443 wss).
    #[arg(long)]
    pub port: Option<u16>,
    /// Transport of every connection.
    #[arg(long, value_enum, default_value = "tcp")]
    pub transport: TransportKind,
    /// ws / wss: the request path of the WebSocket upgrade.
    #[arg(long, value_name = "PATH", default_value = "/mqtt")]
    pub ws_path: String,
    /// ws / wss: largest WebSocket frame loadgen sends, in bytes; a longer
    /// batch of MQTT bytes is split over several frames.
    #[arg(long, value_name = "BYTES", default_value_t = 65_536)]
    pub ws_frame_max: usize,
    /// TLS: PEM file of the CAs trusted to sign the broker's certificate
    /// (default: the system bundle, /etc/ssl/certs/ca-certificates.crt).
    #[arg(long, value_name = "FILE")]
    pub cafile: Option<PathBuf>,
    /// TLS: client certificate chain (PEM) for mutual TLS; needs --key.
    #[arg(long, value_name = "FILE", requires = "key")]
    pub cert: Option<PathBuf>,
    /// TLS: the client certificate's private key (PEM); needs --cert.
    #[arg(long, value_name = "FILE", requires = "cert")]
    pub key: Option<PathBuf>,
    /// TLS: accept any broker certificate (self-signed benchmark setups);
    /// handshake signatures are still checked.
    #[arg(long)]
    pub insecure: bool,
    /// TLS: name to check the broker's certificate against and send as
    /// SNI (default: --host).
    #[arg(long, value_name = "NAME")]
    pub server_name: Option<String>,
    /// Protocol level: 3 (3.1), 4 (3.1.1), 5 (5.0). Long-only, as in
    /// mosquitto_pub: `-V` / `--version` print loadgen's own version.
    #[arg(long = "protocol-version", value_enum, default_value = "4")]
    pub protocol_version: ProtocolVersion,
    /// Client id prefix; ids are <prefix>-pub-<i>, <prefix>-sub-<i>, <prefix>-conn-<i>
    /// (default: loadgen-<pid>).
    #[arg(long)]
    pub client_prefix: Option<String>,
    /// User name sent in CONNECT.
    #[arg(long, short = 'u')]
    pub username: Option<String>,
    /// Password sent in CONNECT.
    #[arg(long, short = 'P')]
    pub password: Option<String>,
    /// Keep-alive interval in seconds (0 = off).
    #[arg(long = "keep-alive", default_value_t = 60)]
    pub keep_alive_s: u16,
    /// Worker threads, each with its own monoio runtime and a slice of the
    /// clients (default: the CPUs this process may run on).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Pin worker thread i to the i-th CPU of this list (taskset syntax:
    /// 0,2-3; cycled if --threads is larger). Default --threads: its length.
    #[arg(long, value_name = "CPU_LIST")]
    pub pin: Option<String>,
    /// Print one JSON line on stdout (the text summary then goes to stderr).
    #[arg(long)]
    pub json: bool,
    /// Write the latency histogram in HdrHistogram percentile format (µs).
    #[arg(long, value_name = "FILE")]
    pub hgrm: Option<PathBuf>,
    /// Name of this run in JSON / HTML reports (e.g. the broker's name).
    #[arg(long)]
    pub label: Option<String>,
    /// No live progress line on stderr.
    #[arg(long, short = 'q')]
    pub quiet: bool,
}

/// How long a run lasts.
#[derive(Args, Debug, Clone)]
pub struct TimingArgs {
    /// Seconds of traffic before measuring starts (not in latency or rates).
    #[arg(long = "warmup", default_value_t = 2.0)]
    pub warmup_s: f64,
    /// Seconds of measured traffic after the warm-up.
    #[arg(long = "duration", short = 'd', default_value_t = 10.0)]
    pub duration_s: f64,
    /// After publishing stops, wait at most this many seconds for messages in flight.
    #[arg(long = "drain", default_value_t = 2.0)]
    pub drain_s: f64,
}

/// What publishers send.
#[derive(Args, Debug, Clone)]
pub struct MessageArgs {
    /// QoS of publishes and subscriptions.
    #[arg(long, short = 'Q', default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=2))]
    pub qos: u8,
    /// Payload size in bytes (at least 24: loadgen's header).
    #[arg(long = "size", short = 's', default_value_t = 64)]
    pub size_bytes: usize,
    /// Messages per second per publisher; 0 = as fast as the broker takes them.
    #[arg(long = "rate", short = 'r', default_value_t = 1000.0)]
    pub rate_per_pub: f64,
    /// Messages per publisher, then stop (0 = until --duration ends).
    #[arg(long, short = 'c', default_value_t = 0)]
    pub count: u64,
    /// Outbound QoS 1/2 window per publisher (also capped by the broker's Receive Maximum).
    #[arg(long, default_value_t = 64)]
    pub inflight: u16,
    /// Set the retain flag on publishes.
    #[arg(long)]
    pub retain: bool,
    /// Paced publishers send their messages in bursts of this many, back to
    /// back, every this many intervals (same average --rate; latency counts
    /// from the burst's intended time). 1 = evenly paced.
    #[arg(long, default_value_t = 1, value_name = "MESSAGES")]
    pub burst: u32,
    /// Each message its own socket write: a publisher waits until its last
    /// message was handed to the socket before queueing the next (default:
    /// messages due together share one write).
    #[arg(long)]
    pub write_each: bool,
}

/// What subscribers allow.
#[derive(Args, Debug, Clone)]
pub struct AliasArgs {
    /// Subscribers' Topic Alias Maximum (MQTT 5): the broker may then send
    /// topic aliases instead of repeated topic names (0 = none allowed).
    #[arg(long, default_value_t = 0)]
    pub topic_alias_max: u16,
}

#[derive(Args, Debug, Clone)]
pub struct PubArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    #[command(flatten)]
    pub timing: TimingArgs,
    #[command(flatten)]
    pub message: MessageArgs,
    /// Number of publishers.
    #[arg(long, default_value_t = 1)]
    pub pubs: u32,
    /// Topic; %i is replaced by the publisher index.
    #[arg(long, short = 't', default_value = "loadgen/%i")]
    pub topic: String,
}

#[derive(Args, Debug, Clone)]
pub struct SubArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    #[command(flatten)]
    pub timing: TimingArgs,
    /// Number of subscribers.
    #[arg(long, default_value_t = 1)]
    pub subs: u32,
    /// Topic filter; %i is replaced by the subscriber index.
    #[arg(long, short = 't', default_value = "loadgen/#")]
    pub topic: String,
    /// QoS of the subscriptions.
    #[arg(long, short = 'Q', default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=2))]
    pub qos: u8,
    #[command(flatten)]
    pub alias: AliasArgs,
}

#[derive(Args, Debug, Clone)]
pub struct PubSubArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    #[command(flatten)]
    pub timing: TimingArgs,
    #[command(flatten)]
    pub message: MessageArgs,
    /// Number of publishers (default: 1; fanin: 10; pairs: --subs).
    #[arg(long)]
    pub pubs: Option<u32>,
    /// Number of subscribers (default: fanout 10; fanin and shared 1 and 4; pairs: --pubs or 10).
    #[arg(long)]
    pub subs: Option<u32>,
    /// Topic of publisher i; %i is replaced by i.
    #[arg(long, short = 't', default_value = "loadgen/%i")]
    pub topic: String,
    /// How publishers and subscribers are wired.
    #[arg(long, value_enum, default_value = "fanout")]
    pub topology: Topology,
    #[command(flatten)]
    pub alias: AliasArgs,
    /// All subscribers on one extra thread of their own (epoll, large reads),
    /// latency measured to the kernel's receive time of each read
    /// (SO_TIMESTAMPNS) instead of when loadgen processed it; publishers
    /// keep --threads and, under SCHED_FIFO, preempt it. TCP only.
    #[arg(long)]
    pub rx_thread: bool,
}

#[derive(Args, Debug, Clone)]
pub struct ReqRespArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    #[command(flatten)]
    pub timing: TimingArgs,
    #[command(flatten)]
    pub message: MessageArgs,
    /// Requesters: each publishes requests (--rate each) and receives its replies.
    #[arg(long, default_value_t = 10)]
    pub requesters: u32,
    /// Responders; several share the requests ($share/loadgen-resp/...).
    #[arg(long, default_value_t = 1)]
    pub responders: u32,
    /// Requests go to <prefix>/req/<i>, replies to <prefix>/resp/<i>.
    #[arg(long, default_value = "loadgen/rr")]
    pub topic_prefix: String,
}

#[derive(Args, Debug, Clone)]
pub struct RetainedArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// Retained messages stored first, one per topic <prefix>/<i>.
    #[arg(long, default_value_t = 1000)]
    pub topics: u64,
    /// Subscribers that then subscribe to <prefix>/# at the same moment.
    #[arg(long, default_value_t = 10)]
    pub subs: u32,
    /// Payload size in bytes (at least 24: loadgen's header).
    #[arg(long = "size", short = 's', default_value_t = 64)]
    pub size_bytes: usize,
    /// QoS of the subscriptions (the retained messages are stored at QoS 1).
    #[arg(long, short = 'Q', default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=2))]
    pub qos: u8,
    #[arg(long, default_value = "loadgen/retained")]
    /// Topics are <prefix>/<i>.
    pub topic_prefix: String,
    /// Seconds the whole run may take (storing, receiving) before it stops.
    #[arg(long = "timeout", default_value_t = 30.0)]
    pub timeout_s: f64,
    /// Leave the retained messages on the broker (default: cleared at the end).
    #[arg(long)]
    pub keep: bool,
}

#[derive(Args, Debug, Clone)]
pub struct ConnArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// Connections to open.
    #[arg(long, short = 'c', default_value_t = 1000)]
    pub count: u64,
    /// Connections opened per second, all threads together (0 = as fast as possible).
    #[arg(long = "rate", short = 'r', default_value_t = 1000.0)]
    pub rate_per_s: f64,
    /// Seconds to hold the connections open after the last one opened.
    #[arg(long = "duration", short = 'd', default_value_t = 10.0)]
    pub duration_s: f64,
    /// Connects in progress at once per thread (with --churn: cycles).
    #[arg(long, default_value_t = 256)]
    pub concurrency: usize,
    /// Connection churn: each connection, once CONNACKed, SUBSCRIBEs to a
    /// topic of its own (QoS 0), waits for the SUBACK, sends DISCONNECT and
    /// waits for the close; `conn/s` then counts whole cycles and the
    /// latency is a cycle's. Nothing is held (--duration is ignored).
    #[arg(long)]
    pub churn: bool,
    /// Connections per source address before moving on to the next
    /// (127.0.0.2, 127.0.0.3, ...; loopback hosts only). Default: 50_000
    /// capped by the ephemeral port range.
    #[arg(long)]
    pub conns_per_source: Option<u64>,
}

#[derive(Args, Debug, Clone)]
pub struct ReportArgs {
    /// JSON files written with --json (one run per line).
    #[arg(required = true, value_name = "JSON")]
    pub inputs: Vec<PathBuf>,
    /// The HTML file to write.
    #[arg(long, short = 'o', value_name = "HTML")]
    pub output: PathBuf,
    /// Page title.
    #[arg(long, default_value = "loadgen report")]
    pub title: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn default_is_pubsub_and_protocol_version_parses() {
        let cli = Cli::try_parse_from(["loadgen", "--protocol-version", "5", "--subs", "3"]);
        let cli = cli.unwrap_or_else(|e| panic!("{e}"));
        assert!(cli.command.is_none());
        assert_eq!(cli.pubsub.connect.protocol_version, ProtocolVersion::V5);
        assert_eq!(cli.pubsub.subs, Some(3));
        let bad = Cli::try_parse_from(["loadgen", "pub", "--qos", "3"]);
        assert!(bad.is_err());
        let conn = Cli::try_parse_from(["loadgen", "conn", "--count", "10", "--rate", "5"]);
        assert!(matches!(
            conn.map(|c| c.command),
            Ok(Some(Command::Conn(_)))
        ));
    }

    #[test]
    fn transport_and_tls_options_parse() {
        let cli = Cli::try_parse_from([
            "loadgen",
            "conn",
            "--transport",
            "tls",
            "--cafile",
            "ca.pem",
            "--cert",
            "c.pem",
            "--key",
            "c.key",
            "--server-name",
            "localhost",
            "-u",
            "alice",
            "-P",
            "secret",
        ]);
        let Ok(Cli {
            command: Some(Command::Conn(a)),
            ..
        }) = cli
        else {
            panic!("{cli:?}");
        };
        assert_eq!(a.connect.transport, TransportKind::Tls);
        assert_eq!(a.connect.port, None);
        assert_eq!(a.connect.transport.default_port(), 8883);
        assert_eq!(a.connect.server_name.as_deref(), Some("localhost"));
        assert_eq!(a.connect.username.as_deref(), Some("alice"));
        // --cert without --key is refused by the parser.
        assert!(Cli::try_parse_from(["loadgen", "--transport", "tls", "--cert", "c.pem"]).is_err());
        assert!(Cli::try_parse_from(["loadgen", "--transport", "quic"]).is_err());
        let ws = Cli::try_parse_from(["loadgen", "--transport", "wss", "--ws-path", "/"]);
        let ws = ws.unwrap_or_else(|e| panic!("{e}")).pubsub.connect;
        assert_eq!(ws.transport, TransportKind::Wss);
        assert_eq!(ws.transport.default_port(), 8443);
        assert!(ws.transport.is_tls());
        assert_eq!(ws.ws_path, "/");
    }

    #[test]
    fn version_flags_print_loadgens_version() {
        for flag in ["--version", "-V"] {
            let e = Cli::try_parse_from(["loadgen", flag]).err();
            let kind = e.as_ref().map(|e| e.kind());
            assert_eq!(kind, Some(clap::error::ErrorKind::DisplayVersion), "{flag}");
            let text = e.map(|e| e.to_string()).unwrap_or_default();
            assert_eq!(text, format!("loadgen {}\n", env!("CARGO_PKG_VERSION")));
        }
    }
}
