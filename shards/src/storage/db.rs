//! The store under `storage.data_dir`: a fjall keyspace (an LSM tree with a
//! write-ahead journal; chosen by benchmark, docs/benchmarks.md "Store
//! choice for durable storage") with one partition per engine keyspace and
//! a `meta` partition (format version, shard count), guarded by a lock file
//! so that two processes never open the same directory.
//!
//! ```text
//! data_dir/
//!   LOCK          flock(2) held while a broker or `ringmq storage` has it open
//!   store/        fjall: journals/ (write-ahead log), partitions/{sessions,
//!                 messages, inbound_qos2, retained, meta}/ (sorted segments)
//! ```

use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

use fjall::{PartitionCreateOptions, PartitionHandle, PersistMode};

use super::record;
use ringmq_engine::persist::{Keyspace, PersistFailure};

/// On-disk format this build writes and reads (docs/storage.md, Upgrading).
pub const FORMAT_VERSION: u32 = 1;
const META: &str = "meta";
const META_FORMAT: &[u8] = b"format_version";
const META_SHARDS: &[u8] = b"shard_count";
const LOCK_FILE: &str = "LOCK";
const STORE_DIR: &str = "store";

/// An open store (start-up recovery, then the writer thread).
pub struct Store {
    keyspace: fjall::Keyspace,
    parts: [PartitionHandle; 4],
    meta: PartitionHandle,
    /// The directory's lock, kept when the store is closed for a reopen.
    lock: Lock,
}

/// The lock on a data directory (`LOCK`, flock(2)): held from
/// [`Store::open`] until dropped, also while the store itself is closed
/// to be reopened after a failed write ([`Store::close`], [`Lock::open`]).
pub struct Lock {
    dir: PathBuf,
    _file: File,
    #[cfg(test)]
    faults: std::sync::Arc<Faults>,
}

/// Failures a test makes the store report (writer tests): each counter is
/// how many of the next calls fail.
#[cfg(test)]
#[derive(Debug, Default)]
pub struct Faults {
    /// `Store::write` fails with ENOSPC.
    pub writes: std::sync::atomic::AtomicU32,
    /// `Store::sync` fails with EIO.
    pub syncs: std::sync::atomic::AtomicU32,
    /// `Lock::open` fails.
    pub opens: std::sync::atomic::AtomicU32,
}

#[cfg(test)]
impl Faults {
    fn take(counter: &std::sync::atomic::AtomicU32) -> bool {
        use std::sync::atomic::Ordering;
        counter
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }
}

/// One write of a batch: `value` `None` deletes.
pub type Write<'a> = (Keyspace, &'a [u8], Option<&'a [u8]>);

fn index(space: Keyspace) -> usize {
    match space {
        Keyspace::Sessions => 0,
        Keyspace::Messages => 1,
        Keyspace::InboundQos2 => 2,
        Keyspace::Retained => 3,
    }
}

impl Lock {
    /// The locked directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Creates `dir` if needed and locks it: refused with a message naming
    /// the directory if it cannot be created or written or is in use by
    /// another process.
    pub fn acquire(dir: &Path) -> Result<Lock, String> {
        let shown = dir.display();
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create storage.data_dir {shown}: {e}"))?;
        let lock_path = dir.join(LOCK_FILE);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| {
                format!(
                    "storage.data_dir {shown} is not usable: cannot open {}: {e}",
                    lock_path.display()
                )
            })?;
        match ringmq_net::os::try_lock_exclusive(&file) {
            Ok(true) => {}
            Ok(false) => {
                return Err(format!(
                    "storage.data_dir {shown} is in use by another process (ringmq serve or \
                     ringmq storage holds {})",
                    lock_path.display()
                ))
            }
            Err(e) => return Err(format!("cannot lock {}: {e}", lock_path.display())),
        }
        Ok(Lock {
            dir: dir.to_path_buf(),
            _file: file,
            #[cfg(test)]
            faults: std::sync::Arc::default(),
        })
    }

    /// Opens the store in the locked directory (the store recovers its
    /// journal: what was written before survives, a torn tail is dropped).
    /// Refused if it holds another format version; the lock comes back
    /// with the error.
    pub fn open(self) -> Result<Store, (String, Lock)> {
        #[cfg(test)]
        if Faults::take(&self.faults.opens) {
            return Err(("injected open failure".into(), self));
        }
        let (keyspace, parts, meta) = match open_tree(&self.dir) {
            Ok(tree) => tree,
            Err(e) => return Err((e, self)),
        };
        let store = Store {
            keyspace,
            parts,
            meta,
            lock: self,
        };
        match store.check_format() {
            Ok(()) => Ok(store),
            Err(e) => Err((e, store.close())),
        }
    }
}

type Tree = (fjall::Keyspace, [PartitionHandle; 4], PartitionHandle);

fn open_tree(dir: &Path) -> Result<Tree, String> {
    let shown = dir.display();
    let keyspace = fjall::Config::new(dir.join(STORE_DIR))
        .open()
        .map_err(|e| format!("cannot open the store in storage.data_dir {shown}: {e}"))?;
    let open_part = |name: &str| {
        keyspace
            .open_partition(name, PartitionCreateOptions::default())
            .map_err(|e| format!("cannot open partition {name} in {shown}: {e}"))
    };
    let parts = [
        open_part(Keyspace::Sessions.name())?,
        open_part(Keyspace::Messages.name())?,
        open_part(Keyspace::InboundQos2.name())?,
        open_part(Keyspace::Retained.name())?,
    ];
    let meta = open_part(META)?;
    Ok((keyspace, parts, meta))
}

impl Store {
    /// Opens (creating it if needed) the store under `dir`: refused with a
    /// message naming the directory if it cannot be created or written, is
    /// in use by another process, or holds another format version.
    pub fn open(dir: &Path) -> Result<Store, String> {
        Lock::acquire(dir)?.open().map_err(|(e, _)| e)
    }

    /// Closes the store (its background threads end; nothing more is
    /// written) and keeps the directory locked. After a failed write or
    /// fsync the store refuses every further write (fjall: poisoned);
    /// closing and [`Lock::open`] start it again from what is on disk.
    pub fn close(self) -> Lock {
        let Store {
            keyspace,
            parts,
            meta,
            lock,
        } = self;
        drop(parts);
        drop(meta);
        drop(keyspace);
        lock
    }

    /// The failures this store (and its reopenings) report (tests).
    #[cfg(test)]
    pub fn faults(&self) -> std::sync::Arc<Faults> {
        self.lock.faults.clone()
    }

    fn check_format(&self) -> Result<(), String> {
        let shown = self.dir().display();
        match self.meta_value(META_FORMAT)? {
            Some(v) if v == FORMAT_VERSION.to_be_bytes() => Ok(()),
            Some(v) => {
                let found = <[u8; 4]>::try_from(v.as_slice())
                    .map(|b| u32::from_be_bytes(b).to_string())
                    .unwrap_or_else(|_| format!("{v:02x?}"));
                Err(format!(
                    "storage.data_dir {shown} holds storage format version {found}; this ringmq \
                     reads version {FORMAT_VERSION} (docs/storage.md, Upgrading)"
                ))
            }
            None => self
                .put_meta(META_FORMAT, &FORMAT_VERSION.to_be_bytes())
                .map_err(|e| format!("storage.data_dir {shown} is not writable: {e}")),
        }
    }

    /// The directory it was opened from.
    pub fn dir(&self) -> &Path {
        &self.lock.dir
    }

    /// The partition of an engine keyspace.
    pub fn part(&self, space: Keyspace) -> &PartitionHandle {
        &self.parts[index(space)]
    }

    fn meta_value(&self, key: &[u8]) -> Result<Option<Vec<u8>>, String> {
        let stored = self.meta.get(key).map_err(|e| {
            format!(
                "cannot read the meta record in {}: {e}",
                self.dir().display()
            )
        })?;
        match stored {
            None => Ok(None),
            Some(s) => record::open(META, key, &s)
                .map(|v| Some(v.to_vec()))
                .map_err(|e| format!("{} in {}", e, self.dir().display())),
        }
    }

    fn put_meta(&self, key: &[u8], value: &[u8]) -> Result<(), String> {
        self.meta
            .insert(key, record::seal(META, key, value))
            .and_then(|()| self.keyspace.persist(PersistMode::SyncAll))
            .map_err(|e| e.to_string())
    }

    /// The shard count recorded by the last broker that ran on it.
    pub fn shard_count(&self) -> Result<Option<u16>, String> {
        Ok(self
            .meta_value(META_SHARDS)?
            .and_then(|v| <[u8; 2]>::try_from(v.as_slice()).ok())
            .map(u16::from_be_bytes))
    }

    /// Records the shard count the broker runs with now.
    pub fn set_shard_count(&self, count: u16) -> Result<(), String> {
        self.put_meta(META_SHARDS, &count.to_be_bytes())
            .map_err(|e| format!("cannot write to {}: {e}", self.dir().display()))
    }

    /// Writes `writes` as one atomic batch (each value sealed with its
    /// checksum); in the OS's page cache when it returns (survives the
    /// process being killed, not yet a power loss: see [`Store::sync`]).
    pub fn write<'a>(&self, writes: impl Iterator<Item = Write<'a>>) -> Result<(), fjall::Error> {
        #[cfg(test)]
        if Faults::take(&self.lock.faults.writes) {
            return Err(fjall::Error::Io(io::Error::from_raw_os_error(libc::ENOSPC)));
        }
        let mut batch = self.keyspace.batch();
        for (space, key, value) in writes {
            let part = self.part(space);
            match value {
                Some(v) => batch.insert(part, key, record::seal(space.name(), key, v)),
                None => batch.remove(part, key),
            }
        }
        batch.commit()?;
        self.keyspace.persist(PersistMode::Buffer)
    }

    /// Makes everything written so far durable (fsync of the journal).
    pub fn sync(&self) -> Result<(), fjall::Error> {
        #[cfg(test)]
        if Faults::take(&self.lock.faults.syncs) {
            return Err(fjall::Error::Io(io::Error::from_raw_os_error(libc::EIO)));
        }
        self.keyspace.persist(PersistMode::SyncAll)
    }

    /// Bytes on disk (journals and segments).
    pub fn disk_bytes(&self) -> u64 {
        self.keyspace.disk_space()
    }

    /// Rewrites every partition into compacted segments (drops deleted and
    /// overwritten records).
    pub fn compact(&self) -> Result<(), fjall::Error> {
        for part in self.parts.iter().chain(std::iter::once(&self.meta)) {
            part.major_compact()?;
        }
        Ok(())
    }
}

/// What the engine is told about a failed write: `DiskFull` for ENOSPC /
/// EDQUOT, `Io` for everything else.
pub fn failure_of(e: &fjall::Error) -> PersistFailure {
    let io: Option<&io::Error> = match e {
        fjall::Error::Io(e) => Some(e),
        fjall::Error::Storage(fjall::LsmError::Io(e)) => Some(e),
        _ => None,
    };
    match io {
        Some(e)
            if e.kind() == io::ErrorKind::StorageFull
                || matches!(e.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT)) =>
        {
            PersistFailure::DiskFull
        }
        _ => PersistFailure::Io,
    }
}

/// Below this many free bytes (for an unprivileged user) on the store's
/// filesystem, a failed write counts as a full disk: fjall reports a
/// failed journal write as `Poisoned` and only logs the I/O error under it.
pub const DISK_FULL_BELOW_BYTES: u64 = 1 << 20;

/// What the engine is told about `e`, a failure of the store in `dir`:
/// [`failure_of`], and `DiskFull` too when the error says nothing more but
/// the filesystem has less than [`DISK_FULL_BELOW_BYTES`] free.
pub fn failure_in(e: &fjall::Error, dir: &Path) -> PersistFailure {
    match failure_of(e) {
        PersistFailure::Io
            if ringmq_net::os::free_bytes(dir).is_ok_and(|b| b < DISK_FULL_BELOW_BYTES) =>
        {
            PersistFailure::DiskFull
        }
        failure => failure,
    }
}

#[cfg(test)]
// A failed unwrap in a test is that test failing.
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn second_open_of_a_directory_is_refused_while_the_first_holds_it() {
        let dir = crate::storage::scratch_dir("lock");
        let first = Store::open(&dir).unwrap();
        let e = Store::open(&dir).err().unwrap();
        assert!(e.contains("in use by another process"), "{e}");
        drop(first);
        Store::open(&dir).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn another_format_version_is_refused_with_both_versions_named() {
        let dir = crate::storage::scratch_dir("version");
        {
            let store = Store::open(&dir).unwrap();
            store.put_meta(META_FORMAT, &99u32.to_be_bytes()).unwrap();
            store.set_shard_count(3).unwrap();
            assert_eq!(store.shard_count().unwrap(), Some(3));
        }
        let e = Store::open(&dir).err().unwrap();
        assert!(
            e.contains("format version 99") && e.contains("reads version 1"),
            "{e}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_file_where_the_directory_should_be_is_a_clear_error() {
        let file = crate::storage::scratch_dir("file");
        std::fs::write(&file, b"not a directory").unwrap();
        let e = Store::open(&file).err().unwrap();
        assert!(
            e.contains("storage.data_dir") && e.contains(&file.display().to_string()),
            "{e}"
        );
        std::fs::remove_file(&file).unwrap();
    }

    #[test]
    fn writes_survive_reopening_and_deletes_remove() {
        let dir = crate::storage::scratch_dir("reopen");
        {
            let store = Store::open(&dir).unwrap();
            let w: Vec<Write> = vec![
                (Keyspace::Retained, b"a/b", Some(b"v1")),
                (Keyspace::Retained, b"a/c", Some(b"v2")),
                (Keyspace::Retained, b"a/c", None),
            ];
            store.write(w.into_iter()).unwrap();
            store.sync().unwrap();
        }
        let store = Store::open(&dir).unwrap();
        let part = store.part(Keyspace::Retained);
        let v = part.get(b"a/b").unwrap().unwrap();
        assert_eq!(record::open("retained", b"a/b", &v), Ok(&b"v1"[..]));
        assert!(part.get(b"a/c").unwrap().is_none());
        drop(store);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn enospc_is_disk_full_and_other_errors_are_io() {
        let full = fjall::Error::Io(io::Error::from_raw_os_error(libc::ENOSPC));
        assert_eq!(failure_of(&full), PersistFailure::DiskFull);
        let other = fjall::Error::Io(io::Error::from_raw_os_error(libc::EIO));
        assert_eq!(failure_of(&other), PersistFailure::Io);
        assert_eq!(failure_of(&fjall::Error::Poisoned), PersistFailure::Io);
        // A directory with room: a bare `Poisoned` stays an I/O error.
        let dir = std::env::temp_dir();
        if ringmq_net::os::free_bytes(&dir).is_ok_and(|b| b >= DISK_FULL_BELOW_BYTES) {
            assert_eq!(
                failure_in(&fjall::Error::Poisoned, &dir),
                PersistFailure::Io
            );
        }
        assert_eq!(failure_in(&full, &dir), PersistFailure::DiskFull);
    }

    #[test]
    fn a_closed_store_reopens_with_what_was_written_and_keeps_the_lock() {
        let dir = crate::storage::scratch_dir("reopen-lock");
        let store = Store::open(&dir).unwrap();
        let w: Vec<Write> = vec![(Keyspace::Retained, b"k", Some(b"v"))];
        store.write(w.into_iter()).unwrap();
        let lock = store.close();
        let e = Store::open(&dir).err().unwrap();
        assert!(e.contains("in use by another process"), "{e}");
        let store = lock.open().map_err(|(e, _)| e).unwrap();
        let v = store.part(Keyspace::Retained).get(b"k").unwrap().unwrap();
        assert_eq!(record::open("retained", b"k", &v), Ok(&b"v"[..]));
        drop(store);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
