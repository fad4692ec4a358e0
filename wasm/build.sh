#!/usr/bin/env bash
# Builds the browser package: wasm/pkg (client + in-tab broker) and
# wasm/pkg-client (client only), each an ES module for `--target web`
# (ringmq_wasm.js, ringmq_wasm.d.ts, ringmq_wasm_bg.wasm), optimised by
# wasm-opt, and prints the .wasm sizes, raw and gzipped.
#
# Needs: the wasm32-unknown-unknown target (rustup), wasm-bindgen-cli at
# exactly the version of the wasm-bindgen crate in Cargo.lock (installed
# here with cargo install when missing or different), and wasm-opt from
# binaryen >= 116: npm's `binaryen` in tests/node (npm ci --prefix
# tests/node), or a system wasm-opt that new. Debian 12's binaryen (108)
# writes wasm-bindgen's externref table with the wrong type: the module
# then fails to instantiate ("WebAssembly.Table.set(): ... must be null").
# Usage: bash wasm/build.sh [--no-install | --cargo-only]
# --cargo-only: only the two cargo builds, nothing else needed or written
# (tests/run-all.sh runs them ahead, in the background, so that the
# browser tests find them done).
set -euo pipefail
cd "$(dirname "$0")/.."
target_dir="${CARGO_TARGET_DIR:-target}"

# The packages: features, output folder.
packages=("client,broker wasm/pkg" "client wasm/pkg-client")
if [ "${1:-}" = "--cargo-only" ]; then
  for p in "${packages[@]}"; do
    cargo build --quiet -p ringmq-wasm --target wasm32-unknown-unknown --profile wasm \
      --no-default-features --features "${p%% *}"
  done
  exit 0
fi

# The CLI must match the crate exactly: the generated glue and the
# crate's custom sections are versioned together.
version=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)
[ -n "$version" ] || { echo "wasm-bindgen not found in Cargo.lock" >&2; exit 1; }
installed=$(wasm-bindgen --version 2>/dev/null | awk '{ print $2 }' || true)
if [ "$installed" != "$version" ]; then
  if [ "${1:-}" = "--no-install" ]; then
    echo "wasm-bindgen-cli $version needed (found: ${installed:-none})" >&2
    exit 1
  fi
  echo "installing wasm-bindgen-cli $version (found: ${installed:-none})"
  # --locked first (the CLI's own lock file); a registry mirror missing a
  # version pinned there makes that fail, so then resolve afresh.
  cargo install --quiet --locked --version "$version" wasm-bindgen-cli \
    || cargo install --quiet --version "$version" wasm-bindgen-cli
fi
wasm_opt=tests/node/node_modules/.bin/wasm-opt
if [ ! -x "$wasm_opt" ]; then
  wasm_opt=$(command -v wasm-opt || true)
  if [ -z "$wasm_opt" ] || [ "$("$wasm_opt" --version | awk '{ print $3 }')" -lt 116 ]; then
    echo "wasm-opt from binaryen >= 116 needed: npm ci --prefix tests/node" >&2
    exit 1
  fi
fi

# build FEATURES OUT_DIR
build() {
  cargo build --quiet -p ringmq-wasm --target wasm32-unknown-unknown --profile wasm \
    --no-default-features --features "$1"
  wasm-bindgen --target web --out-dir "$2" \
    "$target_dir/wasm32-unknown-unknown/wasm/ringmq_wasm.wasm"
  # -Oz: size first (the engine's hot paths are small loops either way).
  # The feature flags are those of the Rust target (Rust >= 1.82 emits
  # bulk-memory, sign-ext, nontrapping float-to-int, multivalue).
  "$wasm_opt" -Oz --enable-bulk-memory --enable-sign-ext --enable-nontrapping-float-to-int \
    --enable-mutable-globals --enable-multivalue --enable-reference-types \
    --strip-debug --strip-producers \
    -o "$2/ringmq_wasm_bg.wasm" "$2/ringmq_wasm_bg.wasm"
  local raw gz
  raw=$(stat -c %s "$2/ringmq_wasm_bg.wasm")
  gz=$(gzip -9 -c "$2/ringmq_wasm_bg.wasm" | wc -c)
  printf '%-14s %-15s %8d bytes raw  %8d bytes gzip -9\n' "$2" "$1" "$raw" "$gz"
}

for p in "${packages[@]}"; do
  # shellcheck disable=SC2086
  build $p
done
