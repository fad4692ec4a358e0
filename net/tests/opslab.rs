//! monoio's operation slab (io_uring) and its slab of registrations
//! (epoll) give their pages back after a burst (`ringmq_net::opslab`). Its
//! own process: the heap is measured with glibc's `mallinfo2`, which
//! counts every thread of the process, so the tests take turns (`SERIAL`).

/// One heap measurement at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[test]
fn the_slab_pages_of_a_burst_are_given_back() {
    use std::future::Future;
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
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

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[test]
fn the_epoll_drivers_registration_pages_of_a_burst_are_given_back() {
    use std::os::unix::net::UnixStream;
    const BURST: usize = 6_000;
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // One descriptor per registration (a socket and BURST - 1 duplicates).
    if let Err(e) = raise_fd_limit(BURST as u64 + 256) {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "{e}");
        eprintln!("SKIPPED: {e}");
        return;
    }
    let mut rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
        .enable_timer()
        .build()
        .unwrap();
    rt.block_on(async {
        let (socket, _peer) = UnixStream::pair().unwrap();
        socket.set_nonblocking(true).unwrap();
        // The burst: BURST registered descriptors, each a driven
        // connection, then all gone (monoio's slab grew to page 6: keys
        // 4,032 to 8,127).
        let burst: Vec<_> = (0..BURST)
            .map(|_| {
                let fd = socket.try_clone().unwrap();
                let stream = monoio::net::UnixStream::from_std(fd).unwrap();
                (stream, ringmq_net::opslab::DrivenConnection::new())
            })
            .collect();
        drop(burst);
        let before = heap_in_use();
        let removals = ringmq_net::opslab::compact_registrations().await.unwrap();
        let after = heap_in_use();
        let freed = before.saturating_sub(after);
        eprintln!(
            "registrations compacted: {removals} taken back, heap in use {before} -> {after} B"
        );
        assert!(removals > 0);
        // Pages 2 to 6 hold 7,936 entries (a readiness and two wakers:
        // 48 bytes each in monoio 0.2.4, 372 KiB); at least 40 bytes each
        // must have gone. Without the compaction nothing goes: monoio looks
        // at its last page only every 2,048th removal, and the burst's
        // removals ended between two looks or with the page in use.
        assert!(freed >= 7_936 * 40, "freed only {freed} B");
        // Nothing left to do: the peak starts again from the connections left.
        assert_eq!(
            ringmq_net::opslab::compact_registrations().await.unwrap(),
            0
        );
    });
}

/// Raises this process's soft limit on open descriptors to at least
/// `want` (up to the hard limit); an error says why it cannot.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn raise_fd_limit(want: u64) -> Result<(), String> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the limit into the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(format!("getrlimit: {}", std::io::Error::last_os_error()));
    }
    if limit.rlim_cur >= want {
        return Ok(());
    }
    if limit.rlim_max < want {
        return Err(format!(
            "needs {want} open descriptors, the hard limit is {}",
            limit.rlim_max
        ));
    }
    limit.rlim_cur = want;
    // SAFETY: setrlimit reads the struct; raising the soft limit up to the
    // hard one needs no privilege.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
        return Err(format!("setrlimit: {}", std::io::Error::last_os_error()));
    }
    Ok(())
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
