#!/usr/bin/env bash
# Builds every release artifact into dist/ (or $1), with SHA-256 checksums:
#   confchain-VERSION.crate                       the Rust crate (cargo package)
#   confchain-c-VERSION-linux-x86_64.tar.gz       lib/ (soname .so, .a, pkg-config, CMake), include/
#   confchain-VERSION-cp39-abi3-manylinux2014_x86_64...whl, confchain-VERSION.tar.gz (Python)
#   SHA256SUMS
# The Python wheel is installed into a clean virtualenv and tested on the way (dist_test.sh).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
dist="${1:-$root/dist}"
rm -rf "$dist"
mkdir -p "$dist"
cd "$root"
version="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)"

echo "== crate"
cargo package -p confchain --quiet --allow-dirty
cp "target/package/confchain-$version.crate" "$dist/"

echo "== C library"
stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
bash bindings/c/install.sh "$stage/confchain-c-$version" >/dev/null
# Relocatable: the pkg-config file names its prefix relative to itself.
sed -i 's|^prefix=.*|prefix=${pcfiledir}/../..|' "$stage/confchain-c-$version/lib/pkgconfig/confchain.pc"
cp LICENSE-MIT LICENSE-APACHE README.md "$stage/confchain-c-$version/"
tar -C "$stage" -czf "$dist/confchain-c-$version-linux-x86_64.tar.gz" "confchain-c-$version"

echo "== Python"
bash bindings/python/dist_test.sh "$dist"

(cd "$dist" && sha256sum -- * > SHA256SUMS)
echo "== dist/"
ls -l "$dist"
