use super::*;
use crate::storage::db::Write as StoreWrite;

fn client_key(id: &str, tail: &[u8]) -> Vec<u8> {
    let mut k = (id.len() as u16).to_be_bytes().to_vec();
    k.extend_from_slice(id.as_bytes());
    k.extend_from_slice(tail);
    k
}

/// Two sessions (one with two queued messages and an inbound QoS 2 id),
/// two retained messages, one damaged retained record.
fn filled(name: &str) -> std::path::PathBuf {
    let dir = crate::storage::scratch_dir(name);
    let store = Store::open(&dir).unwrap();
    let s1 = client_key("dev-1", &[]);
    let s2 = client_key("dev-2", &[]);
    let m1 = client_key("dev-1", &1u64.to_be_bytes());
    let m2 = client_key("dev-1", &2u64.to_be_bytes());
    let q = client_key("dev-1", &7u16.to_be_bytes());
    let writes: Vec<StoreWrite> = vec![
        (Keyspace::Sessions, &s1, Some(b"S1")),
        (Keyspace::Sessions, &s2, Some(b"S2")),
        (Keyspace::Messages, &m1, Some(b"M1")),
        (Keyspace::Messages, &m2, Some(b"M2")),
        (Keyspace::InboundQos2, &q, Some(b"Q")),
        (Keyspace::Retained, b"home/temp", Some(b"21.5")),
        (Keyspace::Retained, b"home/hum", Some(b"40")),
    ];
    store.write(writes.into_iter()).unwrap();
    store
        .part(Keyspace::Retained)
        .insert(b"home/bad", b"\x00\x00\x00\x00junk".to_vec())
        .unwrap();
    store.sync().unwrap();
    dir
}

#[test]
fn inspect_lists_sessions_retained_counts_and_damage() {
    let dir = filled("inspect");
    let text = inspect(&dir, 50).unwrap();
    assert!(text.contains("sessions: 2"), "{text}");
    assert!(text.contains("dev-1  2 messages  1 inbound_qos2"), "{text}");
    assert!(text.contains("dev-2  0 messages  0 inbound_qos2"), "{text}");
    assert!(text.contains("retained messages: 2"), "{text}");
    assert!(text.contains("home/temp"), "{text}");
    assert!(text.contains("damaged records: 1"), "{text}");
    assert!(text.contains("keyspace retained at key home/bad"), "{text}");
    let limited = inspect(&dir, 1).unwrap();
    assert!(limited.contains("... 1 more (--limit)"), "{limited}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn export_writes_one_json_object_per_record() {
    let dir = filled("export");
    let mut out = Vec::new();
    let lines = export(&dir, &mut out).unwrap();
    assert_eq!(lines, 8);
    let text = String::from_utf8(out).unwrap();
    let rows: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let temp = rows.iter().find(|r| r["topic"] == "home/temp").unwrap();
    assert_eq!(temp["keyspace"], "retained");
    assert_eq!(temp["value"], "32312e35"); // "21.5"
    assert_eq!(temp["bytes"], 4);
    let msgs = rows
        .iter()
        .filter(|r| r["keyspace"] == "messages" && r["client_id"] == "dev-1")
        .count();
    assert_eq!(msgs, 2);
    let bad = rows.iter().find(|r| r["topic"] == "home/bad").unwrap();
    assert!(
        bad["damaged"].as_str().unwrap().contains("checksum"),
        "{bad}"
    );
    assert!(bad.get("value").is_none());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn compact_keeps_every_record_and_reports_sizes() {
    let dir = filled("compact");
    let (before, after) = compact(&dir).unwrap();
    assert!(before > 0 && after > 0, "{before} {after}");
    let mut out = Vec::new();
    assert_eq!(export(&dir, &mut out).unwrap(), 8);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn tools_refuse_a_directory_in_use() {
    let dir = filled("busy");
    let held = Store::open(&dir).unwrap();
    let e = inspect(&dir, 10).unwrap_err();
    assert!(e.contains("in use by another process"), "{e}");
    drop(held);
    std::fs::remove_dir_all(&dir).unwrap();
}
