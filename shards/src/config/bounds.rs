//! Ranges enforced on configuration values (inclusive).

/// `auth.verify_threads`.
pub const VERIFY_THREADS: (usize, usize) = (1, 64);
/// `auth.verify_queue_max_requests`.
pub const VERIFY_QUEUE_MAX_REQUESTS: (usize, usize) = (1, 1 << 20);
/// `runtime.ring_capacity_slots`.
pub const RING_CAPACITY_SLOTS: (usize, usize) = (2, 1 << 20);
/// `runtime.ring_overflow_max_messages`.
pub const RING_OVERFLOW_MAX_MESSAGES: (usize, usize) = (0, 1 << 24);
/// `runtime.ring_batch_max_messages`.
pub const RING_BATCH_MAX_MESSAGES: (usize, usize) = (1, 1 << 16);
/// `runtime.native_gather_us`.
pub const NATIVE_GATHER_US: (u32, u32) = (0, 10_000);
/// `runtime.native_hold_us`.
pub const NATIVE_HOLD_US: (u32, u32) = (0, 10_000);
/// `runtime.native_direct_fds` (the kernel's largest registered table).
pub const NATIVE_DIRECT_FDS: (u32, u32) = (0, ringmq_net::uring::DIRECT_FDS_MAX);
/// `runtime.read_chunk_bytes`.
pub const READ_CHUNK_BYTES: (usize, usize) = (64, 16 << 20);
/// `runtime.log_connections_max_lines_per_s`.
pub const LOG_CONNECTIONS_MAX_LINES_PER_S: (u32, u32) = (1, 1_000_000);
/// `runtime.tls_handshake_threads`.
pub const TLS_HANDSHAKE_THREADS: (usize, usize) = (1, ringmq_net::tls::offload::THREADS_MAX);
/// `runtime.shutdown_grace_ms`, `runtime.close_flush_timeout_ms` and
/// `runtime.close_linger_ms`.
pub const TIMEOUT_MS: (u64, u64) = (0, 600_000);
/// `runtime.packet_complete_timeout_ms`: 0 would cut every packet
/// split across two reads.
pub const PACKET_COMPLETE_TIMEOUT_MS: (u64, u64) = (100, 600_000);
/// `limits.packet_size_max_bytes`: the largest MQTT packet is the
/// largest remaining length (268_435_455) plus a 5-byte fixed header
/// (section 2.1.4).
pub const PACKET_SIZE_MAX_BYTES: (u32, u32) = (16, 268_435_460);
/// `storage.fsync_interval_ms`.
pub const FSYNC_INTERVAL_MS: (u64, u64) = (1, 60_000);
/// `tracing.queue_max_spans`.
pub const TRACING_QUEUE_MAX_SPANS: (usize, usize) = (1, 1 << 20);
/// `tracing.batch_max_spans` (and at most `tracing.queue_max_spans`).
pub const TRACING_BATCH_MAX_SPANS: (usize, usize) = (1, 1 << 16);
/// `tracing.export_interval_ms`.
pub const TRACING_EXPORT_INTERVAL_MS: (u64, u64) = (10, 600_000);
/// `tracing.export_timeout_ms`.
pub const TRACING_EXPORT_TIMEOUT_MS: (u64, u64) = (100, 600_000);
