#!/usr/bin/env bash
# The whole test suite (the README's test command): unit, property, scenario
# and black-box tests of every crate, then the black-box MQTT conformance
# runner (../shared/conformance.py) against the real ringmq binary, and the
# wasm package's tests in headless Chromium (wasm/tests/run.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --workspace
# The black-box tests again on the portable epoll driver (the fallback for
# kernels without io_uring and the code path non-Linux systems use).
RINGMQ_TEST_IO=epoll cargo test -p ringmq --tests
# And on the native io_uring shard loop (io = "native"; a shard falls back to
# monoio, with a log line, where the kernel refuses io_uring features).
RINGMQ_TEST_IO=native cargo test -p ringmq --tests
# The conformance runner uses the debug binary the tests just built.
cargo build -p ringmq
RINGMQ_BIN="${CARGO_TARGET_DIR:-target}/debug/ringmq" bash tests/run-conformance.sh
RINGMQ_FLAGS="--io native" RINGMQ_BIN="${CARGO_TARGET_DIR:-target}/debug/ringmq" bash tests/run-conformance.sh
# The browser package in headless Chromium: builds wasm/pkg, then the
# client and the in-tab broker, and the client against this ringmq over ws://.
RINGMQ_BIN="${CARGO_TARGET_DIR:-target}/debug/ringmq" bash wasm/tests/run.sh
# The OpenTelemetry build (feature `otel`, off by default): its unit tests
# (traceparent parsing, the shard tracer, the export queue) and the
# black-box test against a binary built with it and an OTLP/HTTP receiver
# inside the test. Last, because it replaces the debug binary with the otel
# build. The engine's trace-hook feature's own tests run first.
cargo test -p ringmq-engine --features trace-hook --lib
cargo test -p ringmq --features otel --bins --test otel
