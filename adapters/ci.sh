#!/usr/bin/env bash
# Proves the MTProto adapters with no network (issue 24): every request is built as the library's
# own object, serialized by the library, answered by the server model's TL front from those bytes,
# and parsed back by the library. Each library is installed here at the pinned version.
#   Rust:   the TL codec and front (confchain::api::tl, confchain::server::tl), grammers 0.11
#   Python: Telethon 1.45.0 and Kurigram 2.2.26 (pyrogram), over the Python module
#   JS:     mtcute (@mtcute/core 0.30.3, @mtcute/tl 223.0.0), pinned in bindings/js/package.json;
#           bindings/js/test.sh runs the same test with the package's others (SKIP_JS=1 skips it here)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
export PYTHONDONTWRITEBYTECODE=1

echo "== adapters: TL codec and server front (Rust)"
cargo test --lib --quiet --features testkit -- api::tl server::tl
cargo test --doc --quiet --features testkit -- server::tl

echo "== adapters: grammers (grammers-tl-types / grammers-mtsender =0.11.0)"
cargo test -p confchain-grammers --quiet
cargo build -p confchain-grammers --example join --features client --quiet

echo "== adapters: Telethon 1.45.0 and Kurigram 2.2.26"
venv="${CONFCHAIN_ADAPTERS_VENV:-${TMPDIR:-/tmp}/confchain-adapters-venv}"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check "maturin>=1.5,<2" pytest \
  "telethon==1.45.0" "kurigram==2.2.26"
(cd bindings/python && VIRTUAL_ENV="$venv" PATH="$venv/bin:$PATH" "$venv/bin/maturin" develop --release --quiet --features testkit)
(cd adapters/python && "$venv/bin/python" -m pytest -q -p no:cacheprovider test_telethon.py test_pyrogram.py)
# The examples import and compile (they need a Telegram account to run).
"$venv/bin/python" -c 'import ast, sys; [ast.parse(open(f).read(), f) for f in sys.argv[1:]]' \
  adapters/examples/telethon_join.py adapters/examples/pyrogram_join.py
echo "python examples: compile"

if [ "${SKIP_JS:-0}" != 1 ]; then
  echo "== adapters: mtcute (@mtcute/core 0.30.3, @mtcute/tl 223.0.0)"
  cd bindings/js
  npm ci --no-audit --no-fund --silent
  # build.sh finds the wasm under bindings/js/target.
  env -u CARGO_TARGET_DIR bash build.sh --testkit >/dev/null
  node --test test/mtcute.test.js
  node --check examples/mtcute-join.mjs
fi
