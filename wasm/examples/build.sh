#!/usr/bin/env bash
# Bundles the React and Vue examples (wasm/examples/react, wasm/examples/vue)
# with esbuild into static files: wasm/examples/{react,vue}/dist/app.js
# (an ES module exporting mount()) plus the package's .wasm, copied next
# to it by esbuild's file loader. No dev server: open
# wasm/examples/{react,vue}/index.html from any static file server.
#
# Needs wasm/pkg (bash wasm/build.sh) and esbuild, react, react-dom and
# vue from tests/node (npm ci --prefix tests/node; .ci/run does it).
# Usage: bash wasm/examples/build.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
esbuild=tests/node/node_modules/.bin/esbuild
[ -x "$esbuild" ] || { echo "esbuild missing: npm ci --prefix tests/node" >&2; exit 1; }
[ -f wasm/pkg/ringmq_wasm.js ] || { echo "wasm/pkg missing: bash wasm/build.sh" >&2; exit 1; }
# The examples import react / vue by name; here they live in tests/node.
export NODE_PATH="$PWD/tests/node/node_modules"
common=(--bundle --format=esm --minify --sourcemap --log-level=warning
  --loader:.wasm=file --asset-names=[name]-[hash]
  --define:process.env.NODE_ENV='"production"')
rm -rf wasm/examples/react/dist wasm/examples/vue/dist
"$esbuild" wasm/examples/react/App.jsx "${common[@]}" --jsx=automatic \
  --outfile=wasm/examples/react/dist/app.js
# Vue's esm-bundler build expects its feature flags to be defined.
"$esbuild" wasm/examples/vue/App.js "${common[@]}" \
  --define:__VUE_OPTIONS_API__=true --define:__VUE_PROD_DEVTOOLS__=false \
  --define:__VUE_PROD_HYDRATION_MISMATCH_DETAILS__=false \
  --outfile=wasm/examples/vue/dist/app.js
for f in wasm/examples/react/dist/app.js wasm/examples/vue/dist/app.js; do
  printf '%-32s %8d bytes (gzip -9: %d)\n' "$f" "$(stat -c %s "$f")" "$(gzip -9 -c "$f" | wc -c)"
done
