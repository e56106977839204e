#!/usr/bin/env bash
# Builds the npm package in bindings/js: the crate for wasm32-unknown-unknown, wasm-bindgen
# (wasm-bindgen-cli from crates.io, the version the crate pins), the ES module entry; prints the
# .wasm size raw and gzipped. `build.sh --testkit` adds the test doubles (the server model and its
# TL front, exported by testkit.js) for the tests; the npm package is built without it.
set -euo pipefail
features=()
if [ "${1:-}" = "--testkit" ]; then features=(--features testkit); fi
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here"
wbg_version="$(sed -n 's/^wasm-bindgen = "=\(.*\)"/\1/p' Cargo.toml)"
rustup target list --installed 2>/dev/null | grep -q wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown
if ! wasm-bindgen --version 2>/dev/null | grep -q "$wbg_version"; then
  cargo install wasm-bindgen-cli --version "$wbg_version" --locked --quiet
fi
cargo build --release --target wasm32-unknown-unknown --quiet "${features[@]}"
rm -rf pkg
wasm-bindgen --target web --out-dir pkg "${CARGO_TARGET_DIR:-target}/wasm32-unknown-unknown/release/confchain_js.wasm"
# wasm-opt from the npm registry's binaryen package (devDependency): -Oz.
[ -x node_modules/.bin/wasm-opt ] || npm ci --no-audit --no-fund --silent
before=$(stat -c %s pkg/confchain_js_bg.wasm)
node_modules/.bin/wasm-opt -Oz --enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext \
  --enable-mutable-globals --enable-reference-types --enable-multivalue \
  pkg/confchain_js_bg.wasm -o pkg/confchain_js_bg.wasm
echo "wasm-opt -Oz: $before -> $(stat -c %s pkg/confchain_js_bg.wasm) bytes"
errors="$(cd pkg && ls snippets/*/src/errors.js | head -n 1)"
sed "s|__ERRORS__|./pkg/$errors|" index.template.js > index.js
raw=$(stat -c %s pkg/confchain_js_bg.wasm)
gz=$(gzip -9 -c pkg/confchain_js_bg.wasm | wc -c)
echo "confchain_js_bg.wasm: $raw bytes, $gz gzipped"
