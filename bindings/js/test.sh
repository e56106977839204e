#!/usr/bin/env bash
# The JavaScript package: build (wasm-bindgen), Node's test runner (a conference, the reference's
# packet and chain vectors, error codes), the TypeScript declarations type-checked, speed beside
# the native numbers, and a real browser (Debian's chromium, driven by playwright-core) running a
# conference in a page, checking that the emojis agree, with a screenshot; then encrypted media in
# the same browser (test/media.mjs): the example examples/browser-media and the media test page,
# real Opus, VP8 and H.264 encoders through the Encoded Transform, with a second screenshot; and
# (test/media.mjs --late, on the tests' build) a member who joins late, heard and seen by every
# member through the session's SSRC map.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$here"
npm ci --no-audit --no-fund --silent
# The tests' build, with the server model (testkit.js) that the session tests need.
bash build.sh --testkit
node --test test/*.test.js
npx tsc -p tsconfig.json
echo "typescript: declarations type-check"
if ! command -v chromium >/dev/null 2>&1; then
  (apt-get update -qq && apt-get install -y -qq chromium fonts-noto-color-emoji) >/dev/null
fi
# A late joiner heard and seen by every member by SSRC in the browser (issue 34): it needs the
# server model, so it runs on the tests' build.
node test/media.mjs --late
# From here on, the package as the npm package is built (no test doubles): the README snippet,
# the speed and the browser run on it.
bash build.sh
if grep -q "class Server" pkg/confchain_js.d.ts; then
  echo "the npm package's build exports the server model" >&2
  exit 1
fi
# The README's JavaScript snippet runs as written (the package imports itself by name).
python3 -c 'import re,sys; print(re.search(r"```js\n(.*?)```", open(sys.argv[1]).read(), re.S).group(1))' \
  "$root/README.md" > "$here/.readme_snippet.mjs"
echo 'console.log("README JavaScript snippet: ok, height", call.height);' >> "$here/.readme_snippet.mjs"
node "$here/.readme_snippet.mjs"
rm -f "$here/.readme_snippet.mjs"

echo "speed, ops/s (WebAssembly in Node | native, same run):"
native="$(cd "$root" && cargo run --release --quiet --features cli -- bench --quick --json packet_ 2>/dev/null)"
node bench.mjs | NATIVE="$native" python3 speed.py

shot="${SCREENSHOT:-$(mktemp -d)/confchain-browser.png}"
node test/browser.mjs "$shot"
node test/media.mjs "${MEDIA_SCREENSHOT:-$(dirname "$shot")/confchain-media.png}"
