#!/usr/bin/env bash
# The whole test suite (the README's test command): unit, property, scenario
# and black-box tests of every crate, then the black-box MQTT conformance
# runner (../shared/conformance.py) against the real ringmq binary, and the
# wasm package's tests in headless Chromium (wasm/tests/run.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
# On the default backend (io = "auto": the native io_uring shard loop where
# the kernel accepts its setup; the black-box harness fails a test whose
# broker fell back to monoio without logging the kernel's refusal).
cargo test --workspace
# The engine's scenario tests again (virtual time, engine/tests/sim) with the
# in-tab broker's configuration (`BrokerConfig::in_tab`, the wasm package's
# limits): the in-tab broker is the same engine with one shard and smaller
# bounds, and must pass the same scenarios.
RINGMQ_SIM_PROFILE=in-tab cargo test -p ringmq-engine --tests
# The black-box tests again on the portable monoio fallback, epoll driver
# (kernels or sandboxes without io_uring, and the code path non-Linux
# systems use).
RINGMQ_TEST_IO=epoll cargo test -p ringmq --tests
# The conformance runner uses the debug binary the tests just built: on the
# default backend, then on both monoio fallbacks (io_uring, where the kernel
# refuses the native loop's features, and epoll).
cargo build -p ringmq
RINGMQ_BIN="${CARGO_TARGET_DIR:-target}/debug/ringmq" bash tests/run-conformance.sh
RINGMQ_FLAGS="--io uring" RINGMQ_BIN="${CARGO_TARGET_DIR:-target}/debug/ringmq" bash tests/run-conformance.sh
RINGMQ_FLAGS="--io epoll" RINGMQ_BIN="${CARGO_TARGET_DIR:-target}/debug/ringmq" bash tests/run-conformance.sh
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
