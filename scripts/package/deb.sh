#!/usr/bin/env bash
# Builds the Debian package: target/debian/latrine_<version>-1_<arch>.deb.
#
#   scripts/package/deb.sh              # prints the .deb's path last
#   scripts/package/deb.sh --no-build   # packages target/release/latrine as is
#
# The release binary, then its man pages and shell completions (generated
# from the clap definitions by the hidden `latrine generate`) into
# target/package/, then cargo deb --no-build with [package.metadata.deb] in
# Cargo.toml. Needs cargo-deb: cargo install --locked cargo-deb.
#
# --no-build is for .ci/run, right after cargo test --release: that build's
# binary differs from cargo build's only in features its dev-dependencies
# turn on in shared crates (syn's, which are compile-time only; base64's
# SIMD; smallvec's const generics), and building again would take minutes.
set -euo pipefail
cd "$(dirname "$0")/../.."

if ! cargo deb --version >/dev/null 2>&1; then
    echo "deb.sh: cargo-deb is missing; install it with: cargo install --locked cargo-deb" >&2
    exit 1
fi

build=yes
case "${1:-}" in
    --no-build) build=no ;;
    "") ;;
    *) echo "usage: $0 [--no-build]" >&2; exit 2 ;;
esac

if [ "$build" = yes ]; then
    cargo build --release --locked
fi
target_dir=${CARGO_TARGET_DIR:-target}
latrine=$target_dir/release/latrine
if [ ! -x "$latrine" ]; then
    echo "deb.sh: $latrine is missing: run cargo build --release (or omit --no-build)" >&2
    exit 1
fi

# Generated files go where Cargo.toml's assets expect them, whatever
# CARGO_TARGET_DIR says.
out=target/package
rm -rf "$out"
"$latrine" generate man "$out/man" >/dev/null
for shell in bash zsh fish; do
    "$latrine" generate completions "$shell" "$out/completions" >/dev/null
done
# Debian's man pages are gzipped, reproducibly (-n: no name, no time).
gzip -9n "$out"/man/*.1

# Stripped, as Debian ships binaries (67 MB with debug info, 9 without).
cargo deb --no-build --locked --strip
ls -1t "$target_dir"/debian/latrine_*.deb | head -n 1
