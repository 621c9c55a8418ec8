# merge-lora, prune and imatrix on ../shared's fortune-llama, end to end.
. tests/clilib.sh
need_shared models/fortune-llama-lora/adapter_config.json
FAST=${PARE_FAST:-build/pare}
M=$SHARED/models
R=$M/fortune-llama-gguf
TXT=$SHARED/data/gpl-3.txt
ppl() { $FAST eval "$1" --text $TXT --ctx 256 2>/dev/null | sed -n 's/^Final estimate: PPL = \([0-9.]*\).*/\1/p'; }
near() { awk -v g="$1" -v w="$2" -v t="$3" 'BEGIN { d = (g - w) / w; if (d < 0) d = -d; exit !(d <= t) }'; }
# PEFT and GGUF adapters into HF and GGUF bases: llama-export-lora's merged model
for base in $M/fortune-llama $R/fortune-llama-f32.gguf; do
    for ad in $M/fortune-llama-lora $M/fortune-llama-lora/lora-licenses-f32.gguf; do
        expect_exit 0 $PARE merge-lora $base $ad $T/m.gguf --force
        expect_exit 0 $PARE diff $T/m.gguf $R/fortune-llama-merged-licenses-f32.gguf --values --tolerance 1e-6 --tensors-only
    done
done
p=$(ppl $T/m.gguf); near "$p" 27.2037 0.0002 || fail "merged PPL $p, llama.cpp 27.2037"
# into the Q4_K_M file: a Q4_K_M result (reported, see README)
expect_exit 0 $PARE merge-lora $R/fortune-llama-Q4_K_M.gguf $M/fortune-llama-lora $T/mq.gguf
expect_exit 3 $PARE diff $T/mq.gguf $R/fortune-llama-Q4_K_M.gguf --tensors-only
grep -q "28 differ" $T/stdout || fail "types changed in the Q4_K_M merge"
p=$(ppl $T/mq.gguf); near "$p" 27.2037 0.02 || fail "Q4_K_M merge PPL $p"
echo "merged PPL f32 27.2037, Q4_K_M $p"
# an adapter for another model is refused, nothing written
expect_exit 2 $PARE merge-lora tests/fixtures/tiny-llama $M/fortune-llama-lora $T/bad.gguf
[ ! -e $T/bad.gguf ] || fail "output left behind"
# extract-lora at rank 8 of (merged - base) recovers the adapter: same perplexity
expect_exit 0 $PARE extract-lora $R/fortune-llama-f32.gguf $R/fortune-llama-merged-licenses-f32.gguf $T/ex --rank 8
[ -f $T/ex/adapter_config.json ] && [ -f $T/ex/adapter_model.safetensors ] || fail "extract-lora folder"
expect_exit 0 $PARE merge-lora $SHARED/models/fortune-llama $T/ex $T/mx.gguf
p=$(ppl $T/mx.gguf); near "$p" 27.2037 0.001 || fail "re-merged PPL $p"
expect_exit 1 $PARE extract-lora $R/fortune-llama-f32.gguf $R/fortune-llama-f32.gguf $T/ex2
expect_exit 2 $PARE extract-lora $R/fortune-llama-f32.gguf $R/fortune-llama-f32.gguf $T/ex2 --rank 4
[ ! -e $T/ex2 ] || fail "extract-lora left a folder"
# pruning: exact sparsity in every row, excluded tensors untouched, 2:4 everywhere
expect_exit 0 $PARE prune $R/fortune-llama-f32.gguf $T/p.gguf --sparsity 0.5
grep -q "(50.0000%) in 28 tensors" $T/stdout || fail "sparsity"
awk '/zero \(per row/ { split($0, a, "per row "); split(a[2], b, /[.)]+/); if (b[1] != b[2]) bad = 1 } END { exit bad }' $T/stdout || fail "rows differ"
expect_exit 3 $PARE diff $T/p.gguf $R/fortune-llama-f32.gguf --tensors-only
grep -q "^10 tensors equal, 28 differ" $T/stdout || fail "excluded tensors changed"
expect_exit 0 $PARE prune $M/fortune-llama $T/p24.gguf --pattern 2:4 --method wanda --calib tests/fixtures/calib.txt --calib-ctx 128
grep -q "(50.0000%) in 28 tensors" $T/stdout || fail "2:4 sparsity"
expect_exit 0 $PARE prune $R/fortune-llama-f32.gguf $T/pg.gguf --sparsity 0.3 --scope global --type q8_0
grep -q "(30.0000%) in 28 tensors" $T/stdout || fail "global sparsity"
# an imatrix from calibration text feeds quantize
expect_exit 0 $PARE imatrix $R/fortune-llama-f32.gguf --text tests/fixtures/calib.txt $T/im.dat --ctx 128
expect_exit 0 $PARE quantize $R/fortune-llama-f32.gguf $T/q2.gguf --type Q2_K --imatrix $T/im.dat
# an imatrix from a file feeds an i-quant that requires one
expect_exit 0 $PARE quantize $R/fortune-llama-f32.gguf $T/iq.gguf --type IQ2_XXS --imatrix $R/fortune-llama-imatrix-licenses.dat
grep -q -- "-> iq2_xxs" $T/stdout || fail "iq2_xxs output"
echo ok
