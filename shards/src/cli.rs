//! Command line: `ringmq [serve] [--config FILE] [--listen ADDR:PORT]...
//! [--port PORT] [--shards N] [--io auto|native|uring|epoll] [--log-level FILTER]
//! [-v]`. `serve` is the default subcommand: `ringmq --shards 2` serves too.
//! Mosquitto's habits work: `-c FILE`, `-p PORT`, `-v`; `--version` (`-V`)
//! on the binary and on every subcommand.
//! The other subcommands' flags are here too (`acl`, `reload`, ...); what
//! they do is in their own modules.

use std::path::PathBuf;

use clap::{ArgGroup, Args, Parser, Subcommand};
use ringmq_engine::acl::Scope;

use crate::config::{IoMode, Overrides};

/// ringmq: an MQTT 3.1.1 / 5.0 broker, one shard per core.
#[derive(Debug, Parser)]
#[command(
    name = "ringmq",
    version,
    about,
    propagate_version = true,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub serve: ServeArgs,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the broker (the default).
    Serve(ServeArgs),
    /// Print the built-in default configuration (config/ringmq.toml).
    DefaultConfig,
    /// Load and validate the configuration, print the effective values, exit.
    CheckConfig(ServeArgs),
    /// Edit or query an ACL file: add, remove, list, check.
    Acl(AclArgs),
    /// Make the running broker reload its certificates and other reloadable
    /// files: sends SIGHUP to the pid in `runtime.pid_file` (or --pid-file).
    Reload(ReloadArgs),
    /// Add, change or delete a user of a password file (argon2id), like
    /// mosquitto_passwd.
    Passwd(PasswdArgs),
    /// Look into a data directory (`storage = "disk"`): inspect, compact,
    /// export. Refused while a broker runs on it.
    Storage(StorageArgs),
}

/// Options of `ringmq storage`.
#[derive(Debug, Clone, Args)]
pub struct StorageArgs {
    #[command(subcommand)]
    pub command: StorageCommand,
    /// The data directory (wins over the configuration's `storage.data_dir`).
    #[arg(long, global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Configuration file whose `storage.data_dir` to use.
    #[arg(long, short = 'c', global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// The `storage` subcommands. Exit codes: 0 success, 1 the directory
/// cannot be opened or read, 2 a configuration error.
#[derive(Debug, Clone, Subcommand)]
pub enum StorageCommand {
    /// Counts and sizes per keyspace, the stored sessions (client id,
    /// queued messages, bytes) and retained topics, damaged records.
    Inspect {
        /// Most sessions, retained topics and damaged records listed.
        #[arg(long, default_value_t = 50, value_name = "N")]
        limit: usize,
    },
    /// Rewrite the store without deleted and overwritten records.
    Compact,
    /// Every record as one JSON object per line (values in hex).
    Export {
        /// Write to FILE instead of standard output.
        #[arg(long, short = 'o', value_name = "FILE")]
        output: Option<PathBuf>,
    },
}

/// Options of `reload`.
#[derive(Debug, Clone, Default, Args)]
pub struct ReloadArgs {
    /// The broker's configuration file, to find `runtime.pid_file`.
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The pid file the broker wrote (wins over the configuration's).
    #[arg(long, value_name = "FILE")]
    pub pid_file: Option<PathBuf>,
}

/// Options of `ringmq passwd`.
#[derive(Debug, Clone, Args)]
pub struct PasswdArgs {
    /// Create the file, replacing any existing one.
    #[arg(short = 'c', long = "create", conflicts_with = "delete")]
    pub create: bool,
    /// Delete USER from the file.
    #[arg(short = 'D', long = "delete", conflicts_with_all = ["batch", "password_stdin", "scram"])]
    pub delete: bool,
    /// Batch mode: the password is the third argument (visible to other
    /// users of this machine in the process list; prefer --password-stdin).
    #[arg(short = 'b', long = "batch", conflicts_with = "password_stdin")]
    pub batch: bool,
    /// Read the password from standard input (first line, without its newline).
    #[arg(long)]
    pub password_stdin: bool,
    /// Also store SCRAM-SHA-256 credentials (MQTT 5 enhanced authentication).
    #[arg(long)]
    pub scram: bool,
    /// The password file.
    pub file: PathBuf,
    /// The user name.
    pub user: String,
    /// The password (with -b only).
    pub password: Option<String>,
}

/// Options of `serve` (and of `check-config`).
#[derive(Debug, Clone, Default, Args)]
pub struct ServeArgs {
    /// Configuration file (TOML); keys it omits keep their built-in defaults.
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address to listen on, IP:PORT (repeatable, or comma-separated);
    /// replaces the `[[listener]]` list with plain-TCP listeners. Default:
    /// 127.0.0.1:1883.
    #[arg(long, short = 'l', value_name = "ADDR:PORT", value_delimiter = ',')]
    pub listen: Vec<String>,
    /// Port to listen on, as Mosquitto's `-p`: one plain-TCP listener on
    /// 127.0.0.1:PORT (loopback, like Mosquitto's local-only mode; use
    /// --listen for other addresses). Replaces the `[[listener]]` list.
    #[arg(long, short = 'p', value_name = "PORT", conflicts_with = "listen")]
    pub port: Option<u16>,
    /// Number of shards (threads, one per core); 0 = one per CPU.
    #[arg(long, value_name = "N")]
    pub shards: Option<u16>,
    /// I/O backend: auto (the native io_uring loop, else monoio on
    /// io_uring, else epoll), native, uring or epoll (monoio).
    #[arg(long, value_enum, value_name = "DRIVER")]
    pub io: Option<IoMode>,
    /// Log filter: error, warn, info, debug, trace, or a tracing filter.
    /// Wins over RUST_LOG and `runtime.log_level`.
    #[arg(long, value_name = "FILTER")]
    pub log_level: Option<String>,
    /// Verbose, as Mosquitto's `-v`: log at debug (`-vv`: trace).
    /// --log-level wins.
    #[arg(short = 'v', long = "verbose", action = clap::ArgAction::Count)]
    pub verbose: u8,
}

impl ServeArgs {
    /// The values that override the configuration files.
    pub fn overrides(&self) -> Overrides {
        let mut listen = self.listen.clone();
        if let Some(port) = self.port {
            listen = vec![format!("127.0.0.1:{port}")];
        }
        Overrides {
            listen,
            shards: self.shards,
            io: self.io,
            log_level: self.log_level(),
        }
    }

    /// `--log-level`, else the level `-v` / `-vv` asks for.
    pub fn log_level(&self) -> Option<String> {
        match (&self.log_level, self.verbose) {
            (Some(level), _) => Some(level.clone()),
            (None, 0) => None,
            (None, 1) => Some("debug".to_string()),
            (None, _) => Some("trace".to_string()),
        }
    }
}

/// `ringmq acl ...`: edit or query an ACL file.
#[derive(Debug, Args)]
pub struct AclArgs {
    #[command(subcommand)]
    pub command: AclCommand,
}

/// Which section a rule belongs to. None of the flags: the anonymous rules
/// (`topic` lines before the first `user` / `client` line).
#[derive(Debug, Clone, Default, Args)]
#[command(group(ArgGroup::new("scope").args(["user", "client", "pattern"])))]
pub struct ScopeArgs {
    /// The `user NAME` section.
    #[arg(long, value_name = "NAME")]
    pub user: Option<String>,
    /// The `client ID` section.
    #[arg(long, value_name = "ID")]
    pub client: Option<String>,
    /// A `pattern` rule (every client; `%u` / `%c` substituted).
    #[arg(long)]
    pub pattern: bool,
}

impl ScopeArgs {
    /// The ACL file section these flags name.
    pub fn scope(&self) -> Scope {
        match (&self.user, &self.client, self.pattern) {
            (Some(u), _, _) => Scope::User(u.clone()),
            (_, Some(c), _) => Scope::Client(c.clone()),
            (_, _, true) => Scope::Pattern,
            _ => Scope::Anonymous,
        }
    }
}

/// The `acl` subcommands. Exit codes: 0 success (for `check`: allowed),
/// 1 `check` denied, 2 a usage error or a file that cannot be read,
/// parsed or changed as asked.
#[derive(Debug, Subcommand)]
pub enum AclCommand {
    /// Add a rule (creates the file and the section if needed).
    Add {
        file: PathBuf,
        #[command(flatten)]
        scope: ScopeArgs,
        /// read, write, readwrite, subscribe or deny.
        access: String,
        /// MQTT topic filter (`+` and `#` allowed; `%u` / `%c` in patterns).
        filter: String,
    },
    /// Remove a rule (every line equal to it in that section).
    Remove {
        file: PathBuf,
        #[command(flatten)]
        scope: ScopeArgs,
        access: String,
        filter: String,
    },
    /// List the rules with their line numbers (all, or one section).
    List {
        file: PathBuf,
        #[command(flatten)]
        scope: ScopeArgs,
        /// Only the anonymous rules.
        #[arg(long, conflicts_with = "scope")]
        anonymous: bool,
    },
    /// May this client do this? Prints the deciding rule and its line.
    Check {
        file: PathBuf,
        /// The client's user name (none: an anonymous client).
        #[arg(long, value_name = "NAME")]
        user: Option<String>,
        /// The client's client id.
        #[arg(long, value_name = "ID", default_value = "")]
        client: String,
        /// read (receive), write (publish) or subscribe.
        action: String,
        /// A topic name (read, write) or filter (subscribe).
        topic: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("ringmq").chain(args.iter().copied()))
            .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn serve_is_the_default() {
        let cli = parse(&["--shards", "2", "--listen", "127.0.0.1:0", "--io", "epoll"]);
        assert!(cli.command.is_none());
        assert_eq!(cli.serve.shards, Some(2));
        assert_eq!(cli.serve.io, Some(IoMode::Epoll));
        assert_eq!(cli.serve.listen, vec!["127.0.0.1:0"]);
    }

    #[test]
    fn listen_is_repeatable_and_splits_commas() {
        let cli = parse(&[
            "serve",
            "--listen",
            "127.0.0.1:1",
            "--listen",
            "127.0.0.1:2,[::1]:3",
        ]);
        let Some(Command::Serve(args)) = cli.command else {
            panic!("serve")
        };
        assert_eq!(args.listen, vec!["127.0.0.1:1", "127.0.0.1:2", "[::1]:3"]);
    }

    #[test]
    fn mosquitto_short_forms_are_accepted() {
        let cli = parse(&["-c", "/etc/ringmq.toml", "-p", "1884", "-v"]);
        let o = cli.serve.overrides();
        assert_eq!(o.listen, vec!["127.0.0.1:1884"]);
        assert_eq!(o.log_level.as_deref(), Some("debug"));
        let cli = parse(&["serve", "-vv"]);
        let Some(Command::Serve(args)) = cli.command else {
            panic!("serve")
        };
        assert_eq!(args.overrides().log_level.as_deref(), Some("trace"));
        let cli = parse(&["-v", "--log-level", "warn"]);
        assert_eq!(cli.serve.overrides().log_level.as_deref(), Some("warn"));
        assert!(Cli::try_parse_from(["ringmq", "-p", "1", "--listen", "127.0.0.1:2"]).is_err());
    }

    #[test]
    fn bad_io_value_is_refused() {
        assert!(Cli::try_parse_from(["ringmq", "--io", "kqueue"]).is_err());
    }
}
