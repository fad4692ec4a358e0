//! Reloading files without a restart: SIGHUP (or `ringmq reload`, which
//! sends it) makes the main thread run every registered [`Hook`]; a hook
//! re-reads its files, and on success publishes the new value in a
//! [`Reloadable`] that the shards read through a [`Cached`] view.
//!
//! ```text
//!   main thread (SIGHUP)                     shard threads
//!   Hooks::run_all ──hook.reload()──▶ Reloadable<T>::store(new)
//!                                       (generation += 1)
//!                                            │
//!                              Cached<T>::get(): one atomic load; on a new
//!                              generation, clone the Arc once (read lock)
//! ```
//!
//! Why this shape:
//! - Files are read and parsed on the main thread, never on a shard, so a
//!   slow disk or a large file cannot stall a shard's connections.
//! - A refused reload (a file missing or invalid) stores nothing: the old
//!   value stays in force, and the hook says why in the log.
//! - A shard pays one relaxed atomic load per use while nothing changed;
//!   the lock is taken only once per shard per reload. New values apply to
//!   what is decided after the reload (new connections, for certificates);
//!   what was decided before keeps its `Arc` (an established TLS session
//!   keeps the certificate it was made with).
//!
//! Adding a reloadable file (passwords, ACLs): keep its parsed form in a
//! `Reloadable<T>`, give each shard a `Cached<T>`, and register a hook in
//! `server::serve` that re-reads the file and calls `store`, returning
//! [`Outcome::Changed`], [`Outcome::Unchanged`] or [`Outcome::Refused`].

use std::cell::{Cell, RefCell};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

/// A value shared by all shards and replaced as a whole by a reload.
pub struct Reloadable<T> {
    /// Bumped after each `store`; shards compare it with what they saw.
    generation: AtomicU64,
    value: RwLock<Arc<T>>,
}

impl<T> Reloadable<T> {
    /// A value loaded at start-up (generation 0).
    pub fn new(value: T) -> Arc<Reloadable<T>> {
        Arc::new(Reloadable {
            generation: AtomicU64::new(0),
            value: RwLock::new(Arc::new(value)),
        })
    }

    /// Replaces the value; shards see it at their next [`Cached::get`].
    pub fn store(&self, value: T) {
        let value = Arc::new(value);
        match self.value.write() {
            Ok(mut slot) => *slot = value,
            // A panic while holding the lock cannot leave an `Arc` half
            // written: the slot is still valid, so take it over.
            Err(poisoned) => *poisoned.into_inner() = value,
        }
        // Release: a shard that sees the new generation sees the new value.
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// The current value.
    pub fn load(&self) -> Arc<T> {
        match self.value.read() {
            Ok(slot) => slot.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// How many times the value was replaced.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }
}

/// One shard's view of a [`Reloadable`]: `!Sync`, cheap while unchanged.
pub struct Cached<T> {
    shared: Arc<Reloadable<T>>,
    seen: Cell<u64>,
    value: RefCell<Arc<T>>,
}

impl<T> Cached<T> {
    /// A view that starts with the current value.
    pub fn new(shared: Arc<Reloadable<T>>) -> Cached<T> {
        let seen = shared.generation();
        let value = shared.load();
        Cached {
            shared,
            seen: Cell::new(seen),
            value: RefCell::new(value),
        }
    }

    /// The current value: one atomic load, plus one lock and `Arc` clone
    /// after a reload.
    pub fn get(&self) -> Arc<T> {
        let generation = self.shared.generation();
        if generation != self.seen.get() {
            *self.value.borrow_mut() = self.shared.load();
            self.seen.set(generation);
        }
        self.value.borrow().clone()
    }
}

/// What one hook did on a reload; logged by [`Hooks::run_all`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The files are as they were; nothing was stored.
    Unchanged,
    /// A new value was stored; the text says what changed.
    Changed(String),
    /// The new files were refused (the old value stays); the text says why.
    Refused(String),
}

type HookFn = Box<dyn FnMut() -> Outcome + Send>;

/// The reload hooks, run in registration order on the main thread.
#[derive(Default)]
pub struct Hooks {
    hooks: Vec<(String, HookFn)>,
}

impl Hooks {
    pub fn new() -> Hooks {
        Hooks::default()
    }

    /// Registers `hook` under `name` (used in its log lines, e.g.
    /// "tls listener 127.0.0.1:8883").
    pub fn register(
        &mut self,
        name: impl Into<String>,
        hook: impl FnMut() -> Outcome + Send + 'static,
    ) {
        self.hooks.push((name.into(), Box::new(hook)));
    }

    /// Runs every hook and logs one line each; returns the outcomes.
    pub fn run_all(&mut self) -> Vec<Outcome> {
        if self.hooks.is_empty() {
            tracing::info!("reload requested: nothing to reload (no TLS listener or reloadable file configured)");
        }
        let mut outcomes = Vec::with_capacity(self.hooks.len());
        for (name, hook) in &mut self.hooks {
            let outcome = hook();
            match &outcome {
                Outcome::Unchanged => tracing::info!(what = %name, "reload: unchanged"),
                Outcome::Changed(how) => {
                    tracing::info!(what = %name, "reload: applied to new connections: {how}")
                }
                Outcome::Refused(why) => {
                    tracing::warn!(what = %name, "reload refused, keeping the previous files: {why}")
                }
            }
            outcomes.push(outcome);
        }
        outcomes
    }
}

/// `ringmq reload`: reads the running broker's pid file and sends it
/// SIGHUP. Exit 0 when the signal was sent (the broker's log says what was
/// reloaded), 1 when it could not be, 2 on a configuration error.
/// `config` and `pid_file` are `--config` and `--pid-file`.
pub fn send(config: Option<&Path>, pid_file: Option<&Path>) -> ExitCode {
    let pid_file = match pid_file {
        Some(p) => p.to_path_buf(),
        None => {
            let config =
                match crate::config::Config::load(config, &crate::config::Overrides::default()) {
                    Ok(c) => c,
                    Err(e) => {
                        eprintln!("ringmq: {e}");
                        return ExitCode::from(2);
                    }
                };
            if config.runtime.pid_file.is_empty() {
                eprintln!(
                    "ringmq: reload: no pid file: set `runtime.pid_file` in the configuration \
                     (and pass it with --config), or pass --pid-file; or send SIGHUP yourself \
                     (`kill -HUP <pid>`)"
                );
                return ExitCode::from(2);
            }
            PathBuf::from(&config.runtime.pid_file)
        }
    };
    match signal_pid_file(&pid_file) {
        Ok(pid) => {
            println!(
                "sent SIGHUP to ringmq (pid {pid}); its log says what was reloaded or refused"
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ringmq: reload: {e}");
            ExitCode::FAILURE
        }
    }
}

fn signal_pid_file(path: &Path) -> Result<i32, String> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        format!(
            "cannot read pid file {}: {e} (is ringmq running?)",
            path.display()
        )
    })?;
    let pid: i32 = text.trim().parse().map_err(|_| {
        format!(
            "pid file {} does not hold a process id: {:?}",
            path.display(),
            text.trim()
        )
    })?;
    ringmq_net::os::signal_process(pid, libc::SIGHUP).map_err(|e| {
        format!(
            "cannot signal pid {pid} from {}: {e} (a stale pid file?)",
            path.display()
        )
    })?;
    Ok(pid)
}

/// The pid file of a running broker: written at start-up, removed when
/// dropped (at exit).
pub struct PidFile {
    path: PathBuf,
}

impl PidFile {
    /// Writes this process's id to `path`.
    pub fn write(path: &Path) -> Result<PidFile, String> {
        std::fs::write(path, format!("{}\n", std::process::id()))
            .map_err(|e| format!("cannot write pid file {}: {e}", path.display()))?;
        Ok(PidFile {
            path: path.to_path_buf(),
        })
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_file(&self.path) {
            tracing::warn!(path = %self.path.display(), error = %e, "cannot remove the pid file");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cached_view_follows_stores() {
        let shared = Reloadable::new(1u32);
        let view = Cached::new(shared.clone());
        assert_eq!(*view.get(), 1);
        shared.store(2);
        assert_eq!(shared.generation(), 1);
        assert_eq!(*view.get(), 2);
        assert_eq!(*view.get(), 2);
    }

    #[test]
    fn a_refused_reload_keeps_the_value_and_later_hooks_still_run() {
        let shared = Reloadable::new(String::from("old"));
        let mut hooks = Hooks::new();
        hooks.register("bad", || Outcome::Refused("no such file".into()));
        let target = shared.clone();
        hooks.register("good", move || {
            target.store("new".into());
            Outcome::Changed("new".into())
        });
        let view = Cached::new(shared.clone());
        let outcomes = hooks.run_all();
        assert_eq!(
            outcomes,
            vec![
                Outcome::Refused("no such file".into()),
                Outcome::Changed("new".into())
            ]
        );
        assert_eq!(*view.get(), "new");
    }
}
