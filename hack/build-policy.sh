#!/usr/bin/env bash
# Builds the rules as a Kubewarden policy module (crates/pitrguard-policy) to
# target/policy/pitrguard-policy.wasm and prints its size and sha256.
#
# rustup cannot fetch the wasm32 standard library here, so this uses Debian's
# matched compiler and std source (rustc-web 1.96) with -Zbuild-std; see
# ../shared/notes/wasm-build.md. The toolchain is installed when missing.
# The build is reproducible: the same sources and Cargo.lock give the same bytes
# (paths are remapped, one codegen unit, no debug info, wasm-opt is deterministic).
#
# Environment: PITRGUARD_POLICY_OUT (default target/policy/pitrguard-policy.wasm).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
out=${PITRGUARD_POLICY_OUT:-target/policy/pitrguard-policy.wasm}
target=wasm32-wasip1

debs=(rustc-web cargo-web rust-web-src rust-web-llvm lld-22 wasi-libc binaryen)
need=()
for p in "${debs[@]}"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || need+=("$p"); done
if ((${#need[@]})); then
  echo "build-policy: installing ${need[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

registry=${CARGO_HOME:-$HOME/.cargo}/registry/src
export RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1
export CARGO_TARGET_DIR=$root/target/policy-build
# Debian's wasi-libc instead of a self-contained copy; remapped paths so that
# the bytes do not depend on where the checkout or the cargo home live.
export CARGO_TARGET_WASM32_WASIP1_RUSTFLAGS="-C link-self-contained=no -L native=/usr/lib/wasm32-wasi \
--remap-path-prefix=$root=/pitrguard --remap-path-prefix=$registry=/cargo/registry \
--remap-path-prefix=/usr/lib/rustlib/src/rust=/rustc/src"
unset RUSTFLAGS CARGO_ENCODED_RUSTFLAGS
start=$SECONDS
/usr/bin/cargo build --locked --profile policy -p pitrguard-policy --target $target \
  -Zbuild-std=std,panic_abort
built=$CARGO_TARGET_DIR/$target/policy/pitrguard_policy.wasm
mkdir -p "$(dirname "$out")"
wasm-opt -Oz --enable-bulk-memory --enable-sign-ext --enable-mutable-globals --enable-nontrapping-float-to-int \
  --enable-multivalue --enable-reference-types --strip-debug --strip-producers "$built" -o "$out.tmp"
mv "$out.tmp" "$out"
size=$(stat -c %s "$out")
echo "build-policy: $out $size bytes ($((size / 1024)) KiB) sha256 $(sha256sum "$out" | cut -d' ' -f1) in $((SECONDS - start))s" >&2
