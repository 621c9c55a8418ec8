#!/bin/sh
# Runs every module test binary given as arguments, then every CLI test in tests/cli/,
# and prints one closing line "N passed, N failed, N skipped" over all of them.
# CLI tests are shell scripts run with $PARE (the sanitized binary) and $T (a scratch
# folder); exit 0 passes, 77 skips, anything else fails.
set -u
: "${PARE:=build/san/pare}"
export PARE
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
passed=0; failed=0; skipped=0; failures=""
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
for t in "$@"; do
    echo "== $t"
    "$t" >"$tmp/out" 2>"$tmp/err"; rc=$?
    cat "$tmp/out"; [ -s "$tmp/err" ] && sed 's/^/  | /' "$tmp/err" | tail -n 60
    line=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$tmp/out" | tail -n 1)
    if [ -z "$line" ]; then
        failed=$((failed + 1)); failures="$failures $t(crashed rc=$rc)"; continue
    fi
    p=$(echo "$line" | sed -E 's/^([0-9]+) passed.*/\1/')
    f=$(echo "$line" | sed -E 's/^[0-9]+ passed, ([0-9]+) failed.*/\1/')
    s=$(echo "$line" | sed -nE 's/.* ([0-9]+) skipped.*/\1/p'); s=${s:-0}
    passed=$((passed + p)); failed=$((failed + f)); skipped=$((skipped + s))
    [ "$f" -gt 0 ] || [ "$rc" -ne 0 ] && failures="$failures $t"
    [ "$f" -eq 0 ] && [ "$rc" -ne 0 ] && failed=$((failed + 1))
done
for c in tests/cli/*.sh; do
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
