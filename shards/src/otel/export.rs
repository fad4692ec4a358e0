//! Getting finished spans off the shards: a span processor whose `on_end`
//! (called on the shard's thread) only offers the span to a bounded queue
//! (`tracing.queue_max_spans`; a full queue drops the span and counts it,
//! the shard never waits), and one exporter thread that sends batches
//! (`tracing.batch_max_spans`, at least every `tracing.export_interval_ms`)
//! to the collector with the blocking HTTP client (`http_client.rs`). No
//! async runtime anywhere: the exporter's futures are driven by
//! `futures_executor::block_on` on that thread.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Mutex;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use opentelemetry::Context;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{Span, SpanData, SpanExporter, SpanProcessor};

/// What the exporter did, for `/metrics` (process-wide: one exporter).
pub struct Counters {
    /// Spans the collector accepted.
    pub exported: AtomicU64,
    /// Spans dropped because the queue was full.
    pub dropped_queue_full: AtomicU64,
    /// Spans in export requests that failed (after the exporter's retries).
    pub export_failed: AtomicU64,
}

pub static COUNTERS: Counters = Counters {
    exported: AtomicU64::new(0),
    dropped_queue_full: AtomicU64::new(0),
    export_failed: AtomicU64::new(0),
};

/// Longest wait for the exporter thread to finish at shutdown beyond the
/// export timeout, in milliseconds.
const SHUTDOWN_MARGIN_MS: u64 = 1_000;

/// Shortest time between two "export failed" log lines, in seconds.
const FAILURE_LOG_INTERVAL_S: u64 = 60;

enum Msg {
    Span(Box<SpanData>),
    /// Export what is queued, then answer.
    Flush(mpsc::Sender<()>),
    /// Export what is queued, shut the exporter down, answer, and stop.
    Stop(mpsc::Sender<()>),
}

/// The queue and the exporter thread's settings.
#[derive(Clone, Copy, Debug)]
pub struct QueueSettings {
    pub queue_max_spans: usize,
    pub batch_max_spans: usize,
    pub export_interval: Duration,
    pub export_timeout: Duration,
}

/// The span processor the tracer provider calls.
#[derive(Debug)]
pub struct QueueProcessor {
    tx: SyncSender<Msg>,
    stopped: AtomicBool,
    worker: Mutex<Option<JoinHandle<()>>>,
    export_timeout: Duration,
}

impl QueueProcessor {
    /// Starts the exporter thread with `exporter`.
    pub fn start<E: SpanExporter + 'static>(
        exporter: E,
        settings: QueueSettings,
    ) -> std::io::Result<QueueProcessor> {
        let (tx, rx) = mpsc::sync_channel(settings.queue_max_spans);
        let worker = std::thread::Builder::new()
            .name("ringmq-otel-export".into())
            .spawn(move || run(exporter, rx, settings))?;
        Ok(QueueProcessor {
            tx,
            stopped: AtomicBool::new(false),
            worker: Mutex::new(Some(worker)),
            export_timeout: settings.export_timeout,
        })
    }

    /// Sends `msg` (waiting for room: never called on a shard) and waits
    /// up to `timeout` for the answer.
    fn ask(&self, msg: impl FnOnce(mpsc::Sender<()>) -> Msg, timeout: Duration) -> OTelSdkResult {
        let (done_tx, done_rx) = mpsc::channel();
        self.tx
            .send(msg(done_tx))
            .map_err(|_| OTelSdkError::AlreadyShutdown)?;
        done_rx
            .recv_timeout(timeout)
            .map_err(|_| OTelSdkError::Timeout(timeout))
    }
}

impl SpanProcessor for QueueProcessor {
    fn on_start(&self, _span: &mut Span, _cx: &Context) {}

    /// On the shard's thread: offer the span, never wait.
    fn on_end(&self, span: SpanData) {
        if !span.span_context.is_sampled() || self.stopped.load(Ordering::Relaxed) {
            return;
        }
        match self.tx.try_send(Msg::Span(Box::new(span))) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                COUNTERS.dropped_queue_full.fetch_add(1, Ordering::Relaxed);
            }
            // The exporter thread is gone (shut down): nothing to count.
            Err(TrySendError::Disconnected(_)) => {}
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.ask(
            Msg::Flush,
            self.export_timeout + Duration::from_millis(SHUTDOWN_MARGIN_MS),
        )
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        if self.stopped.swap(true, Ordering::SeqCst) {
            return Err(OTelSdkError::AlreadyShutdown);
        }
        let answered = self.ask(Msg::Stop, timeout);
        let worker = match self.worker.lock() {
            Ok(mut w) => w.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        };
        if answered.is_ok() {
            if let Some(w) = worker {
                if w.join().is_err() {
                    return Err(OTelSdkError::InternalFailure(
                        "the span exporter thread panicked".into(),
                    ));
                }
            }
        }
        answered
    }
}

/// The exporter thread.
fn run<E: SpanExporter>(exporter: E, rx: Receiver<Msg>, settings: QueueSettings) {
    let mut batch: Vec<SpanData> = Vec::with_capacity(settings.batch_max_spans);
    let mut failures = FailureLog::default();
    let mut due = Instant::now() + settings.export_interval;
    loop {
        let wait = due.saturating_duration_since(Instant::now());
        match rx.recv_timeout(wait) {
            Ok(Msg::Span(span)) => {
                batch.push(*span);
                if batch.len() >= settings.batch_max_spans {
                    export(&exporter, &mut batch, &mut failures);
                }
            }
            Ok(Msg::Flush(done)) => {
                drain(&rx, &mut batch, &exporter, &mut failures, settings);
                // The asker may have given up waiting; nothing to tell it.
                done.send(()).ok();
            }
            Ok(Msg::Stop(done)) => {
                drain(&rx, &mut batch, &exporter, &mut failures, settings);
                if let Err(e) = exporter.shutdown_with_timeout(settings.export_timeout) {
                    tracing::debug!(error = %e, "span exporter shutdown");
                }
                done.send(()).ok();
                return;
            }
            Err(RecvTimeoutError::Timeout) => {
                export(&exporter, &mut batch, &mut failures);
                due = Instant::now() + settings.export_interval;
            }
            Err(RecvTimeoutError::Disconnected) => {
                export(&exporter, &mut batch, &mut failures);
                return;
            }
        }
    }
}

/// Export every span already queued, in batches.
fn drain<E: SpanExporter>(
    rx: &Receiver<Msg>,
    batch: &mut Vec<SpanData>,
    exporter: &E,
    failures: &mut FailureLog,
    settings: QueueSettings,
) {
    while let Ok(msg) = rx.try_recv() {
        match msg {
            Msg::Span(span) => {
                batch.push(*span);
                if batch.len() >= settings.batch_max_spans {
                    export(exporter, batch, failures);
                }
            }
            // Asked again meanwhile: this drain answers it too.
            Msg::Flush(done) | Msg::Stop(done) => {
                done.send(()).ok();
            }
        }
    }
    export(exporter, batch, failures);
}

fn export<E: SpanExporter>(exporter: &E, batch: &mut Vec<SpanData>, failures: &mut FailureLog) {
    if batch.is_empty() {
        return;
    }
    let spans = std::mem::replace(batch, Vec::with_capacity(batch.capacity()));
    let n = spans.len() as u64;
    match futures_executor::block_on(exporter.export(spans)) {
        Ok(()) => {
            COUNTERS.exported.fetch_add(n, Ordering::Relaxed);
            failures.ok();
        }
        Err(e) => {
            COUNTERS.export_failed.fetch_add(n, Ordering::Relaxed);
            failures.failed(n, &e);
        }
    }
}

/// Export failures are logged at most once a minute (a collector that is
/// down fails every batch), and its recovery once.
#[derive(Default)]
struct FailureLog {
    last_logged: Option<Instant>,
    failing: bool,
    since_logged: u64,
}

impl FailureLog {
    fn failed(&mut self, spans: u64, error: &OTelSdkError) {
        self.failing = true;
        self.since_logged += spans;
        let quiet = self
            .last_logged
            .is_some_and(|t| t.elapsed() < Duration::from_secs(FAILURE_LOG_INTERVAL_S));
        if !quiet {
            tracing::warn!(
                error = %error,
                spans_lost = self.since_logged,
                "span export to the OTLP collector failed"
            );
            self.last_logged = Some(Instant::now());
            self.since_logged = 0;
        }
    }

    fn ok(&mut self) {
        if self.failing {
            tracing::info!("span export to the OTLP collector works again");
            self.failing = false;
            self.since_logged = 0;
        }
    }
}
