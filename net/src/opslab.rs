//! Giving back the pages of monoio's operation slab after a burst of
//! connections (the monoio backend on io_uring).
//!
//! monoio's io_uring driver keeps the state of every operation in flight in
//! a slab (`monoio::utils::slab`, private to monoio) made of up to 26
//! pages: page `i` holds `64 << i` entries of 32 bytes (page 8: 16,384
//! entries, 512 KiB), allocated when the slab first needs it and touched as
//! its entries are first used. An idle connection holds one operation (its
//! pending receive), so 18,500 of them filled pages 0 to 8 (about 0.5 MiB
//! resident). monoio drops a page in one place only: at every 2,048th
//! operation that ends ([`MONOIO_COMPACT_INTERVAL`]), the last page, if it
//! is empty. After a burst of connections has closed, an idle shard ends
//! far fewer than the 2,048 operations per page that would take, so the
//! pages stayed for as long as the broker stayed idle (docs/benchmarks.md,
//! "Memory given back after closes: monoio's operation slab").
//!
//! [`compact_op_slab`] makes monoio do it: once a shard drives far fewer
//! connections than at its peak ([`compaction_ops`], with the hysteresis of
//! [`shrunk_capacity`]), the memory release task runs operations that end
//! at once (zero-byte reads of a pipe whose write end is closed,
//! [`CHURN_BATCH`] at a time): [`MONOIO_COMPACT_INTERVAL`] of them first,
//! after which monoio inserts from its first page again; then the caller
//! re-arms what stays in flight on an idle shard (the listeners' accepts,
//! issued while the slab was at its largest: their entries would keep the
//! last page in use); then one interval per page to drop, each of monoio's
//! checks dropping one.
//!
//! What it cannot give back: a page that still holds an operation in
//! flight (the pending receive of a connection that stayed open, taken
//! while the slab was at its largest) is not empty at monoio's check, and
//! monoio looks only at the last page, so the pages below it stay too.
//! They go at a later check once that receive has ended and been issued
//! again lower down (under traffic this happens by itself, which is why
//! the pages went after pub/sub traffic even before this module), but the
//! next compaction only comes with the next burst. Pages up to the room
//! twice the connections left need stay (pages 0 and 1 on an empty shard:
//! [`compaction_ops`] says why no more).
//!
//! monoio's epoll driver (its "legacy" driver) has no operation slab but
//! the same kind of slab, with the same pages and the same single place
//! that drops them, for its registrations: one entry per registered
//! descriptor (`ScheduledIo`: the cached readiness and the reader's and
//! writer's wakers, 48 bytes), so an idle connection holds one. After
//! 18,500 connections closed it kept pages 0 to 8 with 18,500 entries
//! touched, about 0.9 MB resident (pages 5-7, 98-393 KB blocks, in the
//! 4 MiB mappings of mimalloc's large pages: +684 KiB there, 6 points of
//! the idle start; docs/benchmarks.md, "Memory given back after closes:
//! monoio on epoll"). [`compact_registrations`] makes monoio drop them the
//! same way: registering one socket with the driver and taking it back
//! ([`MONOIO_COMPACT_INTERVAL`] per page, two `epoll_ctl` calls each). No
//! operation stays in that slab on an idle shard (a listener is registered
//! at start-up, in page 0), so nothing needs re-arming there.
//!
//! The epoll driver also keeps, for the runtime's lifetime, the buffer one
//! `epoll_wait` fills: [`EPOLL_EVENTS`] says why it is 512 events.

use std::cell::Cell;
use std::future::{poll_fn, Future};
use std::io;
use std::pin::Pin;
use std::task::Poll;

use crate::alloc::shrunk_capacity;

/// Events one `epoll_wait` of a shard's epoll driver returns at most
/// (monoio's `entries`; its default, 1,024, is meant for io_uring's queue).
/// The driver allocates a buffer of that many `epoll_event`s when it is
/// built and keeps it while the shard runs: 512 make 6 KiB (12-byte events
/// on x86_64; 8 KiB where they are 16 bytes), a block of one of
/// mimalloc's small classes (at most 10 KiB, in 64 KiB pages). 1,024 made
/// 12,288 bytes on x86_64: the size class of the table chunks
/// ([`ringmq_chunked::CLASS_CHUNK_MAX_BYTES`]: the engine's connection and
/// session slabs) that a burst of connections fills. The buffer, the
/// first block of its class on the shard's thread, sat in a 512 KiB
/// mimalloc page that the burst's chunks then filled, and after they were
/// all freed that one live block kept the whole page resident: 504 KiB,
/// 4 points of the memory given back after 18,500 closes (traced;
/// docs/benchmarks.md, "monoio on epoll: the event buffer's page"). More
/// than 512 ready descriptors take one more `epoll_wait` per 512.
pub const EPOLL_EVENTS: u32 = 512;

/// monoio's `COMPACT_INTERVAL` (utils/slab.rs, monoio 0.2.4): it looks at
/// its last page once per this many ended operations.
pub const MONOIO_COMPACT_INTERVAL: usize = 2048;

/// monoio's `PAGE_INITIAL_SIZE` (entries of page 0; page `i` has
/// `PAGE_INITIAL_SIZE << i`).
const MONOIO_PAGE_INITIAL_SIZE: usize = 64;

/// monoio's `NUM_PAGES`.
const MONOIO_NUM_PAGES: usize = 26;

/// Operations a driven connection may hold at once, for the estimate of
/// the slab's peak: its receive and its send (a close or shutdown replaces
/// one of them).
pub const OPS_PER_CONNECTION: usize = 2;

/// Entries a driven connection holds in the epoll driver's slab of
/// registrations: its socket's (the two halves share it).
pub const REGISTRATIONS_PER_CONNECTION: usize = 1;

/// Operations the churn has in flight at once: one submission and one
/// wake-up per this many (far below the ring's 1,024 entries); on epoll,
/// registrations taken back between two yields to the shard's other tasks.
pub const CHURN_BATCH: usize = 64;

/// The page of monoio's slab that holds entry `key` (monoio's
/// `get_page_id`: page `i` starts at entry `64 * (2^i - 1)`).
pub fn page_of(key: usize) -> usize {
    let shifted = key.saturating_add(MONOIO_PAGE_INITIAL_SIZE)
        >> (MONOIO_PAGE_INITIAL_SIZE.trailing_zeros() + 1);
    ((usize::BITS - shifted.leading_zeros()) as usize).min(MONOIO_NUM_PAGES - 1)
}

#[derive(Clone, Copy, Default)]
struct Driven {
    /// Connections this thread drives now.
    live: usize,
    /// The most it drove at once since the last compaction.
    peak: usize,
}

thread_local! {
    static DRIVEN: Cell<Driven> = const { Cell::new(Driven { live: 0, peak: 0 }) };
}

/// Counts one connection driven by this thread for as long as it lives
/// (the driver's reader task holds it). No bytes: the counts are the
/// thread's.
pub struct DrivenConnection(());

impl DrivenConnection {
    pub fn new() -> Self {
        DRIVEN.with(|d| {
            let mut now = d.get();
            now.live += 1;
            now.peak = now.peak.max(now.live);
            d.set(now);
        });
        DrivenConnection(())
    }
}

impl Default for DrivenConnection {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for DrivenConnection {
    fn drop(&mut self) {
        DRIVEN.with(|d| {
            let mut now = d.get();
            now.live = now.live.saturating_sub(1);
            d.set(now);
        });
    }
}

/// How many operations must end for monoio to drop the pages a burst of
/// `peak` driven connections filled, now that `live` are left: one
/// [`MONOIO_COMPACT_INTERVAL`] per page above the one that holds twice
/// what `live` connections need (room to grow again), plus one for the
/// first check (which also resets where monoio inserts). `None` when there
/// is nothing to give back: the peak's operations were at most
/// [`crate::alloc::SHRINK_MIN_CAPACITY`], or a quarter of them or more are
/// still needed (the hysteresis of [`shrunk_capacity`]), or the peak
/// filled no page that the rest do not.
///
/// Unlike a table's capacity, no minimum is kept: after a shard's last
/// connection closed, only pages 0 and 1 stay (192 entries). Pages 2 to 4
/// were kept before, and a page allocated during the burst in the size
/// class of the engine's and the runtime's table chunks (12,288 bytes),
/// whose 512 KiB mimalloc page a burst fills, kept
/// that whole page resident: page 2 of the epoll driver's registrations
/// (256 entries of 48 bytes; about 5 points of a one-shard broker's idle
/// RSS, docs/benchmarks.md, "Memory given back after closes: monoio on
/// epoll"), and one of the operation slab's on io_uring (traced in "... the
/// first `$SYS` publish at start-up"). Growing the pages again costs a few
/// allocations per burst.
pub fn compaction_ops(live: usize, peak: usize) -> Option<usize> {
    compaction_removals(live, peak, OPS_PER_CONNECTION)
}

/// [`compaction_ops`] for the epoll driver's slab of registrations: how
/// many registrations must be taken back for monoio to drop the pages a
/// burst of `peak` driven connections filled, now that `live` are left.
pub fn registration_removals(live: usize, peak: usize) -> Option<usize> {
    compaction_removals(live, peak, REGISTRATIONS_PER_CONNECTION)
}

/// Removals from one of monoio's slabs for it to drop the pages `peak`
/// connections with `per_connection` entries each filled, `live` left
/// ([`compaction_ops`]).
fn compaction_removals(live: usize, peak: usize, per_connection: usize) -> Option<usize> {
    let margin = MONOIO_PAGE_INITIAL_SIZE;
    let peak_ops = peak.saturating_mul(per_connection).saturating_add(margin);
    let live_ops = live.saturating_mul(per_connection).saturating_add(margin);
    // The hysteresis of a table's shrinking decides whether to; its
    // minimum capacity is not kept (above).
    shrunk_capacity(live_ops, peak_ops)?;
    let pages = page_of(peak_ops).saturating_sub(page_of(live_ops.saturating_mul(2)));
    (pages > 0).then(|| (pages + 1) * MONOIO_COMPACT_INTERVAL)
}

/// Connections this thread drives now, and the most at once since the
/// last [`compact_op_slab`].
pub fn driven() -> (usize, usize) {
    let now = DRIVEN.with(Cell::get);
    (now.live, now.peak)
}

/// Runs, on the calling thread's monoio io_uring runtime, as many
/// operations as monoio needs to drop its slab's pages after the burst of
/// connections this thread drove ([`compaction_ops`]); returns how many
/// ran (0: nothing to give back). `rearm` is called once monoio inserts
/// from its first page again: it should end and reissue the operations
/// that stay in flight while the shard is idle (the listeners' accepts),
/// so that they move out of the high pages. Then the peak starts again from the
/// connections left. Call it from a task at a quiet moment, on the io_uring
/// driver only: on monoio's epoll driver there is no such slab, and the
/// reads would be plain system calls. Costs about one submission and one
/// wake-up per [`CHURN_BATCH`] operations (18,432 after 18,500 idle
/// connections closed); other tasks run between batches. An error: the
/// pipe could not be made; nothing else changed.
pub async fn compact_op_slab(rearm: impl FnOnce()) -> io::Result<usize> {
    let (live, peak) = driven();
    let Some(ops) = compaction_ops(live, peak) else {
        return Ok(0);
    };
    DRIVEN.with(|d| d.set(Driven { live, peak: live }));
    let (reader, writer) = std::io::pipe()?;
    // The write end closed: every read ends at once (end of file; the
    // reads ask for zero bytes anyway).
    drop(writer);
    let file = monoio::fs::File::from_std(std::fs::File::from(std::os::fd::OwnedFd::from(reader)))?;
    // Up to the first check: monoio then inserts from its first page again.
    churn(&file, MONOIO_COMPACT_INTERVAL).await;
    rearm();
    churn(&file, ops.saturating_sub(MONOIO_COMPACT_INTERVAL)).await;
    // Closing the pipe is one more operation (monoio closes through the ring).
    file.close().await?;
    Ok(ops)
}

/// [`compact_op_slab`] for monoio's epoll driver: registers one socket
/// with the calling thread's driver and takes it back as many times as
/// monoio needs to drop the pages of its slab of registrations after the
/// burst of connections this thread drove ([`registration_removals`]);
/// returns how many it took back (0: nothing to give back). Call it from a
/// task at a quiet moment, on the epoll driver only (on io_uring nothing is
/// registered: it would do nothing but cost the system calls). Costs two
/// `epoll_ctl` calls per registration (16,384 after 18,500 idle
/// connections closed, tens of milliseconds), yielding to the shard's
/// other tasks every [`CHURN_BATCH`]. An error: the socket could not be
/// made or registered; what ran before it stands.
pub async fn compact_registrations() -> io::Result<usize> {
    use std::os::fd::{FromRawFd, IntoRawFd, OwnedFd};
    use std::os::unix::net::UnixStream;
    let (live, peak) = driven();
    let Some(removals) = registration_removals(live, peak) else {
        return Ok(0);
    };
    DRIVEN.with(|d| d.set(Driven { live, peak: live }));
    let (socket, _peer) = UnixStream::pair()?;
    socket.set_nonblocking(true)?;
    let mut fd = OwnedFd::from(socket);
    for done in 1..=removals {
        // Registered with the driver (an entry in its slab) ...
        let registered = monoio::net::UnixStream::from_std(UnixStream::from(fd))?;
        // ... and taken back: deregistered (the entry removed, which is
        // what monoio counts towards its next look at the last page), the
        // descriptor handed back open.
        let raw = registered.into_raw_fd();
        // SAFETY: `into_raw_fd` gives up monoio's ownership of the open
        // descriptor without closing it; nothing else owns it.
        fd = unsafe { OwnedFd::from_raw_fd(raw) };
        if done % CHURN_BATCH == 0 {
            crate::wake::yield_now().await;
        }
    }
    Ok(removals)
}

/// One read of the churn, in flight.
type Read<'a> = Pin<Box<dyn Future<Output = monoio::BufResult<usize, Vec<u8>>> + 'a>>;

/// Runs `ops` reads of `file` that end at once, [`CHURN_BATCH`] at a time.
async fn churn(file: &monoio::fs::File, ops: usize) {
    let mut done = 0;
    while done < ops {
        let n = (ops - done).min(CHURN_BATCH);
        let mut batch: Vec<Read<'_>> = (0..n)
            .map(|_| Box::pin(file.read_at(Vec::new(), 0)) as Read<'_>)
            .collect();
        poll_fn(|cx| {
            // What a read returned does not matter (end of file, or
            // ESPIPE for the offset on a pipe): only that it ended.
            batch.retain_mut(|read| read.as_mut().poll(cx).is_pending());
            if batch.is_empty() {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await;
        done += n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_start_where_monoio_starts_them() {
        // Page i starts at entry 64 * (2^i - 1).
        assert_eq!(page_of(0), 0);
        assert_eq!(page_of(63), 0);
        assert_eq!(page_of(64), 1);
        assert_eq!(page_of(191), 1);
        assert_eq!(page_of(192), 2);
        assert_eq!(page_of(16_319), 7);
        assert_eq!(page_of(16_320), 8);
        assert_eq!(page_of(32_703), 8);
        assert_eq!(page_of(32_704), 9);
        assert_eq!(page_of(usize::MAX), MONOIO_NUM_PAGES - 1);
    }

    #[test]
    fn compaction_is_due_only_well_below_a_large_peak() {
        // Small peaks: nothing (their pages are small).
        assert_eq!(compaction_ops(0, 100), None);
        assert_eq!(compaction_ops(0, 450), None);
        // 18,500 connections, all gone: 37,064 operations at the peak
        // (page 9), room kept for 128 (page 1): eight pages, nine checks.
        assert_eq!(compaction_ops(0, 18_500), Some(9 * MONOIO_COMPACT_INTERVAL));
        // A quarter or more still open: kept.
        assert_eq!(compaction_ops(4_700, 18_500), None);
        // 1,000 left (2,064 operations, room kept for 4,128: page 6):
        // pages 7 to 9.
        assert_eq!(
            compaction_ops(1_000, 18_500),
            Some(4 * MONOIO_COMPACT_INTERVAL)
        );
    }

    #[test]
    fn registrations_are_taken_back_page_by_page() {
        // One entry per connection on epoll: 18,500 (18,564 with the
        // margin, page 8) down to none, room kept for 128 (page 1): seven
        // pages, eight checks. Page 2, the 12,288-byte one, goes too.
        assert_eq!(
            registration_removals(0, 18_500),
            Some(8 * MONOIO_COMPACT_INTERVAL)
        );
        assert_eq!(registration_removals(0, 450), None);
        assert_eq!(registration_removals(4_700, 18_500), None);
        // 1,000 left (1,064, room for 2,128: page 5): pages 6 to 8.
        assert_eq!(
            registration_removals(1_000, 18_500),
            Some(4 * MONOIO_COMPACT_INTERVAL)
        );
    }

    #[test]
    fn the_driven_count_follows_the_guards() {
        let (live, peak) = driven();
        let a = DrivenConnection::new();
        let b = DrivenConnection::new();
        assert_eq!(driven(), (live + 2, peak.max(live + 2)));
        drop(a);
        drop(b);
        assert_eq!(driven(), (live, peak.max(live + 2)));
    }
}
