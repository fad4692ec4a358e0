#!/usr/bin/env bash
# Build FlashMQ (https://github.com/halfgaar/FlashMQ, a peer broker for the
# benchmarks) from a source tree and install its binary as
# $PEERS_DIR/bin/flashmq; print that path. Idempotent: an existing binary
# built from the same source version is kept.
#
#   FLASHMQ_SRC=DIR bench/peers/flashmq.sh
#
# FLASHMQ_SRC: a FlashMQ source tree (CMakeLists.txt at its top), e.g. a
# `git clone https://github.com/halfgaar/FlashMQ` or, on machines without
# GitHub access, an export of a local mirror:
#   git --git-dir=/work/.mirror/halfgaar+FlashMQ/repo archive HEAD | tar -x -C DIR
# Needs cmake, g++ and libssl-dev (Debian: apt-get install -y cmake g++ libssl-dev).
# Env: PEERS_DIR (default ~/.cache/mqtt-peers), JOBS (default: nproc).
#
# Start it for a benchmark with bench/peers/flashmq.conf's settings:
# `thread_count 1`, one plain listener on 127.0.0.1 (see bench/cpu-scenarios.sh).
set -euo pipefail
SRC="${FLASHMQ_SRC:?FLASHMQ_SRC: a FlashMQ source tree (see the comment at the top)}"
[[ -f "$SRC/CMakeLists.txt" ]] || { echo "flashmq.sh: no CMakeLists.txt in $SRC" >&2; exit 1; }
command -v cmake >/dev/null || { echo "flashmq.sh: cmake not installed (apt-get install -y cmake)" >&2; exit 1; }
PEERS_DIR="${PEERS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/mqtt-peers}"
JOBS="${JOBS:-$(nproc)}"
version=$(sed -n 's/^project(FlashMQ VERSION \([0-9.]*\).*/\1/p' "$SRC/CMakeLists.txt")
[[ -n "$version" ]] || { echo "flashmq.sh: no FlashMQ version in $SRC/CMakeLists.txt" >&2; exit 1; }
bin="$PEERS_DIR/bin/flashmq"
stamp="$PEERS_DIR/flashmq.version"
if [[ -x "$bin" && -f "$stamp" && "$(cat "$stamp")" == "$version" ]]; then
  echo "$bin"; exit 0
fi
build="$PEERS_DIR/build/flashmq-$version"
mkdir -p "$build" "$PEERS_DIR/bin"
echo "flashmq.sh: building FlashMQ $version from $SRC in $build (a few minutes)" >&2
cmake -S "$SRC" -B "$build" -DCMAKE_BUILD_TYPE=Release >"$build/cmake.log" 2>&1 \
  || { echo "flashmq.sh: cmake failed, see $build/cmake.log" >&2; exit 1; }
cmake --build "$build" --target flashmq -j "$JOBS" >"$build/build.log" 2>&1 \
  || { echo "flashmq.sh: build failed, see $build/build.log" >&2; exit 1; }
install -m 755 "$build/flashmq" "$bin"
echo "$version" >"$stamp"
echo "$bin"
