# pare shrink on ../shared's fortune-llama: Q4_K_M passes the default 5% gate with the same
# bytes llama-quantize writes, the figures of pare eval; 2:4 + Q4_K_M is refused.
. tests/clilib.sh
need_shared models/fortune-llama-gguf/fortune-llama-Q4_K_M.gguf
R=$SHARED/models/fortune-llama-gguf
TXT=$SHARED/data/gpl-3.txt
json() { python3 -c "import json,sys
d=json.load(open(sys.argv[1]))
print({'ppl': d['result']['ppl'], 'ppl_reference': d['reference']['ppl']}[sys.argv[2]])" $T/stdout "$1"; }
export XDG_CACHE_HOME=$T/cache
near() { awk -v g="$1" -v w="$2" -v t="$3" 'BEGIN { d = (g - w) / w; if (d < 0) d = -d; exit !(d <= t) }'; }
expect_exit 0 $PARE shrink $R/fortune-llama-f32.gguf $T/q4.gguf --text $TXT --ctx 256 --type Q4_K_M --json
cmp -s $T/q4.gguf $R/fortune-llama-Q4_K_M.gguf || fail "Q4_K_M result differs from llama-quantize's file"
near "$(json ppl_reference)" 46.4733 1e-5 || fail "reference PPL $(json ppl_reference), llama.cpp 46.4733"
near "$(json ppl)" 46.8055 2e-4 || fail "result PPL $(json ppl), llama.cpp 46.8055"
summary="PPL $(json ppl_reference) -> $(json ppl)"
expect_exit 3 $PARE shrink $R/fortune-llama-f32.gguf $T/p.gguf --text $TXT --ctx 256 --pattern 2:4 --type Q4_K_M
[ ! -e $T/p.gguf ] || fail "a refused result was written"
echo "Q4_K_M: $summary, gate passed; 2:4 + Q4_K_M refused"
