#!/usr/bin/env bash
# Builds the C library and installs it under PREFIX (default /usr/local), the way C and C++
# projects expect to find it:
#   PREFIX/lib/libconfchain.so.MAJOR.MINOR.PATCH  (soname libconfchain.so.0.MINOR for 0.x)
#   PREFIX/lib/libconfchain.so -> ..., libconfchain.so.<soname version> -> ...
#   PREFIX/lib/libconfchain.a                      (only confchain_* symbols are global)
#   PREFIX/include/confchain.h, confchain_tgcalls.hpp (C++17: tgcalls' e2eEncryptDecrypt callback)
#   PREFIX/lib/pkgconfig/confchain.pc
#   PREFIX/lib/cmake/confchain/confchainConfig.cmake, confchainConfigVersion.cmake
# Both libraries export only the confchain_* functions: the shared one through a version script,
# the static one by localizing every other symbol of its single relocatable object, so that it
# cannot clash with another Rust static library (its copy of std) in the same program.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
prefix="${1:-/usr/local}"
version="$(sed -n 's/^version = "\(.*\)"/\1/p' "$root/Cargo.toml" | head -n 1)"
major="${version%%.*}"
rest="${version#*.}"
minor="${rest%%.*}"
# 0.x releases break at minor versions, so the soname carries the minor number too.
if [ "$major" = "0" ]; then soversion="0.$minor"; else soversion="$major"; fi

cd "$root"
cargo rustc --release -p confchain-c --crate-type cdylib -- \
  -C link-arg=-Wl,-soname,libconfchain.so."$soversion" \
  -C link-arg=-Wl,--version-script="$here/confchain.map"
cargo rustc --release -p confchain-c --crate-type staticlib
lib="${CARGO_TARGET_DIR:-$root/target}/release"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
# One relocatable object holding the whole archive, then every non-confchain symbol made local.
(cd "$work" && ld -r --whole-archive "$lib/libconfchain.a" -o confchain.o)
# (readelf, not nm: nm's LTO plugin chokes on Rust objects.)
readelf -sW "$work/confchain.o" | awk '$5 == "GLOBAL" && $7 != "UND" {print $8}' | grep '^confchain_' > "$work/keep.txt"
# The unwinder's personality pointer is a weak COMDAT that other Rust objects share: kept as is.
echo "DW.ref.rust_eh_personality" >> "$work/keep.txt"
objcopy --keep-global-symbols="$work/keep.txt" "$work/confchain.o"
rm -f "$work/libconfchain.a"
ar --plugin /dev/null rcs "$work/libconfchain.a" "$work/confchain.o"

install -d "$prefix/lib/pkgconfig" "$prefix/include" "$prefix/lib/cmake/confchain"
install -m 0755 "$lib/libconfchain.so" "$prefix/lib/libconfchain.so.$version"
ln -sf "libconfchain.so.$version" "$prefix/lib/libconfchain.so.$soversion"
ln -sf "libconfchain.so.$soversion" "$prefix/lib/libconfchain.so"
install -m 0644 "$work/libconfchain.a" "$prefix/lib/libconfchain.a"
install -m 0644 "$here/include/confchain.h" "$prefix/include/confchain.h"
install -m 0644 "$here/include/confchain_tgcalls.hpp" "$prefix/include/confchain_tgcalls.hpp"

cat > "$prefix/lib/pkgconfig/confchain.pc" <<PC
prefix=$prefix
libdir=\${prefix}/lib
includedir=\${prefix}/include

Name: confchain
Description: Telegram E2E conference calls (tde2e-compatible), sans-IO
Version: $version
Libs: -L\${libdir} -lconfchain
Libs.private: -lpthread -ldl -lm
Cflags: -I\${includedir}
PC

cat > "$prefix/lib/cmake/confchain/confchainConfig.cmake" <<'CMAKE'
# find_package(confchain) gives confchain::confchain (shared) and confchain::confchain_static.
get_filename_component(_confchain_prefix "${CMAKE_CURRENT_LIST_DIR}/../../.." ABSOLUTE)
if(NOT TARGET confchain::confchain)
  add_library(confchain::confchain SHARED IMPORTED)
  set_target_properties(confchain::confchain PROPERTIES
    IMPORTED_LOCATION "${_confchain_prefix}/lib/libconfchain.so"
    INTERFACE_INCLUDE_DIRECTORIES "${_confchain_prefix}/include")
  add_library(confchain::confchain_static STATIC IMPORTED)
  set_target_properties(confchain::confchain_static PROPERTIES
    IMPORTED_LOCATION "${_confchain_prefix}/lib/libconfchain.a"
    INTERFACE_INCLUDE_DIRECTORIES "${_confchain_prefix}/include"
    INTERFACE_LINK_LIBRARIES "pthread;dl;m")
endif()
set(confchain_FOUND TRUE)
CMAKE
cat > "$prefix/lib/cmake/confchain/confchainConfigVersion.cmake" <<CMAKE
set(PACKAGE_VERSION "$version")
if(PACKAGE_FIND_VERSION VERSION_GREATER PACKAGE_VERSION)
  set(PACKAGE_VERSION_COMPATIBLE FALSE)
elseif("$major" STREQUAL "0" AND NOT PACKAGE_FIND_VERSION_MINOR STREQUAL "$minor" AND DEFINED PACKAGE_FIND_VERSION_MINOR)
  set(PACKAGE_VERSION_COMPATIBLE FALSE)
else()
  set(PACKAGE_VERSION_COMPATIBLE TRUE)
  if(PACKAGE_FIND_VERSION STREQUAL PACKAGE_VERSION)
    set(PACKAGE_VERSION_EXACT TRUE)
  endif()
endif()
CMAKE
echo "installed confchain $version (soname libconfchain.so.$soversion) under $prefix"
