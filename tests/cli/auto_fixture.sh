# pare shrink --type auto on the repository's tiny-llama fixture (with its LoRA): the budget
# is met by a real evaluation of the written file, the printed plan reproduces the file
# through pare quantize byte for byte, --target-size is honoured, an impossible limit
# refuses (exit 3, nothing written), and --type auto is shrink's alone.
. tests/clilib.sh
F=tests/fixtures
export XDG_CACHE_HOME=$T/cache
G="--text $F/eval.txt --ctx 64 --chunks 24"
jget() { python3 -c "import json,sys
d=json.load(open(sys.argv[1]))
for k in sys.argv[2].split('.'): d=d[k]
print(d)" "$@"; }
leftovers() { ls -a "$1" | grep -c 'pare-' ; }
mkdir -p $T/out
# a 3% budget: written, and the report's PPL is the written file's
expect_exit 0 $PARE shrink $F/tiny-llama $T/out/a.gguf --lora $F/tiny-llama-lora --type auto --calib $F/calib.txt \
    $G --max-ppl-increase 3 --report $T/a.json
[ -f $T/out/a.gguf ] || fail "auto result not written"
[ "$(jget $T/a.json verdict)" = passed ] || fail "verdict $(jget $T/a.json verdict)"
inc=$(jget $T/a.json result.ppl_increase_pct)
awk -v x="$inc" 'BEGIN { exit !(x <= 3) }' || fail "PPL increase $inc% above the 3% budget"
grep -q '^plan: pare quantize --type ' $T/stdout || fail "no plan printed: $(cat $T/stdout)"
expect_exit 0 $PARE merge-lora $F/tiny-llama $F/tiny-llama-lora $T/merged.gguf
ppl=$($PARE eval $T/out/a.gguf --text $F/eval.txt --ctx 64 --chunks 24 --json 2>/dev/null | python3 -c "import json,sys; print(json.load(sys.stdin)['ppl'])")
awk -v a="$ppl" -v b="$(jget $T/a.json result.ppl)" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(d <= 1e-6 * a) }' ||
    fail "reported PPL $(jget $T/a.json result.ppl) is not the file's ($ppl)"
# smaller than the all-Q8_0 file that passes the same gate
expect_exit 0 $PARE quantize $T/merged.gguf $T/q8.gguf --type Q8_0
[ "$(stat -c %s $T/out/a.gguf)" -lt "$(stat -c %s $T/q8.gguf)" ] || fail "auto is not smaller than Q8_0"
# the plan reproduces the file: pare quantize with the printed rules and the same imatrix
expect_exit 0 $PARE imatrix $T/merged.gguf --text $F/calib.txt $T/im.dat --ctx 64
expect_exit 0 $PARE shrink $T/merged.gguf $T/out/b.gguf --type auto --imatrix $T/im.dat --calib $F/calib.txt $G \
    --max-kld 0.02
plan=$(sed -n 's/^plan: pare quantize //p' $T/stdout)
[ -n "$plan" ] || fail "no plan"
expect_exit 0 $PARE quantize $T/merged.gguf $T/b2.gguf $plan --imatrix $T/im.dat
cmp -s $T/out/b.gguf $T/b2.gguf || fail "pare quantize $plan does not reproduce the auto file"
# --target-size: the file fits, the best the search found for that size
size=$(stat -c %s $T/q8.gguf)
lim=$((size * 3 / 4))
expect_exit 0 $PARE shrink $T/merged.gguf $T/out/t.gguf --type auto --calib $F/calib.txt $G --target-size $lim \
    --max-ppl-increase 100
[ "$(stat -c %s $T/out/t.gguf)" -le $lim ] || fail "--target-size $lim: $(stat -c %s $T/out/t.gguf) bytes"
# an impossible limit: exit 3, the refusal names the limit, nothing written, no debris
expect_exit 3 $PARE shrink $T/merged.gguf $T/out/x.gguf --type auto --calib $F/calib.txt $G --max-kld 0 --report $T/x.json
grep -q "quality gate failed: mean KLD" $T/stderr || fail "refusal message: $(cat $T/stderr)"
[ "$(jget $T/x.json verdict)" = refused ] && [ "$(jget $T/x.json failed.limit)" = max-kld ] || fail "refusal report"
[ ! -e $T/out/x.gguf ] && [ "$(leftovers $T/out)" -eq 0 ] || fail "refused result or debris left: $(ls -a $T/out)"
# usage: auto is for shrink; --target-size needs it; no --tensor-type with it
expect_exit 1 $PARE quantize $T/merged.gguf $T/y.gguf --type auto
grep -q "'auto' is for pare shrink" $T/stderr || fail "quantize --type auto: $(cat $T/stderr)"
expect_exit 1 $PARE shrink $T/merged.gguf $T/out/y.gguf --type Q8_0 --target-size 1M $G
expect_exit 1 $PARE shrink $T/merged.gguf $T/out/y.gguf --type auto --target-size 12parsecs $G
expect_exit 1 $PARE shrink $T/merged.gguf $T/out/y.gguf --type auto --tensor-type '*=q8_0' $G
[ ! -e $T/out/y.gguf ] || fail "usage error wrote a file"
echo ok
