# pare eval on the committed fixture matches the float64 reference computed when it was made.
. tests/clilib.sh
F=tests/fixtures
ref=$(sed -n 's/.*"ppl_ctx64": \([0-9.]*\).*/\1/p' $F/tiny-llama-reference.json)
expect_exit 0 $PARE eval $F/tiny-llama --text $F/eval.txt --ctx 64
got=$(sed -n 's/^Final estimate: PPL = \([0-9.]*\).*/\1/p' $T/stdout)
awk -v g="$got" -v w="$ref" 'BEGIN { d = (g - w) / w; if (d < 0) d = -d; exit !(d <= 0.001) }' ||
    fail "PPL $got, float64 reference $ref"
expect_exit 0 $PARE convert $F/tiny-llama $T/q.gguf --type q8_0
expect_exit 0 $PARE eval $T/q.gguf --text $F/eval.txt --ctx 64 --kld-base $F/tiny-llama --json
grep -q '"kld"' $T/stdout || fail "no kld in json"
echo "fixture PPL $got (reference $ref)"
