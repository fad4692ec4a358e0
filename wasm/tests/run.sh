#!/usr/bin/env bash
# The wasm package's browser tests (tests/run-all.sh runs this): builds
# wasm/pkg with wasm/build.sh, then runs wasm/tests/browser.mjs in headless
# Chromium against the in-tab broker and the ringmq debug binary (built by
# the caller). Needs chromium, node with tests/node's packages
# (puppeteer-core, MQTT.js; esbuild, react, react-dom, vue for the
# examples of wasm/examples), wasm-bindgen-cli and wasm-opt: .ci/run
# installs them. Without them this prints SKIPPED, except with CI=true,
# where a missing tool fails.
set -euo pipefail
cd "$(dirname "$0")/../.."
missing=()
[ -x "${CHROMIUM:-/usr/bin/chromium}" ] || missing+=("chromium (apt-get install chromium)")
ringmq_bin="${RINGMQ_BIN:-${CARGO_TARGET_DIR:-target}/debug/ringmq}"
[ -x "$ringmq_bin" ] || missing+=("the ringmq binary $ringmq_bin (cargo build -p ringmq)")
command -v node >/dev/null || missing+=("node (apt-get install nodejs npm)")
[ -d tests/node/node_modules/puppeteer-core ] || missing+=("puppeteer-core (npm ci --prefix tests/node)")
[ -x tests/node/node_modules/.bin/wasm-opt ] || missing+=("wasm-opt (npm's binaryen: npm ci --prefix tests/node)")
# The React and Vue examples (wasm/examples/build.sh bundles them).
[ -x tests/node/node_modules/.bin/esbuild ] || missing+=("esbuild (npm ci --prefix tests/node)")
for pkg in react react-dom vue; do
  [ -f tests/node/node_modules/$pkg/package.json ] || missing+=("$pkg (npm ci --prefix tests/node)")
done
rustup target list --installed 2>/dev/null | grep -q wasm32-unknown-unknown \
  || missing+=("the wasm32-unknown-unknown target (rustup target add wasm32-unknown-unknown)")
want=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)
[ "$(wasm-bindgen --version 2>/dev/null | awk '{ print $2 }')" = "$want" ] \
  || missing+=("wasm-bindgen-cli $want (cargo install --locked --version $want wasm-bindgen-cli)")
if [ ${#missing[@]} -gt 0 ]; then
  if [ "${CI:-}" = "true" ]; then
    printf 'wasm browser tests: missing %s\n' "${missing[@]}" >&2
    exit 1
  fi
  printf 'SKIPPED wasm browser tests: missing %s\n' "${missing[@]}"
  exit 0
fi
bash wasm/build.sh --no-install
bash wasm/examples/build.sh
# A hung browser must not hang the suite: 10 minutes at most.
timeout -k 10 600 node wasm/tests/browser.mjs "$@"
