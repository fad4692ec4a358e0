//! The live progress on stderr: once a period, the phase of the run
//! ([`Phase`]), the time left in that phase, and the rates and totals so
//! far. On a terminal it is one line rewritten in place (`\r`); otherwise
//! (a log file, a pipe) it is one plain line per period, so logs hold no
//! carriage returns.

use std::io::IsTerminal;

use crate::plan::{Plan, Scenario, Shared};

/// Where a run is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Connecting and subscribing (before the start), or, in `conn`,
    /// opening the connections.
    Connecting,
    /// Traffic that is not measured.
    WarmUp,
    /// The measured window.
    Measuring,
    /// Publishing is over; waiting for messages in flight.
    Drain,
    /// `conn`: every connection opened; holding them for --duration.
    Holding,
}

impl Phase {
    pub fn name(self) -> &'static str {
        match self {
            Phase::Connecting => "connecting",
            Phase::WarmUp => "warm-up",
            Phase::Measuring => "measuring",
            Phase::Drain => "drain",
            Phase::Holding => "holding",
        }
    }
}

/// Where the progress goes and how.
pub struct Progress {
    /// No output at all (`--quiet`).
    quiet: bool,
    /// stderr is a terminal: rewrite one line in place.
    terminal: bool,
    /// A line was written and not yet ended (terminal only).
    open_line: bool,
    /// Length of that line, to blank what a shorter one leaves behind.
    last_len: usize,
    /// When the run began (ns on the run's clock): elapsed times count from it.
    begin_ns: u64,
    last_ns: u64,
    last_sent: u64,
    last_received: u64,
}

impl Progress {
    /// Progress for a run that began at `begin_ns`; on a terminal if
    /// stderr is one.
    pub fn new(begin_ns: u64, quiet: bool) -> Self {
        Progress::with_terminal(begin_ns, quiet, std::io::stderr().is_terminal())
    }

    fn with_terminal(begin_ns: u64, quiet: bool, terminal: bool) -> Self {
        Progress {
            quiet,
            terminal,
            open_line: false,
            last_len: 0,
            begin_ns,
            last_ns: begin_ns,
            last_sent: 0,
            last_received: 0,
        }
    }

    /// Traffic starts at `start_ns`: the first rates are per second of
    /// traffic, not of connecting.
    pub fn started(&mut self, start_ns: u64) {
        self.last_ns = self.last_ns.max(start_ns);
    }

    /// Prints the progress at `now` (ns on the run's clock).
    pub fn print(
        &mut self,
        plan: &Plan,
        shared: &Shared,
        phase: Phase,
        left_ns: Option<u64>,
        now: u64,
    ) {
        let counters = self.counters(plan, shared, phase, now);
        let line = self.line(phase, left_ns, now, &counters);
        self.emit(&line);
    }

    /// The rates and totals part of the line; remembers the totals for the
    /// next rates.
    fn counters(&mut self, plan: &Plan, shared: &Shared, phase: Phase, now: u64) -> String {
        let secs = now.saturating_sub(self.last_ns).max(1) as f64 / 1e9;
        self.last_ns = now;
        let errors = shared.live_sum(|l| &l.errors);
        if plan.scenario == Scenario::Conn {
            return format!(
                "connections open {}  failed {}  errors {errors}",
                shared.live_sum(|l| &l.conns_open),
                shared.live_sum(|l| &l.conns_failed)
            );
        }
        if phase == Phase::Connecting {
            return format!(
                "threads ready {}/{}  errors {errors}",
                shared.ready.load(std::sync::atomic::Ordering::Relaxed),
                plan.threads
            );
        }
        let sent = shared.live_sum(|l| &l.sent);
        let received = shared.live_sum(|l| &l.received);
        let text = format!(
            "sent {:>10.0} msg/s  received {:>10.0} msg/s  total sent {sent} received {received}  errors {errors}",
            sent.saturating_sub(self.last_sent) as f64 / secs,
            received.saturating_sub(self.last_received) as f64 / secs,
        );
        self.last_sent = sent;
        self.last_received = received;
        text
    }

    /// `[elapsed] phase  time-left  counters`.
    fn line(&self, phase: Phase, left_ns: Option<u64>, now: u64, counters: &str) -> String {
        let elapsed = now.saturating_sub(self.begin_ns) as f64 / 1e9;
        let left = left_ns
            .map(|ns| format!("{:.1}s left", ns as f64 / 1e9))
            .unwrap_or_default();
        format!(
            "[{elapsed:6.1}s] {:<10} {left:>11}  {counters}",
            phase.name()
        )
    }

    fn emit(&mut self, line: &str) {
        if self.quiet {
            return;
        }
        eprint!("{}", self.render(line));
    }

    /// What to write for `line`: on a terminal, a carriage return, the line
    /// and blanks over the rest of the previous one; else the line and a
    /// newline.
    fn render(&mut self, line: &str) -> String {
        if !self.terminal {
            return format!("{line}\n");
        }
        let pad = self.last_len.saturating_sub(line.len());
        self.last_len = line.len();
        self.open_line = true;
        format!("\r{line}{:pad$}", "")
    }

    /// A warning in the middle of the progress: on its own line.
    pub fn warn(&mut self, message: &str) {
        if self.quiet {
            return;
        }
        self.end_line();
        eprintln!("loadgen: warning: {message}");
    }

    /// Ends the progress (the summary follows on its own line).
    pub fn finish(&mut self) {
        if !self.quiet {
            self.end_line();
        }
    }

    fn end_line(&mut self) {
        if self.open_line {
            eprintln!();
            self.open_line = false;
            self.last_len = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Live;
    use ringmq_net::clock::Clock;

    #[test]
    fn first_rates_are_per_second_of_traffic_not_of_connecting() {
        let plan = Plan::example(Scenario::Pub);
        let shared = Shared::new(&plan, Clock::new());
        let mut p = Progress::with_terminal(0, false, false);
        // Connecting took 0.5 s; 500 messages went out in the next second.
        p.started(500_000_000);
        Live::add(&shared.live[0].sent, 500);
        let counters = p.counters(&plan, &shared, Phase::WarmUp, 1_500_000_000);
        assert!(counters.starts_with("sent        500 msg/s"), "{counters}");
    }

    #[test]
    fn plain_output_is_one_line_per_print_without_carriage_returns() {
        let mut p = Progress::with_terminal(0, false, false);
        let a = p.render("[   1.0s] warm-up    1.0s left  sent 5");
        let b = p.render("[   2.0s] drain");
        assert_eq!(a, "[   1.0s] warm-up    1.0s left  sent 5\n");
        assert_eq!(b, "[   2.0s] drain\n");
        assert!(!p.open_line);
    }

    #[test]
    fn terminal_output_rewrites_one_line_and_blanks_leftovers() {
        let mut p = Progress::with_terminal(0, false, true);
        assert_eq!(p.render("abcdef"), "\rabcdef");
        assert_eq!(p.render("xy"), "\rxy    ");
        assert!(p.open_line);
    }

    #[test]
    fn line_names_the_phase_and_the_time_left() {
        let p = Progress::with_terminal(1_000_000_000, false, false);
        let line = p.line(
            Phase::Measuring,
            Some(7_300_000_000),
            4_000_000_000,
            "sent 1",
        );
        assert_eq!(line, "[   3.0s] measuring    7.3s left  sent 1");
        let line = p.line(Phase::Connecting, None, 1_500_000_000, "threads ready 1/2");
        assert_eq!(line, "[   0.5s] connecting              threads ready 1/2");
    }
}
