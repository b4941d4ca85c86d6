#!/usr/bin/env bash
# Runs every cargo-fuzz target of fuzz/ for SECONDS each (default 60), one
# after the other, starting from the committed seeds (fuzz/seeds/<target>/)
# plus whatever earlier runs left in fuzz/corpus/<target>/ (git-ignored).
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]
#
# Prints, per target, the executions and the final coverage (libFuzzer's
# `stat::number_of_executed_units` and last `cov:`/`ft:` line). Fails if a
# target crashes (the input is in fuzz/artifacts/<target>/; reproduce it with
# `cargo +nightly fuzz run <target> <file>`), or if the nightly toolchain or
# cargo-fuzz is missing. Full logs: fuzz/target/fuzz-logs/<target>.log.
#
# Known bugs already reported can be skipped so that a run goes past them:
# LATRINE_FUZZ_KNOWN=schema (see fuzz/src/lib.rs, known_bug).
#
# Environment: FUZZ_ARGS adds libFuzzer options (e.g. FUZZ_ARGS=-seed=1);
# FUZZ_BUILD_ARGS adds `cargo fuzz build` options (e.g. "-s none").
set -euo pipefail

die() {
    echo "fuzz.sh: $*" >&2
    exit 2
}

seconds=${1:-60}
[[ $seconds =~ ^[0-9]+$ && $seconds -gt 0 ]] || die "SECONDS must be a positive integer, got '$seconds'"
shift || true

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root/fuzz"

command -v cargo >/dev/null 2>&1 || die "cargo not found (install Rust with rustup)"
cargo +nightly --version >/dev/null 2>&1 ||
    die "the nightly toolchain is missing: rustup toolchain install nightly"
cargo +nightly fuzz --version >/dev/null 2>&1 ||
    die "cargo-fuzz is missing: cargo install cargo-fuzz"

all=(smtp_session attachments manifest escape_roundtrip client_hello)
if (($# > 0)); then
    targets=("$@")
    for t in "${targets[@]}"; do
        [[ " ${all[*]} " == *" $t "* ]] || die "unknown target '$t' (targets: ${all[*]})"
    done
else
    targets=("${all[@]}")
fi

# Build once up front, so that build time does not eat into fuzzing time.
build_one=()
((${#targets[@]} == 1)) && build_one=("${targets[0]}")
# shellcheck disable=SC2086
cargo +nightly fuzz build ${FUZZ_BUILD_ARGS:-} "${build_one[@]}" ||
    die "cargo fuzz build failed"

logs="$root/fuzz/target/fuzz-logs"
mkdir -p "$logs"
failed=()
summary=()
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t" "artifacts/$t"
    log="$logs/$t.log"
    echo "== $t: ${seconds}s from fuzz/seeds/$t (log: ${log#"$root"/})"
    status=0
    dict=()
    case $t in
    smtp_session) dict=(-dict=smtp.dict) ;;
    manifest) dict=(-dict=manifest.dict) ;;
    esac
    # The first corpus directory receives new inputs; the seeds are read only.
    # shellcheck disable=SC2086
    cargo +nightly fuzz run ${FUZZ_BUILD_ARGS:-} "$t" "corpus/$t" "seeds/$t" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 "${dict[@]}" ${FUZZ_ARGS:-} >"$log" 2>&1 || status=$?
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | tail -1 | grep -o '[0-9]*$' || true)
    cov=$(grep -E '^#[0-9]+.*cov: ' "$log" | tail -1 | grep -oE 'cov: [0-9]+ ft: [0-9]+ corp: [^ ]+' || true)
    line="$t: executions ${execs:-?}, ${cov:-no coverage line}"
    if ((status != 0)); then
        crash=$(grep -oE 'artifact_prefix=[^;]*; Test unit written to [^ ]+' "$log" | tail -1 | sed 's/.*written to //' || true)
        line="$line, FAILED (exit $status${crash:+, input $crash})"
        failed+=("$t")
        grep -E 'panicked at|^thread .* panicked|ERROR: libFuzzer|SUMMARY' "$log" | head -5 | sed 's/^/    /' || true
    fi
    echo "   $line"
    summary+=("$line")
done

echo
echo "== summary (${seconds}s per target)"
printf '   %s\n' "${summary[@]}"
if ((${#failed[@]} > 0)); then
    echo "fuzz.sh: crashes in: ${failed[*]} (inputs in fuzz/artifacts/<target>/, logs in fuzz/target/fuzz-logs/)" >&2
    exit 1
fi
