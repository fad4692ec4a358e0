//! Damaged storage, from the outside: records of a stopped broker's store
//! are damaged the way a bad disk or a torn write would (a flipped byte,
//! a value cut short, garbage after the journal's last batch), then
//! `ringmq storage inspect` and a restart must report each damaged record
//! with its keyspace and key, skip it, and load everything else.

use std::path::{Path, PathBuf};
use std::time::Duration;

use ringmq_tests::packet::{connect_v311, publish_v311, subscribe_v311};
use ringmq_tests::{binary, disk_storage_config, run_to_exit, Broker, RawClient};

fn bin() -> PathBuf {
    binary(env!("CARGO_BIN_EXE_ringmq"))
}

/// The checksum the broker puts in front of every value (record.rs).
fn seal(space: &str, key: &[u8], value: &[u8]) -> Vec<u8> {
    let mut h = crc32fast::Hasher::new();
    h.update(space.as_bytes());
    h.update(&[0]);
    h.update(key);
    h.update(value);
    let mut out = h.finalize().to_le_bytes().to_vec();
    out.extend_from_slice(value);
    out
}

/// Damages the stored messages of a stopped broker: the second one gets a
/// flipped byte (its checksum fails), the third is cut short and sealed
/// again (its checksum passes, the engine cannot decode it).
fn damage_messages(data: &Path) {
    let keyspace = fjall::Config::new(data.join("store"))
        .open()
        .unwrap_or_else(|e| panic!("{e}"));
    let part = keyspace
        .open_partition("messages", fjall::PartitionCreateOptions::default())
        .unwrap_or_else(|e| panic!("{e}"));
    let records: Vec<(Vec<u8>, Vec<u8>)> = part
        .iter()
        .map(|kv| {
            let (k, v) = kv.unwrap_or_else(|e| panic!("{e}"));
            (k.to_vec(), v.to_vec())
        })
        .collect();
    assert_eq!(records.len(), 3, "three queued messages stored");
    let (k2, mut v2) = records[1].clone();
    let last = v2.len() - 1;
    v2[last] ^= 0xff;
    part.insert(&k2, v2).unwrap_or_else(|e| panic!("{e}"));
    let (k3, v3) = records[2].clone();
    let torn = &v3[4..v3.len() - 3];
    part.insert(&k3, seal("messages", &k3, torn))
        .unwrap_or_else(|e| panic!("{e}"));
    keyspace
        .persist(fjall::PersistMode::SyncAll)
        .unwrap_or_else(|e| panic!("{e}"));
}

/// Appends garbage to the newest journal file: a batch torn by a crash.
fn tear_journal(data: &Path) {
    use std::io::Write;
    let dir = data.join("store").join("journals");
    let newest = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .max_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
        .unwrap_or_else(|| panic!("no journal file in {}", dir.display()));
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&newest)
        .unwrap_or_else(|e| panic!("{e}"));
    f.write_all(&[0x5a; 37]).unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn damaged_records_are_reported_with_their_location_and_the_rest_loads() {
    let dir = std::env::temp_dir().join(format!("ringmq-storage-damage-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    let data = dir.join("data");
    let cfg = disk_storage_config(&dir, &data, "");
    let cfg = cfg.to_str().unwrap_or_default();
    let data_arg = data.to_str().unwrap_or_default();

    let broker = Broker::start(&bin(), &["-c", cfg]);
    RawClient::park_subscriber(broker.addr(), "keeper", "q/#");
    let mut p = RawClient::connect(broker.addr());
    p.send(&connect_v311("writer", true, 60));
    p.expect(&[0x20, 0x02, 0x00, 0x00]);
    for (i, m) in [&b"m1"[..], b"m2", b"m3"].into_iter().enumerate() {
        let pid = i as u16 + 1;
        p.send(&publish_v311("q/a", m, 1, pid, false));
        p.expect(&[0x40, 0x02, 0x00, pid as u8]);
    }
    p.send(&publish_v311("kept", b"r1", 1, 9, true));
    p.expect(&[0x40, 0x02, 0x00, 0x09]);
    drop(p);
    let (status, _) = broker.stop();
    assert!(status.success());

    damage_messages(&data);
    tear_journal(&data);

    let (status, out, stderr) = run_to_exit(
        &bin(),
        &["storage", "inspect", "--data-dir", data_arg],
        Duration::from_secs(20),
    );
    assert!(status.success(), "{stderr}");
    assert!(out.contains("damaged records: 1"), "{out}");
    assert!(out.contains("keyspace messages at key"), "{out}");
    assert!(out.contains("checksum"), "{out}");
    // The resealed short value passes the checksum: counted, refused later
    // by the engine at start-up.
    assert!(out.contains("keeper  2 messages"), "{out}");
    assert!(out.contains("retained messages: 1"), "{out}");

    // The broker starts, names both records, and loads the rest.
    let broker = Broker::start(&bin(), &["-c", cfg]);
    let log = broker.log();
    assert!(log.contains("damaged record in keyspace messages"), "{log}");
    assert!(log.contains("stored record refused by the engine"), "{log}");
    assert!(log.contains("keeper"), "the key is shown: {log}");
    let mut sub = RawClient::connect(broker.addr());
    sub.send(&connect_v311("keeper", false, 60));
    sub.expect(&[0x20, 0x02, 0x01, 0x00]);
    let first = sub.read_packet();
    assert!(
        first[0] & 0xf0 == 0x30 && first.ends_with(b"m1"),
        "{first:02x?}"
    );
    let pid = first.len() - 2 - 2;
    sub.send(&[0x40, 0x02, first[pid], first[pid + 1]]);
    sub.expect_silence(Duration::from_millis(500));
    let mut fresh = RawClient::connect(broker.addr());
    fresh.send(&connect_v311("fresh", true, 60));
    fresh.expect(&[0x20, 0x02, 0x00, 0x00]);
    fresh.send(&subscribe_v311(1, "kept", 0));
    fresh.expect(&[0x90, 0x03, 0x00, 0x01, 0x00]);
    let retained = fresh.read_packet();
    assert!(
        retained[0] == 0x31 && retained.ends_with(b"r1"),
        "{retained:02x?}"
    );
    drop((sub, fresh));
    let (status, _) = broker.stop();
    assert!(status.success());
    std::fs::remove_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
}
