#!/usr/bin/env bash
# Creates a virtualenv, builds the module with maturin and runs pytest.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="${CONFCHAIN_VENV:-$here/.venv}"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check "maturin>=1.5,<2" pytest
# The native media test (tests/test_media_native.py): real encoders (PyAV's wheels bundle libx264,
# libvpx and libopus) and aiortc's RTP packetizers; binary wheels only, nothing is compiled.
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --only-binary=:all: "av>=14,<19" "aiortc>=1.9,<2"
cd "$here"
# With the server model (`testkit`: the session tests need it; the wheel users install, built by
# dist_test.sh, leaves it out).
VIRTUAL_ENV="$venv" PATH="$venv/bin:$PATH" "$venv/bin/maturin" develop --release --quiet --features testkit
"$venv/bin/python" -m pytest -q tests
# The README's Python snippet runs as written.
"$venv/bin/python" - "$here/../../README.md" <<'PY'
import re, sys
exec(re.search(r"```python\n(.*?)```", open(sys.argv[1]).read(), re.S).group(1))
print("README Python snippet: ok")
PY
# The wheel builds too (with the same features: no second build; dist_test.sh builds the release one).
wheels="$(mktemp -d)"
"$venv/bin/maturin" build --release --quiet --features testkit --out "$wheels"
ls "$wheels"/confchain-*.whl
rm -rf "$wheels"
