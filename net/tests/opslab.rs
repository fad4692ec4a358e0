//! monoio's operation slab gives its pages back after a burst
//! (`ringmq_net::opslab`). Its own process: the heap is measured with
//! glibc's `mallinfo2`, which counts every thread of the process.

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[test]
fn the_slab_pages_of_a_burst_are_given_back() {
    use std::future::Future;
    if !monoio::utils::detect_uring() {
        eprintln!("SKIPPED: io_uring unavailable");
        return;
    }
    let mut rt = match monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
        .with_entries(1024)
        .enable_timer()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("SKIPPED: io_uring runtime refused: {e}");
            return;
        }
    };
    rt.block_on(async {
        const BURST: usize = 20_000;
        let listener = monoio::net::TcpListener::bind("127.0.0.1:0").unwrap();
        // The burst: BURST connections driven at once (the peak the
        // compaction is sized by), BURST operations in flight (pending
        // accepts stand in for the connections' receives: one fd, no data).
        let driven: Vec<_> = (0..BURST / 2)
            .map(|_| ringmq_net::opslab::DrivenConnection::new())
            .collect();
        {
            let mut accepts: Vec<_> = (0..BURST).map(|_| Box::pin(listener.accept())).collect();
            std::future::poll_fn(|cx| {
                for accept in &mut accepts {
                    assert!(accept.as_mut().poll(cx).is_pending());
                }
                std::task::Poll::Ready(())
            })
            .await;
            // Dropped: cancelled; their entries go when the cancellations
            // complete.
        }
        drop(driven);
        for _ in 0..5 {
            monoio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        let before = heap_in_use();
        let ops = ringmq_net::opslab::compact_op_slab(|| {}).await.unwrap();
        assert!(ops > 0);
        let after = heap_in_use();
        let freed = before.saturating_sub(after);
        eprintln!("slab compaction: {ops} operations, heap in use {before} -> {after} B");
        // Pages 5 to 8 of monoio's slab hold 30,720 entries (32 bytes each
        // in monoio 0.2.4: 960 KiB); at least 16 bytes each must have gone.
        assert!(freed >= 30_720 * 16, "freed only {freed} B");
        // Nothing left to do: the peak starts again from the connections left.
        assert_eq!(ringmq_net::opslab::compact_op_slab(|| {}).await.unwrap(), 0);
    });
}

/// Bytes the process's heap has handed out (glibc: arena and mmap'd
/// chunks).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn heap_in_use() -> usize {
    // SAFETY: mallinfo2 takes no arguments and only reads glibc's
    // allocator statistics.
    let info = unsafe { libc::mallinfo2() };
    info.uordblks + info.hblkhd
}
