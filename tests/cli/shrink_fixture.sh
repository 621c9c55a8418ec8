# pare shrink on the repository's tiny-llama fixture: the gate passes and publishes, refuses
# and leaves nothing, compares a LoRA merge with the merged model, and rejects bad usage.
. tests/clilib.sh
F=tests/fixtures
TXT=$F/eval.txt
ppl() { $PARE eval "$1" --text $TXT --ctx 64 2>/dev/null | sed -n 's/^Final estimate: PPL = \([0-9.]*\).*/\1/p'; }
# a figure of the --json report (docs/report-schema.json)
json() { python3 -c "import json,sys
d=json.load(open(sys.argv[1]))
v={'passed': d['verdict'] == 'passed', 'written': d['output']['written'], 'ppl': d['result']['ppl'],
   'ppl_reference': d['reference']['ppl']}[sys.argv[2]]
print(str(v).lower() if isinstance(v, bool) else v)" $T/stdout "$1"; }
export XDG_CACHE_HOME=$T/cache
near() { awk -v g="$1" -v w="$2" -v t="$3" 'BEGIN { d = (g - w) / w; if (d < 0) d = -d; exit !(d <= t) }'; }
leftovers() { ls -a "$1" | grep -c 'pare-' ; }
# Q8_0 passes a 5% bound: the file is written and its perplexity is the one reported
mkdir -p $T/out
expect_exit 0 $PARE shrink $F/tiny-llama $T/out/q8.gguf --text $TXT --ctx 64 --type Q8_0 --json
[ "$(json passed)" = true ] && [ "$(json written)" = true ] || fail "Q8_0 gate: $(cat $T/stdout)"
[ -f $T/out/q8.gguf ] || fail "Q8_0 result not written"
near "$(ppl $T/out/q8.gguf)" "$(json ppl)" 2e-5 || fail "reported PPL $(json ppl) is not the file's"
near "$(ppl $F/tiny-llama)" "$(json ppl_reference)" 2e-5 || fail "reference PPL $(json ppl_reference)"
# 2:4 pruning cannot stay within 0.1%: exit 3, nothing written, no temporary files
expect_exit 3 $PARE shrink $F/tiny-llama $T/out/p.gguf --text $TXT --ctx 64 --pattern 2:4 --type Q4_0 --max-ppl-increase 0.1
grep -q "quality gate failed" $T/stderr || fail "gate message: $(cat $T/stderr)"
[ ! -e $T/out/p.gguf ] || fail "a refused result was written"
[ "$(leftovers $T/out)" -eq 0 ] || fail "temporary files left: $(ls -a $T/out)"
# pruning and quantizing run in one pass: the same bytes as pare prune, then pare quantize
expect_exit 0 $PARE shrink $F/tiny-llama $T/out/pq.gguf --text $TXT --ctx 64 --sparsity 0.4 --type Q4_K_M --max-ppl-increase 1000
expect_exit 0 $PARE prune $F/tiny-llama $T/pruned.gguf --sparsity 0.4
expect_exit 0 $PARE quantize $T/pruned.gguf $T/pq2.gguf --type Q4_K_M
cmp -s $T/out/pq.gguf $T/pq2.gguf || fail "shrink's pruned Q4_K_M differs from prune then quantize"
rm -f $T/out/pq.gguf
# a KLD bound alone can refuse too
expect_exit 3 $PARE shrink $F/tiny-llama $T/out/k.gguf --text $TXT --ctx 64 --type Q4_0 --max-ppl-increase 100 --max-kld 0
[ ! -e $T/out/k.gguf ] || fail "a refused result was written (KLD)"
# with an adapter the reference is the merged model
expect_exit 0 $PARE merge-lora $F/tiny-llama $F/tiny-llama-lora $T/merged.gguf
expect_exit 0 $PARE shrink $F/tiny-llama $T/out/lq.gguf --lora $F/tiny-llama-lora --text $TXT --ctx 64 --type Q8_0 --json
near "$(ppl $T/merged.gguf)" "$(json ppl_reference)" 2e-5 || fail "reference is not the merge: $(json ppl_reference)"
# an existing output needs --force and is left alone otherwise
cp $T/out/q8.gguf $T/keep.gguf
expect_exit 1 $PARE shrink $F/tiny-llama $T/out/q8.gguf --text $TXT --ctx 64 --type Q4_0
cmp -s $T/out/q8.gguf $T/keep.gguf || fail "existing output changed without --force"
# usage errors and bad input: clear messages, nothing written
expect_exit 1 $PARE shrink $F/tiny-llama $T/out/x.gguf --type Q8_0
expect_exit 1 $PARE shrink $F/tiny-llama $T/out/x.safetensors --text $TXT --type Q8_0
expect_exit 1 $PARE shrink $F/tiny-llama $T/out/x.gguf --text $TXT
expect_exit 1 $PARE shrink $F/tiny-llama $T/out/x.gguf --text $TXT --type Q9_9
expect_exit 2 $PARE shrink $T/missing $T/out/x.gguf --text $TXT --type Q8_0
grep -q "missing" $T/stderr || fail "message does not name the file: $(cat $T/stderr)"
expect_exit 2 $PARE shrink $F/tiny-llama $T/out/x.gguf --text $T/missing.txt --type Q8_0
[ ! -e $T/out/x.gguf ] && [ "$(leftovers $T/out)" -eq 0 ] || fail "output or temporary files left: $(ls -a $T/out)"
echo ok
