#!/usr/bin/env bash
# Installs confchain into a temporary prefix and builds consumers against the installed files
# only: the C conference test with pkg-config (shared library), a C++17 program with CMake
# (static and shared), and a C program linking confchain's static library next to another Rust
# static library with --whole-archive (no symbol clash).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
prefix="$(mktemp -d)"
work="$(mktemp -d)"
trap 'rm -rf "$prefix" "$work"' EXIT
bash "$here/../install.sh" "$prefix" >/dev/null
# Release builds leave the test doubles out (the `testkit` feature): no server model in them.
if readelf -sW --dyn-syms "$prefix/lib/libconfchain.so" | grep -q 'confchain_server_'; then
  echo "the installed library exports the server model (confchain_server_*)" >&2
  exit 1
fi
if ! command -v cmake >/dev/null 2>&1; then
  (apt-get update -qq && apt-get install -y -qq cmake) >/dev/null
fi

export PKG_CONFIG_PATH="$prefix/lib/pkgconfig"
echo "pkg-config: confchain $(pkg-config --modversion confchain)"
cc -std=c99 -Wall -Werror $(pkg-config --cflags confchain) "$here/../tests/conference.c" -o "$work/conference" \
  $(pkg-config --libs confchain)
LD_LIBRARY_PATH="$prefix/lib" "$work/conference" | tail -n 1
# (ldd's output goes to a file first: `ldd | grep -q` fails under pipefail whenever grep exits
# before ldd has written everything and ldd dies of SIGPIPE.)
LD_LIBRARY_PATH="$prefix/lib" ldd "$work/conference" >"$work/ldd.txt"
grep -q "$prefix/lib/libconfchain.so.0" "$work/ldd.txt" \
  || { echo "not linked against the installed shared library:" >&2; cat "$work/ldd.txt" >&2; exit 1; }

cmake -S "$here" -B "$work/cmake" -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$work/cmake" >/dev/null
"$work/cmake/consumer"
LD_LIBRARY_PATH="$prefix/lib" "$work/cmake/consumer_shared"

(cd "$here/other_rust" && cargo build --release --quiet --target-dir "$work/other")
cc -I"$prefix/include" "$here/two_rust_libs.c" -Wl,--whole-archive "$prefix/lib/libconfchain.a" -Wl,--no-whole-archive \
  "$work/other/release/libother_rust.a" -lpthread -ldl -lm -o "$work/two"
"$work/two"
echo "installed-package consumers: ok"
