#!/usr/bin/env bash
# Builds the Python distributions users install, and proves them from a clean place:
#   * an abi3 wheel for manylinux2014 (glibc 2.17: any Linux a user has), cross-linked with zig
#     (the `ziglang` package from PyPI, no download of its own), and an sdist;
#   * the wheel installed into a fresh virtualenv with no Rust toolchain on PATH, then the tests;
#   * the type stub checked with mypy (strict) against a typed program that uses the package.
# OUT (default bindings/python/dist) receives the wheel and the sdist.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:-$here/dist}"
mkdir -p "$out"
build="$(mktemp -d)"
trap 'rm -rf "$build"' EXIT
python3 -m venv "$build/tools"
"$build/tools/bin/python" -m pip install --quiet --disable-pip-version-check "maturin>=1.5,<2" ziglang
cd "$here"
PATH="$build/tools/bin:$PATH" maturin build --release --quiet --zig --compatibility manylinux2014 --out "$out"
PATH="$build/tools/bin:$PATH" maturin sdist --out "$out" >/dev/null
wheel="$(ls "$out"/confchain-*manylinux2014*.whl | head -n 1)"
ls "$out"
# The wheel must really be manylinux2014 (no newer glibc symbol versions inside).
python3 - "$wheel" <<'PY'
import re, sys, zipfile
z = zipfile.ZipFile(sys.argv[1])
so = [n for n in z.namelist() if n.endswith(".so")]
data = z.read(so[0])
versions = sorted({tuple(map(int, m.split(b".")[1:])) for m in re.findall(rb"GLIBC_2\.[0-9.]+", data) if m.count(b".") >= 1})
newest = max(versions) if versions else (0,)
print("newest glibc symbol version:", "2." + ".".join(map(str, newest)))
assert newest <= (17,), "needs a glibc newer than manylinux2014's 2.17"
PY

# A fresh virtualenv, and a PATH without cargo or rustc.
venv="$build/user"
python3 -m venv "$venv"
clean_path="$venv/bin:/usr/local/bin:/usr/bin:/bin"
if PATH="$clean_path" command -v cargo >/dev/null 2>&1 || PATH="$clean_path" command -v rustc >/dev/null 2>&1; then
  echo "a Rust toolchain is still on PATH" >&2
  exit 1
fi
PATH="$clean_path" "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$wheel" pytest mypy
PATH="$clean_path" "$venv/bin/python" -m pytest -q -p no:cacheprovider "$here/tests" --import-mode=importlib
cat > "$build/typed_use.py" <<'PY'
"""A typed program using the installed package: mypy --strict checks it against the stub."""
import confchain


def round_trip() -> bytes:
    rng = confchain.Rng.from_os()
    keys = [confchain.PrivateKey.generate(rng) for _ in range(2)]
    members = [confchain.Participant(i + 1, k.public_key, 3) for i, k in enumerate(keys)]
    zero = confchain.to_server_form(confchain.create_zero_block(keys[0], members, 0, rng))
    alice = confchain.Call(1, keys[0], zero, rng)
    bob = confchain.Call(2, keys[1], zero, rng)
    packet: bytes = alice.encrypt(0, b"frame", 0, rng)
    session = confchain.Session(3)
    request = session.poll_request()
    assert request is None or isinstance(request.kind, str)
    return bob.decrypt(1, packet, 0)


def media_frames() -> None:
    rng = confchain.Rng.from_os()
    keys = [confchain.PrivateKey.generate(rng) for _ in range(2)]
    members = [confchain.Participant(i + 1, k.public_key, 3) for i, k in enumerate(keys)]
    zero = confchain.to_server_form(confchain.create_zero_block(keys[0], members, 0, rng))
    alice = confchain.Call(1, keys[0], zero, rng)
    bob = confchain.Call(2, keys[1], zero, rng)
    decryptor = bob.media_decryptor()  # closed with the call: keep bob
    level: int = confchain.audio_level_from_peak(2000)
    packet: bytes = alice.encrypt_frame(confchain.CHANNEL_MAIN, "opus", b"\x78\x01", 0, rng, level=level, speech=True)
    frame, got_level, speech = decryptor.decrypt_frame(1, confchain.PAYLOAD_TYPE_OPUS, packet, 0)
    assert (frame, got_level, speech) == (b"\x78\x01", level, True)
    sent, prefix, attempts = alice.media_encryptor(rng).encrypt_frame_info(0, "vp8", b"\x11abc", 1)
    data, clear = confchain.frame_plaintext("h264", b"\x00\x00\x00\x01\x65\x88\x84\x21")
    assert confchain.frame_is_valid_encrypted("h264", data, clear) and attempts == 1 and prefix == 1


assert round_trip() == b"frame"
media_frames()
PY
PATH="$clean_path" "$venv/bin/python" -m mypy --strict --no-incremental "$build/typed_use.py"
PATH="$clean_path" "$venv/bin/python" "$build/typed_use.py"
echo "wheel installed and tested without a Rust toolchain: ok"
