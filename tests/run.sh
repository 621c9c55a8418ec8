#!/bin/sh
# Runs every module test binary given as arguments, then every CLI test in tests/cli/,
# and prints one closing line "N passed, N failed, N skipped" over all of them.
# CLI tests are shell scripts run with $PARE (the sanitized binary) and $T (a scratch
# folder); exit 0 passes, 77 skips, anything else fails.
# The tests of code with SIMD kernels (ISA_TESTS) run once more at each lower kernel level
# the CPU can run (PARE_ISA=avx2, generic: core/isa.h), so one machine checks every path of
# a portable build; `$PARE --version` says which levels the CPU and the build have.
set -u
: "${PARE:=build/san/pare}"
export PARE
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
passed=0; failed=0; skipped=0; failures=""
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
ISA_TESTS='test_qgemm|test_kgemm|test_iqgemm|test_gemm|test_quant$|test_eval|test_prune|test_lora'
kernels=$("$PARE" --version 2>/dev/null | sed -n 's/^kernels: //p')
cpu=$(echo "$kernels" | sed -n 's/.*cpu \([a-z0-9]*\).*/\1/p')
built=$(echo "$kernels" | sed -n 's/.*built \([a-z0-9 ]*\)).*/\1/p')
echo "kernels: $kernels"
lower=
case $cpu in
    avx512) lower="avx2 generic";;
    avx2) lower="generic";;
esac
# cross-built tests under an emulator (make test-aarch64): the lower levels named by RUN_LOWER
[ -n "${RUN:-}" ] && lower=${RUN_LOWER:-} && built=$lower
runs=
for t in "$@"; do runs="$runs $t"; done
for l in $lower; do
    case " $built " in *" $l "*) ;; *) continue;; esac
    for t in "$@"; do
        echo "$t" | grep -Eq "$ISA_TESTS" && runs="$runs $l@$t"
    done
done
for r in $runs; do
    case $r in
        *@*) lvl=${r%%@*}; t=${r#*@};;
        *) lvl=; t=$r;;
    esac
    echo "== $t${lvl:+ (PARE_ISA=$lvl)}"
    if [ -n "$lvl" ]; then PARE_ISA=$lvl ${RUN:-} "$t" >"$tmp/out" 2>"$tmp/err"; else ${RUN:-} "$t" >"$tmp/out" 2>"$tmp/err"; fi; rc=$?
    cat "$tmp/out"; [ -s "$tmp/err" ] && sed 's/^/  | /' "$tmp/err" | tail -n 60
    line=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$tmp/out" | tail -n 1)
    if [ -z "$line" ]; then
        failed=$((failed + 1)); failures="$failures $t${lvl:+@$lvl}(crashed rc=$rc)"; continue
    fi
    p=$(echo "$line" | sed -E 's/^([0-9]+) passed.*/\1/')
    f=$(echo "$line" | sed -E 's/^[0-9]+ passed, ([0-9]+) failed.*/\1/')
    s=$(echo "$line" | sed -nE 's/.* ([0-9]+) skipped.*/\1/p'); s=${s:-0}
    passed=$((passed + p)); failed=$((failed + f)); skipped=$((skipped + s))
    [ "$f" -gt 0 ] || [ "$rc" -ne 0 ] && failures="$failures $t${lvl:+@$lvl}"
    [ "$f" -eq 0 ] && [ "$rc" -ne 0 ] && failed=$((failed + 1))
done
# cross-built module tests only (make test-aarch64): no pare binary for this machine
[ -n "${RUN:-}" ] && CLI_SKIP=1 && echo "(the CLI tests need a pare binary of this machine: not run under $RUN)"
for c in tests/cli/*.sh; do
    [ -n "${CLI_SKIP:-}" ] && break
    [ -n "${CLI_ONLY:-}" ] && [ "$c" != "tests/cli/$CLI_ONLY.sh" ] && continue
    [ -e "$c" ] || continue
    mkdir -p "$tmp/cli"; T=$(mktemp -d "$tmp/cli/XXXX"); export T
    sh "$c" >"$tmp/out" 2>&1; rc=$?
    case $rc in
        0) passed=$((passed + 1)); echo "PASS $c";;
        77) skipped=$((skipped + 1)); echo "SKIP $c"; sed 's/^/  | /' "$tmp/out" | tail -n 5;;
        *) failed=$((failed + 1)); failures="$failures $c"; echo "FAIL $c (exit $rc)"; sed 's/^/  | /' "$tmp/out" | tail -n 40;;
    esac
done
[ -n "$failures" ] && echo "failed:$failures"
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
