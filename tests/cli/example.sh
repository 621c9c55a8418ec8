# examples/quickstart.c, built against the installed library with only
# `pkg-config --cflags --libs pare` (the Makefile's $(B)/examples/quickstart), gives the same
# perplexity as `pare eval` on the fixture.
. tests/clilib.sh
F=tests/fixtures
[ -n "${QUICKSTART:-}" ] && [ -x "$QUICKSTART" ] || fail "QUICKSTART (the example binary) not built: run through make test"
expect_exit 0 $PARE convert $F/tiny-llama $T/m.gguf
expect_exit 0 "$QUICKSTART" $T/m.gguf $F/eval.txt 64
grep -q "Q8_0 relative RMS error" $T/stdout || fail "no quantization line: $(cat $T/stdout)"
ex_ppl=$(sed -n 's/^perplexity \([0-9.]*\) .*/\1/p' $T/stdout)
expect_exit 0 $PARE eval $T/m.gguf --text $F/eval.txt --ctx 64
want=$(sed -n 's/^Final estimate: PPL = \([0-9.]*\).*/\1/p' $T/stdout)
[ -n "$ex_ppl" ] && awk -v g="$ex_ppl" -v w="$want" 'BEGIN { exit !(g - w < 1e-4 && w - g < 1e-4) }' ||
    fail "example's perplexity '$ex_ppl', pare eval's $want"
echo "example: PPL $ex_ppl, pare eval $want"
