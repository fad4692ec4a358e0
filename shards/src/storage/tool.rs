//! `ringmq storage inspect|compact|export`: what a data directory holds,
//! for operators. Opens the store the way the broker does (so it refuses a
//! directory a running broker holds) and never changes a record.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::cli::{StorageArgs, StorageCommand};
use crate::config::{Config, Overrides};

use super::db::Store;
use super::record::{self, client_id_of, show_key};
use super::recover::scan;
use ringmq_engine::persist::Keyspace;

/// Per client id: what is stored for it.
#[derive(Default)]
struct ClientRow {
    session_bytes: Option<u64>,
    messages: u64,
    message_bytes: u64,
    inbound_qos2: u64,
}

/// The text `inspect` prints: counts and sizes per keyspace, then each
/// session (client id, queued messages, inbound QoS 2 ids, bytes) and
/// each retained topic, at most `limit` rows of each.
pub fn inspect(dir: &Path, limit: usize) -> Result<String, String> {
    let store = Store::open(dir)?;
    let mut clients: BTreeMap<Vec<u8>, ClientRow> = BTreeMap::new();
    let mut retained: Vec<(Vec<u8>, u64)> = Vec::new();
    let mut counts: BTreeMap<&'static str, (u64, u64, u64)> = BTreeMap::new();
    let mut damaged: Vec<String> = Vec::new();
    scan(&store, |space, key, stored| {
        let c = counts.entry(space.name()).or_default();
        c.0 += 1;
        c.1 += (key.len() + stored.len()) as u64;
        if let Err(e) = record::open(space.name(), key, stored) {
            c.2 += 1;
            damaged.push(e.to_string());
            return;
        }
        let bytes = (key.len() + stored.len()) as u64;
        if space == Keyspace::Retained {
            retained.push((key.to_vec(), bytes));
            return;
        }
        let Some(id) = client_id_of(key) else {
            c.2 += 1;
            damaged.push(format!(
                "damaged record in keyspace {} at key {}: no client id",
                space.name(),
                show_key(key)
            ));
            return;
        };
        let row = clients.entry(id.to_vec()).or_default();
        match space {
            Keyspace::Sessions => row.session_bytes = Some(bytes),
            Keyspace::Messages => {
                row.messages += 1;
                row.message_bytes += bytes;
            }
            Keyspace::InboundQos2 => row.inbound_qos2 += 1,
            Keyspace::Retained => {}
        }
    })?;
    let mut out = String::new();
    out.push_str(&format!(
        "data_dir {}\nformat version {}, last shard count {}, {} bytes on disk\n\n",
        dir.display(),
        super::db::FORMAT_VERSION,
        store
            .shard_count()?
            .map_or("(none recorded)".into(), |n| n.to_string()),
        store.disk_bytes()
    ));
    out.push_str("keyspace       records        bytes  damaged\n");
    for space in Keyspace::ALL {
        let (n, b, d) = counts.get(space.name()).copied().unwrap_or_default();
        out.push_str(&format!(
            "{:<12} {:>9} {:>12} {:>8}\n",
            space.name(),
            n,
            b,
            d
        ));
    }
    let sessions = clients
        .values()
        .filter(|r| r.session_bytes.is_some())
        .count();
    out.push_str(&format!(
        "\nsessions: {sessions} (client id, queued/in-flight messages, inbound QoS 2 ids, bytes)\n"
    ));
    for (id, row) in clients.iter().take(limit) {
        let bytes = row.session_bytes.unwrap_or(0) + row.message_bytes;
        let note = if row.session_bytes.is_none() {
            "  (no session record)"
        } else {
            ""
        };
        out.push_str(&format!(
            "  {}  {} messages  {} inbound_qos2  {} bytes{note}\n",
            show_key(id),
            row.messages,
            row.inbound_qos2,
            bytes
        ));
    }
    if clients.len() > limit {
        out.push_str(&format!("  ... {} more (--limit)\n", clients.len() - limit));
    }
    out.push_str(&format!(
        "\nretained messages: {} (topic, bytes)\n",
        retained.len()
    ));
    for (topic, bytes) in retained.iter().take(limit) {
        out.push_str(&format!("  {}  {} bytes\n", show_key(topic), bytes));
    }
    if retained.len() > limit {
        out.push_str(&format!(
            "  ... {} more (--limit)\n",
            retained.len() - limit
        ));
    }
    if !damaged.is_empty() {
        out.push_str(&format!("\ndamaged records: {}\n", damaged.len()));
        for d in damaged.iter().take(limit) {
            out.push_str(&format!("  {d}\n"));
        }
    }
    Ok(out)
}

/// Compacts every partition; returns the disk bytes before and after.
pub fn compact(dir: &Path) -> Result<(u64, u64), String> {
    let store = Store::open(dir)?;
    let before = store.disk_bytes();
    store
        .compact()
        .map_err(|e| format!("compaction of {} failed: {e}", dir.display()))?;
    store
        .sync()
        .map_err(|e| format!("cannot sync {}: {e}", dir.display()))?;
    Ok((before, store.disk_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes every record as one JSON object per line: `keyspace`, `key`
/// (hex), `client_id` or `topic` (text, where the key holds one), `value`
/// (hex, the engine's encoding) and `bytes`; a damaged record has
/// `damaged` (what was wrong) instead of `value`. Returns the lines written.
pub fn export(dir: &Path, out: &mut dyn Write) -> Result<u64, String> {
    let store = Store::open(dir)?;
    let mut lines = 0u64;
    let mut failed: Option<std::io::Error> = None;
    scan(&store, |space, key, stored| {
        if failed.is_some() {
            return;
        }
        let mut obj = serde_json::Map::new();
        obj.insert("keyspace".into(), space.name().into());
        obj.insert("key".into(), hex(key).into());
        match space {
            Keyspace::Retained => {
                obj.insert("topic".into(), String::from_utf8_lossy(key).into());
            }
            _ => {
                if let Some(id) = client_id_of(key) {
                    obj.insert("client_id".into(), String::from_utf8_lossy(id).into());
                }
            }
        }
        match record::open(space.name(), key, stored) {
            Ok(value) => {
                obj.insert("value".into(), hex(value).into());
                obj.insert("bytes".into(), value.len().into());
            }
            Err(e) => {
                obj.insert("damaged".into(), e.problem.into());
            }
        }
        let line = serde_json::Value::Object(obj).to_string();
        match writeln!(out, "{line}") {
            Ok(()) => lines += 1,
            Err(e) => failed = Some(e),
        }
    })?;
    match failed {
        Some(e) => Err(format!("cannot write the export: {e}")),
        None => Ok(lines),
    }
}

/// `ringmq storage ...`: runs one subcommand, prints its result.
pub fn run(args: &StorageArgs) -> ExitCode {
    let dir = match &args.data_dir {
        Some(dir) => dir.clone(),
        None => match Config::load(args.config.as_deref(), &Overrides::default()) {
            Ok(c) => PathBuf::from(c.storage.data_dir),
            Err(e) => {
                eprintln!("ringmq storage: {e}");
                return ExitCode::from(2);
            }
        },
    };
    if !dir.is_dir() {
        eprintln!(
            "ringmq storage: {} is not a directory (--data-dir DIR or -c FILE with storage.data_dir)",
            dir.display()
        );
        return ExitCode::FAILURE;
    }
    let done = match &args.command {
        StorageCommand::Inspect { limit } => inspect(&dir, *limit).map(|text| print!("{text}")),
        StorageCommand::Compact => compact(&dir).map(|(before, after)| {
            println!(
                "compacted {}: {before} bytes on disk before, {after} after",
                dir.display()
            )
        }),
        StorageCommand::Export { output } => {
            let written = match output {
                Some(path) => std::fs::File::create(path)
                    .map_err(|e| format!("cannot create {}: {e}", path.display()))
                    .and_then(|f| {
                        let mut w = std::io::BufWriter::new(f);
                        let n = export(&dir, &mut w)?;
                        w.flush()
                            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
                        Ok(n)
                    }),
                None => export(&dir, &mut std::io::stdout().lock()),
            };
            written.map(|n| eprintln!("ringmq storage: exported {n} records"))
        }
    };
    match done {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ringmq storage: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
// A failed unwrap in a test is that test failing.
#[allow(clippy::unwrap_used)]
mod tests;
