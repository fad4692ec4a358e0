//! Driver tests on both monoio drivers, against a blocking std client on
//! another thread. Every socket has a read timeout, so a bug fails the test
//! instead of hanging it.

use super::*;
use bytes::Bytes;
use monoio::time::Instant;
use std::cell::RefCell;
use std::io::{Read, Write};
use std::net::TcpListener as StdListener;
use std::thread;
use std::time::Duration;

const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);

/// Echoes every byte; `b"!"` asks for a close after the echo.
#[derive(Default)]
struct Echo {
    handle: DriverHandle,
    out: RefCell<BytesMut>,
    reads: RefCell<Vec<usize>>,
    closed: RefCell<Vec<CloseReason>>,
    consume: bool,
}

impl Handler for Echo {
    fn on_bytes(&self, buf: &mut BytesMut) {
        self.reads.borrow_mut().push(buf.len());
        if !self.consume {
            return;
        }
        let data = buf.split();
        let close = data.ends_with(b"!");
        self.out.borrow_mut().extend_from_slice(&data);
        self.handle.transmit();
        if close {
            self.handle.close();
        }
    }
    fn take_outgoing(&self) -> Option<Bytes> {
        let mut out = self.out.borrow_mut();
        (!out.is_empty()).then(|| out.split().freeze())
    }
    fn on_closed(&self, reason: CloseReason) {
        self.closed.borrow_mut().push(reason);
    }
}

/// Runs `test` on monoio's epoll runtime (`LegacyDriver`), then on its
/// io_uring runtime where the kernel has io_uring (on CI it must: both
/// runtimes are the portable fallback the shards run on). `test` gets the
/// driver's name, "epoll" or "io_uring".
pub(super) fn on_each_runtime<F: std::future::Future<Output = ()>>(
    test: impl Fn(&'static str) -> F,
) {
    let mut legacy = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
        .enable_timer()
        .build()
        .unwrap_or_else(|e| panic!("legacy runtime: {e}"));
    legacy.block_on(test("epoll"));
    #[cfg(target_os = "linux")]
    if monoio::utils::detect_uring() {
        let mut uring = monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
            .enable_timer()
            .build()
            .unwrap_or_else(|e| panic!("io_uring runtime: {e}"));
        uring.block_on(test("io_uring"));
    } else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "io_uring unavailable on CI"
        );
        eprintln!("SKIPPED (io_uring part): io_uring unavailable");
    }
}

/// [`on_each_runtime`] with a fresh non-blocking listener for each.
fn each_driver(
    test: impl Fn(StdListener) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()>>>,
) {
    let listener = || {
        let l = StdListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
        l.set_nonblocking(true).unwrap_or_else(|e| panic!("{e}"));
        l
    };
    on_each_runtime(|_| test(listener()));
}

fn client(
    addr: SocketAddr,
    script: impl FnOnce(std::net::TcpStream) + Send + 'static,
) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let s = std::net::TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect: {e}"));
        s.set_read_timeout(Some(CLIENT_TIMEOUT))
            .unwrap_or_else(|e| panic!("{e}"));
        script(s)
    })
}

async fn accept(listener: &monoio::net::TcpListener) -> Connection {
    let (stream, _) = listener
        .accept()
        .await
        .unwrap_or_else(|e| panic!("accept: {e}"));
    Connection::new(stream)
}

async fn wait_closed(echo: &Echo) {
    for _ in 0..500 {
        if !echo.closed.borrow().is_empty() {
            return;
        }
        monoio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("connection did not close within 5 s");
}

fn read_to_end(mut s: std::net::TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    s.read_to_end(&mut got)
        .unwrap_or_else(|e| panic!("read: {e}"));
    got
}

#[test]
fn echo_then_close_flushes_and_reports_local() {
    each_driver(|std_listener| {
        Box::pin(async move {
            let addr = std_listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
            let listener =
                monoio::net::TcpListener::from_std(std_listener).unwrap_or_else(|e| panic!("{e}"));
            let peer = client(addr, |mut s| {
                s.write_all(b"hello").unwrap_or_else(|e| panic!("{e}"));
                let mut five = [0u8; 5];
                s.read_exact(&mut five).unwrap_or_else(|e| panic!("{e}"));
                assert_eq!(&five, b"hello");
                s.write_all(b"bye!").unwrap_or_else(|e| panic!("{e}"));
                assert_eq!(read_to_end(s), b"bye!", "close flushes, then EOF");
            });
            let conn = accept(&listener).await;
            let echo = Rc::new(Echo {
                consume: true,
                ..Echo::default()
            });
            conn.spawn_driver(
                BytesMut::new(),
                echo.clone(),
                echo.handle.clone(),
                DriverConfig::default(),
            );
            wait_closed(&echo).await;
            assert_eq!(*echo.closed.borrow(), vec![CloseReason::Local]);
            peer.join()
                .unwrap_or_else(|_| panic!("client thread panicked"));
        })
    });
}

#[test]
fn peer_eof_reports_peer_closed_once() {
    each_driver(|std_listener| {
        Box::pin(async move {
            let addr = std_listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
            let listener =
                monoio::net::TcpListener::from_std(std_listener).unwrap_or_else(|e| panic!("{e}"));
            let peer = client(addr, |mut s| {
                s.write_all(b"x").unwrap_or_else(|e| panic!("{e}"));
                // Read the echo before closing: closing with unread data
                // would make the kernel send a reset instead of a FIN.
                let mut one = [0u8; 1];
                s.read_exact(&mut one).unwrap_or_else(|e| panic!("{e}"));
            });
            let conn = accept(&listener).await;
            let echo = Rc::new(Echo {
                consume: true,
                ..Echo::default()
            });
            conn.spawn_driver(
                BytesMut::new(),
                echo.clone(),
                echo.handle.clone(),
                DriverConfig::default(),
            );
            wait_closed(&echo).await;
            monoio::time::sleep(Duration::from_millis(20)).await;
            assert_eq!(*echo.closed.borrow(), vec![CloseReason::PeerClosed]);
            peer.join()
                .unwrap_or_else(|_| panic!("client thread panicked"));
        })
    });
}

#[test]
fn reads_are_bounded_and_buffer_limit_closes() {
    each_driver(|std_listener| {
        Box::pin(async move {
            let addr = std_listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
            let listener =
                monoio::net::TcpListener::from_std(std_listener).unwrap_or_else(|e| panic!("{e}"));
            let peer = client(addr, |mut s| {
                s.write_all(&[7u8; 10]).unwrap_or_else(|e| panic!("{e}"));
                // The server closes: EOF or reset, both end the read.
                let mut sink = Vec::new();
                let _ = s.read_to_end(&mut sink);
            });
            let conn = accept(&listener).await;
            // Never consumes: the buffer grows by <= 4 bytes per read until
            // it holds 8 = read_buffer_max_bytes, then the driver closes.
            let echo = Rc::new(Echo::default());
            let config = DriverConfig {
                read_chunk_bytes: 4,
                read_buffer_max_bytes: 8,
                close_flush_timeout_ms: 1000,
                ..DriverConfig::default()
            };
            conn.spawn_driver(BytesMut::new(), echo.clone(), echo.handle.clone(), config);
            wait_closed(&echo).await;
            let reads = echo.reads.borrow().clone();
            assert!(
                reads.windows(2).all(|w| w[1] > w[0] && w[1] - w[0] <= 4),
                "{reads:?}"
            );
            assert!(reads.iter().all(|&n| n <= 8), "{reads:?}");
            assert_eq!(*echo.closed.borrow(), vec![CloseReason::ReadBufferFull]);
            peer.join()
                .unwrap_or_else(|_| panic!("client thread panicked"));
        })
    });
}

#[test]
fn handoff_through_owned_fd_keeps_bytes_and_socket() {
    each_driver(|std_listener| {
        Box::pin(async move {
            let addr = std_listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
            let listener =
                monoio::net::TcpListener::from_std(std_listener).unwrap_or_else(|e| panic!("{e}"));
            let peer = client(addr, |mut s| {
                s.write_all(b"first").unwrap_or_else(|e| panic!("{e}"));
                let mut five = [0u8; 5];
                s.read_exact(&mut five).unwrap_or_else(|e| panic!("{e}"));
                assert_eq!(&five, b"first");
                s.write_all(b"then!").unwrap_or_else(|e| panic!("{e}"));
                assert_eq!(read_to_end(s), b"then!");
            });
            let mut conn = accept(&listener).await;
            let (n, first) = conn.read_chunk(BytesMut::new(), 64).await;
            assert_eq!(n.unwrap_or_else(|e| panic!("{e}")), 5);
            let (fd, tls, _ws) = conn
                .into_owned_fd()
                .unwrap_or_else(|_| panic!("no op in flight"));
            assert!(tls.is_none());
            // The "owner shard": adopt the fd, feed the bytes read so far.
            let adopted = Connection::from_owned_fd(fd, None).unwrap_or_else(|e| panic!("{e}"));
            let echo = Rc::new(Echo {
                consume: true,
                ..Echo::default()
            });
            adopted.spawn_driver(
                first,
                echo.clone(),
                echo.handle.clone(),
                DriverConfig::default(),
            );
            wait_closed(&echo).await;
            assert_eq!(*echo.closed.borrow(), vec![CloseReason::Local]);
            peer.join()
                .unwrap_or_else(|_| panic!("client thread panicked"));
        })
    });
}

#[test]
fn close_before_driver_starts_is_honoured() {
    each_driver(|std_listener| {
        Box::pin(async move {
            let addr = std_listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
            let listener =
                monoio::net::TcpListener::from_std(std_listener).unwrap_or_else(|e| panic!("{e}"));
            let peer = client(addr, |s| {
                assert_eq!(read_to_end(s), b"early");
            });
            let conn = accept(&listener).await;
            let echo = Rc::new(Echo {
                consume: true,
                ..Echo::default()
            });
            echo.out.borrow_mut().extend_from_slice(b"early");
            echo.handle.transmit();
            echo.handle.close();
            conn.spawn_driver(
                BytesMut::new(),
                echo.clone(),
                echo.handle.clone(),
                DriverConfig::default(),
            );
            wait_closed(&echo).await;
            assert_eq!(*echo.closed.borrow(), vec![CloseReason::Local]);
            peer.join()
                .unwrap_or_else(|_| panic!("client thread panicked"));
        })
    });
}

#[test]
fn close_lingers_so_a_peer_still_writing_reads_the_last_bytes() {
    each_driver(|std_listener| {
        Box::pin(async move {
            let addr = std_listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
            let listener =
                monoio::net::TcpListener::from_std(std_listener).unwrap_or_else(|e| panic!("{e}"));
            let peer = client(addr, |mut s| {
                s.write_all(b"bye!").unwrap_or_else(|e| panic!("{e}"));
                // The server closes now. Keep writing, as a client sending
                // acknowledgements would: with an abrupt close the kernel
                // answers these bytes with a reset, and the reply is lost.
                thread::sleep(Duration::from_millis(100));
                for _ in 0..16 {
                    s.write_all(&[0u8; 4096])
                        .unwrap_or_else(|e| panic!("write after the server's close: {e}"));
                }
                assert_eq!(read_to_end(s), b"bye!", "the reply, then EOF, no reset");
            });
            let conn = accept(&listener).await;
            let echo = Rc::new(Echo {
                consume: true,
                ..Echo::default()
            });
            conn.spawn_driver(
                BytesMut::new(),
                echo.clone(),
                echo.handle.clone(),
                DriverConfig::default(),
            );
            wait_closed(&echo).await;
            assert_eq!(*echo.closed.borrow(), vec![CloseReason::Local]);
            peer.join()
                .unwrap_or_else(|_| panic!("client thread panicked"));
        })
    });
}

#[test]
fn close_linger_is_bounded_when_the_peer_never_closes() {
    each_driver(|std_listener| {
        Box::pin(async move {
            let addr = std_listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
            let listener =
                monoio::net::TcpListener::from_std(std_listener).unwrap_or_else(|e| panic!("{e}"));
            let peer = client(addr, |mut s| {
                s.write_all(b"!").unwrap_or_else(|e| panic!("{e}"));
                assert_eq!(
                    read_to_end(s.try_clone().unwrap_or_else(|e| panic!("{e}"))),
                    b"!"
                );
                // Hold the socket open well past the linger.
                thread::sleep(Duration::from_millis(1500));
                drop(s);
            });
            let conn = accept(&listener).await;
            let echo = Rc::new(Echo {
                consume: true,
                ..Echo::default()
            });
            let config = DriverConfig {
                close_linger_ms: 100,
                ..DriverConfig::default()
            };
            let started = Instant::now();
            conn.spawn_driver(BytesMut::new(), echo.clone(), echo.handle.clone(), config);
            wait_closed(&echo).await;
            let took = started.elapsed();
            assert!(
                took < Duration::from_millis(1000),
                "linger bounded: {took:?}"
            );
            assert_eq!(*echo.closed.borrow(), vec![CloseReason::Local]);
            peer.join()
                .unwrap_or_else(|_| panic!("client thread panicked"));
        })
    });
}

#[test]
fn a_started_packet_that_stalls_is_cut_after_the_timeout() {
    each_driver(|std_listener| {
        Box::pin(async move {
            let addr = std_listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
            let listener =
                monoio::net::TcpListener::from_std(std_listener).unwrap_or_else(|e| panic!("{e}"));
            let peer = client(addr, |mut s| {
                // Half a "packet" (the handler never consumes), then silence.
                s.write_all(b"hal").unwrap_or_else(|e| panic!("{e}"));
                let mut sink = Vec::new();
                // EOF or reset: either ends the read.
                let _ = s.read_to_end(&mut sink);
            });
            let conn = accept(&listener).await;
            let echo = Rc::new(Echo::default());
            let config = DriverConfig {
                packet_complete_timeout_ms: 200,
                ..DriverConfig::default()
            };
            let started = Instant::now();
            conn.spawn_driver(BytesMut::new(), echo.clone(), echo.handle.clone(), config);
            wait_closed(&echo).await;
            let took = started.elapsed();
            assert!(
                took >= Duration::from_millis(200),
                "not before the timeout: {took:?}"
            );
            assert_eq!(*echo.closed.borrow(), vec![CloseReason::PacketTimeout]);
            peer.join()
                .unwrap_or_else(|_| panic!("client thread panicked"));
        })
    });
}

/// Echo over TLS, with the hand-off in the middle: the "accepting shard"
/// runs the handshake (on a helper thread) and reads the first plaintext, gives up fd and
/// session, the "owner" adopts both and drives the connection.
#[test]
fn tls_handshake_then_handoff_then_echo() {
    let (settings, client_config) = crate::tls::tests::server_and_client("driver");
    let loaded = crate::tls::load(&settings).unwrap_or_else(|e| panic!("{e}"));
    each_driver(move |std_listener| {
        let server_config = loaded.config.clone();
        let client_config = client_config.clone();
        Box::pin(async move {
            let addr = std_listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
            let listener =
                monoio::net::TcpListener::from_std(std_listener).unwrap_or_else(|e| panic!("{e}"));
            let peer = client(addr, move |s| {
                let name = rustls::pki_types::ServerName::try_from("localhost")
                    .unwrap_or_else(|e| panic!("{e}"));
                let conn = rustls::ClientConnection::new(client_config, name)
                    .unwrap_or_else(|e| panic!("{e}"));
                let mut tls = rustls::StreamOwned::new(conn, s);
                tls.write_all(b"first").unwrap_or_else(|e| panic!("{e}"));
                let mut five = [0u8; 5];
                tls.read_exact(&mut five).unwrap_or_else(|e| panic!("{e}"));
                assert_eq!(&five, b"first");
                tls.write_all(b"then!").unwrap_or_else(|e| panic!("{e}"));
                let mut rest = Vec::new();
                // The server ends with close_notify: a clean end of stream.
                tls.read_to_end(&mut rest).unwrap_or_else(|e| panic!("{e}"));
                assert_eq!(rest, b"then!");
            });
            let (stream, _) = listener.accept().await.unwrap_or_else(|e| panic!("{e}"));
            let session = TlsSession::new(server_config).unwrap_or_else(|e| panic!("{e}"));
            let pool = crate::tls::offload::HandshakePool::start(1, "test-tls")
                .unwrap_or_else(|e| panic!("{e}"));
            let mut conn = Connection::with_tls(
                stream,
                ConnTls {
                    session: Box::new(session),
                    pool: Some(pool.clone()),
                },
            );
            // The handshake runs on the pool's thread; the plaintext that
            // may come with the client's Finished is kept for the read.
            conn.handshake(64)
                .await
                .unwrap_or_else(|e| panic!("handshake: {e}"));
            let counts = pool.stats().counts();
            assert!(counts.offloaded_steps >= 1, "{counts:?}");
            assert_eq!(counts.inline_steps, 0, "{counts:?}");
            let (n, first) = conn.read_chunk(BytesMut::new(), 64).await;
            assert_eq!(n.unwrap_or_else(|e| panic!("{e}")), 5);
            assert_eq!(&first[..], b"first");
            let (fd, session, _ws) = conn
                .into_owned_fd()
                .unwrap_or_else(|_| panic!("no op in flight"));
            let session = session.unwrap_or_else(|| panic!("TLS session lost in the hand-off"));
            let adopted = Connection::from_owned_fd(
                fd,
                Some(ConnTls {
                    session,
                    pool: None,
                }),
            )
            .unwrap_or_else(|e| panic!("{e}"));
            let echo = Rc::new(Echo {
                consume: true,
                ..Echo::default()
            });
            adopted.spawn_driver(
                first,
                echo.clone(),
                echo.handle.clone(),
                DriverConfig::default(),
            );
            wait_closed(&echo).await;
            assert_eq!(*echo.closed.borrow(), vec![CloseReason::Local]);
            peer.join()
                .unwrap_or_else(|_| panic!("client thread panicked"));
        })
    });
}

/// A plain-TCP client on a TLS connection: the session fails, the
/// connection closes with `TlsError`, nothing reaches the handler.
#[test]
fn plaintext_on_a_tls_connection_is_refused() {
    let (settings, _) = crate::tls::tests::server_and_client("plain-on-tls");
    let loaded = crate::tls::load(&settings).unwrap_or_else(|e| panic!("{e}"));
    each_driver(move |std_listener| {
        let server_config = loaded.config.clone();
        Box::pin(async move {
            let addr = std_listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
            let listener =
                monoio::net::TcpListener::from_std(std_listener).unwrap_or_else(|e| panic!("{e}"));
            let peer = client(addr, |mut s| {
                // An MQTT CONNECT where a ClientHello belongs.
                s.write_all(b"\x10\x0c\x00\x04MQTT\x04\x02\x00\x3c\x00\x00")
                    .unwrap_or_else(|e| panic!("{e}"));
                let got = read_to_end(s);
                // A TLS alert record (content type 21), then EOF.
                assert_eq!(got.first(), Some(&21), "{got:?}");
            });
            let (stream, _) = listener.accept().await.unwrap_or_else(|e| panic!("{e}"));
            let session = TlsSession::new(server_config).unwrap_or_else(|e| panic!("{e}"));
            let conn = Connection::with_tls(
                stream,
                ConnTls {
                    session: Box::new(session),
                    pool: None,
                },
            );
            let echo = Rc::new(Echo {
                consume: true,
                ..Echo::default()
            });
            conn.spawn_driver(
                BytesMut::new(),
                echo.clone(),
                echo.handle.clone(),
                DriverConfig::default(),
            );
            wait_closed(&echo).await;
            assert_eq!(*echo.closed.borrow(), vec![CloseReason::TlsError]);
            assert!(echo.reads.borrow().is_empty());
            peer.join()
                .unwrap_or_else(|_| panic!("client thread panicked"));
        })
    });
}

/// What an idle connection costs in driver tasks: each task is allocated
/// at the size of its future's largest state, so a rare path (TLS
/// handshake turn, packet timeout, close linger) must not make every
/// connection's task large (docs/benchmarks.md, memory per idle
/// connection). The bounds hold for unoptimised builds, which lay out
/// futures larger than release builds do.
#[test]
fn driver_task_futures_stay_small() {
    each_driver(|std_listener| {
        Box::pin(async move {
            let addr = std_listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
            let listener =
                monoio::net::TcpListener::from_std(std_listener).unwrap_or_else(|e| panic!("{e}"));
            let peer = client(addr, |s| drop(read_to_end(s)));
            let conn = accept(&listener).await;
            let fd = conn.stream.as_raw_fd();
            let (read_half, write_half) = conn.stream.into_split();
            let echo = Rc::new(Echo::default());
            let handle = echo.handle.clone();
            let config = DriverConfig::default();
            let reader = reader_task(
                read_half,
                BytesMut::new(),
                echo.clone(),
                handle.clone(),
                config,
                None,
            );
            let writer = writer_task(write_half, fd, echo.clone(), handle, config, None);
            let (r, w) = (
                std::mem::size_of_val(&reader),
                std::mem::size_of_val(&writer),
            );
            eprintln!("driver futures: reader {r} bytes, writer {w} bytes");
            assert!(r <= READER_FUTURE_MAX_BYTES, "reader future {r} bytes");
            assert!(w <= WRITER_FUTURE_MAX_BYTES, "writer future {w} bytes");
            drop((reader, writer));
            peer.join().unwrap_or_else(|_| panic!("client"));
        })
    });
}

/// Bounds of [`driver_task_futures_stay_small`], in bytes: an unoptimised
/// build measured 712 and 640 (784 for the reader while its loop kept a
/// second copy of the configuration; 1,536 each while the timers of rare
/// paths were inline).
const READER_FUTURE_MAX_BYTES: usize = 736;
const WRITER_FUTURE_MAX_BYTES: usize = 768;
