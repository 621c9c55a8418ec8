# Every committed fuzz input - the seeds and crash reproducers of tests/fuzz/regress/NAME and
# the fixtures tests/fuzz/targets.sh lists - run through its fuzz target (tests/fuzz/fuzz_NAME.c
# linked with tests/fuzz/replay.c, ASan + UBSan): none may crash, leak or break an oracle.
. tests/clilib.sh
. tests/fuzz/targets.sh
export OPENBLAS_NUM_THREADS=1
n=0
for src in tests/fuzz/fuzz_*.c; do
    name=${src#tests/fuzz/fuzz_}; name=${name%.c}
    bin=build/san/fuzz/replay_$name
    [ -x "$bin" ] || fail "$bin missing (make fuzz-replay builds it)"
    paths=$(fuzz_fixture_seeds "$name")
    [ -d "tests/fuzz/regress/$name" ] && paths="tests/fuzz/regress/$name $paths"
    [ -n "$paths" ] || fail "fuzz target $name has no committed inputs"
    "$bin" $paths >"$T/out" 2>"$T/err" || { tail -n 30 "$T/err"; fail "replay of fuzz target $name failed"; }
    k=$(sed -n 's/.*: \([0-9]*\) inputs replayed$/\1/p' "$T/out")
    [ "${k:-0}" -gt 0 ] || fail "replay of fuzz target $name ran no input"
    echo "$name: $k inputs"
    n=$((n + k))
done
echo "$n fuzz inputs replayed"
