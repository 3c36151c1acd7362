#!/usr/bin/env bash
# Fuzzes the index loader for a fixed time.
#
#   fuzz/run.sh [TARGET] [SECONDS] [WORKERS]
#
# TARGET  load | load_resealed (default: both, SECONDS each)
# SECONDS wall time per target (default 120)
# WORKERS parallel libFuzzer processes (-fork=N; default 1)
#
# Builds the target with libFuzzer's coverage instrumentation and
# AddressSanitizer, the same flags cargo-fuzz passes, with plain cargo, so
# neither cargo-fuzz nor a nightly toolchain is needed: RUSTC_BOOTSTRAP=1
# lets the stable compiler accept -Zsanitizer. (`cargo fuzz run TARGET`
# also works where cargo-fuzz and nightly are installed.) Crashes land in
# fuzz/artifacts/TARGET/; turn each into a test in tests/rust/fuzz_regressions.rs.
set -euo pipefail
cd "$(dirname "$0")"

targets=${1:-"load load_resealed"}
secs=${2:-120}
workers=${3:-1}
triple=$(rustc -vV | sed -n 's/^host: //p')

export RUSTC_BOOTSTRAP=1
export RUSTFLAGS="-Cpasses=sancov-module \
 -Cllvm-args=-sanitizer-coverage-level=4 \
 -Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
 -Cllvm-args=-sanitizer-coverage-pc-table \
 -Cllvm-args=-sanitizer-coverage-trace-compares \
 --cfg fuzzing -Zsanitizer=address -Cdebug-assertions -Coverflow-checks \
 -Cforce-frame-pointers"
# --target keeps build scripts and proc macros uninstrumented.
cargo build --release --target "$triple" --bins

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=1}
for target in $targets; do
    corpus=corpus/$target
    if [ ! -d "$corpus" ] || [ -z "$(ls -A "$corpus")" ]; then
        (cd .. && uv run python fuzz/make_seeds.py "fuzz/$corpus")
    fi
    mkdir -p "artifacts/$target" logs
    log=logs/$target.log
    fork=()
    if [ "$workers" -gt 1 ]; then fork=(-fork="$workers" -ignore_crashes=0); fi
    echo "== $target: $secs s, $workers worker(s), corpus $(ls "$corpus" | wc -l) files"
    start=$(date +%s)
    set +e
    "./target/$triple/release/$target" "$corpus" "${fork[@]}" \
        -max_total_time="$secs" -max_len=16384 -rss_limit_mb=2048 -timeout=10 \
        -artifact_prefix="artifacts/$target/" -print_final_stats=1 2>&1 | tee "$log" \
        | grep -E "^#[0-9]+.*(pulse|DONE|NEW)|ERROR|SUMMARY|panicked" | tail -n 5
    rc=${PIPESTATUS[0]}
    set -e
    elapsed=$(( $(date +%s) - start ))
    runs=$(grep -oE '^#[0-9]+' "$log" | tail -n1 | tr -d '#')
    runs=${runs:-0}
    echo "== $target: rc=$rc, ${elapsed} s, ${runs} executions, $(( runs / (elapsed > 0 ? elapsed : 1) )) exec/s, corpus $(ls "$corpus" | wc -l) files, artifacts: $(ls "artifacts/$target" | wc -l)"
    if [ "$rc" -ne 0 ]; then
        echo "crash: see $log and artifacts/$target/" >&2
        exit "$rc"
    fi
done
