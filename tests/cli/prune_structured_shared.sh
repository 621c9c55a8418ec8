# pare prune --structured on ../shared's fortune-llama (calibration: Debian licence texts other
# than GPL-3; evaluation: gpl-3.txt): the layer chosen is the cheapest of all single-layer
# removals, the outputs are valid models with the new per-layer metadata, uniform widths
# survive GGUF -> HF -> GGUF byte for byte, and it composes in pare shrink. MoE experts on the
# Mixtral-shape reference model.
. tests/clilib.sh
need_shared models/fortune-llama-gguf/fortune-llama-f32.gguf
R=$SHARED/models/fortune-llama-gguf
F=$R/fortune-llama-f32.gguf
TXT=$SHARED/data/gpl-3.txt
LIC=/usr/share/common-licenses
[ -f $LIC/Apache-2.0 ] || { echo "$LIC not present (calibration text)"; exit 77; }
cat $LIC/Apache-2.0 $LIC/Artistic $LIC/BSD $LIC/GPL-2 $LIC/LGPL-2.1 $LIC/MPL-2.0 > $T/calib.txt
C="--calib $T/calib.txt --calib-ctx 128 --calib-tokens 2048"
ppl() { $PARE eval "$1" --text "$2" --ctx 128 ${3:+--chunks $3} 2>/dev/null | sed -n 's/^Final estimate: PPL = \([0-9.]*\).*/\1/p'; }
key() { $PARE inspect "$1" | awk -v k="$2" '$1 == k { $1 = ""; $2 = ""; sub(/^ +/, ""); print }'; }
# --drop-layers 1: its choice is the cheapest of every single-layer removal on the calibration text
expect_exit 0 $PARE prune $F $T/d1.gguf --structured --drop-layers 1 $C
chosen=$(sed -n 's/.*-> removing layer \([0-9]*\).*/\1/p' $T/stdout)
[ -n "$chosen" ] || fail "no layer chosen: $(cat $T/stdout)"
best=; best_ppl=
for l in 0 1 2 3; do
    expect_exit 0 $PARE prune $F $T/l$l.gguf --structured --layers $l
    p=$(ppl $T/l$l.gguf $T/calib.txt 16)
    [ -n "$p" ] || fail "layer $l removed: no PPL"
    if [ -z "$best" ] || awk -v a="$p" -v b="$best_ppl" 'BEGIN { exit !(a < b) }'; then best=$l; best_ppl=$p; fi
done
[ "$chosen" = "$best" ] || fail "chose layer $chosen, cheapest removal is layer $best (PPL $best_ppl)"
cmp -s $T/d1.gguf $T/l$best.gguf || fail "--drop-layers 1 and --layers $best differ"
[ "$(key $T/d1.gguf llama.block_count)" = 3 ] || fail "block_count after dropping one layer"
$PARE inspect $T/d1.gguf | grep -q "^tensors: *29," || fail "tensor count after dropping one layer"
expect_exit 0 $PARE hash $T/d1.gguf
expect_exit 3 $PARE diff $T/d1.gguf $F --tensors-only
# two layers: greedy, block_count 2, still a model
expect_exit 0 $PARE prune $F $T/d2.gguf --structured --drop-layers 2 $C
[ "$(grep -c -- '-> removing layer' $T/stdout)" = 2 ] || fail "two removals expected"
[ "$(key $T/d2.gguf llama.block_count)" = 2 ] || fail "block_count after dropping two layers"
[ -n "$(ppl $T/d2.gguf $TXT 8)" ] || fail "d2 does not evaluate"
# FFN: uniform widths stay a scalar, --global writes a per-layer array the evaluator reads
expect_exit 0 $PARE prune $F $T/f75.gguf --structured --ffn-keep 0.75 $C
[ "$(key $T/f75.gguf llama.feed_forward_length)" = 576 ] || fail "feed_forward_length after --ffn-keep 0.75"
expect_exit 0 $PARE prune $F $T/f50g.gguf --structured --ffn-keep 0.5 --global $C
$PARE inspect $T/f50g.gguf | grep -Eq "llama.feed_forward_length +i32\[\] +\[[0-9, ]+\]" || fail "no per-layer FFN array"
$PARE inspect $T/f50g.gguf | grep -q "widths per layer" || fail "inspect does not show per-layer widths"
for f in f75 f50g; do [ -n "$(ppl $T/$f.gguf $TXT 8)" ] || fail "$f does not evaluate"; done
# heads: uniform keeps scalars (and writes key_length); the evaluator reads it
expect_exit 0 $PARE prune $F $T/h75.gguf --structured --heads-keep 0.75 $C
[ "$(key $T/h75.gguf llama.attention.head_count)" = 6 ] && [ "$(key $T/h75.gguf llama.attention.head_count_kv)" = 3 ] ||
    fail "head counts after --heads-keep 0.75"
[ "$(key $T/h75.gguf llama.attention.key_length)" = 32 ] || fail "key_length not written"
[ -n "$(ppl $T/h75.gguf $TXT 8)" ] || fail "h75 does not evaluate"
# uniform widths: GGUF -> HF -> GGUF keeps every byte; per-layer widths are refused for HF
for f in d1 f75 h75; do
    expect_exit 0 $PARE convert $T/$f.gguf $T/hf-$f
    expect_exit 0 $PARE convert $T/hf-$f $T/back-$f.gguf
    cmp -s $T/$f.gguf $T/back-$f.gguf || fail "$f: GGUF -> HF -> GGUF changed the file"
done
expect_exit 0 $PARE prune $F $T/hf-direct --structured --ffn-keep 0.75 $C
expect_exit 0 $PARE convert $T/hf-direct $T/back-direct.gguf
cmp -s $T/back-direct.gguf $T/f75.gguf || fail "pruning straight to HF differs from pruning to GGUF"
expect_exit 2 $PARE prune $F $T/hf-bad --structured --ffn-keep 0.5 --global $C
grep -q "cannot express" $T/stderr || fail "HF refusal message: $(cat $T/stderr)"
[ ! -e $T/hf-bad ] || fail "a refused HF output was written"
# --dry-run prints the plan and writes nothing
expect_exit 0 $PARE prune $F $T/dry.gguf --structured --ffn-keep 0.5 --dry-run $C
grep -q "FFN width per layer" $T/stdout && [ ! -e $T/dry.gguf ] || fail "dry run"
# in pare shrink: the gate compares with the unpruned model
expect_exit 0 $PARE shrink $F $T/sh.gguf --text $TXT --ctx 128 --chunks 16 --ffn-keep 0.75 $C --type Q8_0 --max-ppl-increase 10
grep -q "gate passed" $T/stderr && [ -e $T/sh.gguf ] || fail "shrink: $(cat $T/stderr)"
expect_exit 3 $PARE shrink $F $T/sh2.gguf --text $TXT --ctx 128 --chunks 16 --drop-layers 2 $C --max-ppl-increase 1
[ ! -e $T/sh2.gguf ] || fail "a refused shrink result was written"
# usage
expect_exit 1 $PARE prune $F $T/x.gguf --structured
expect_exit 1 $PARE prune $F $T/x.gguf --structured --ffn-keep 0.5
expect_exit 1 $PARE prune $F $T/x.gguf --drop-layers 4 --calib $T/calib.txt
expect_exit 1 $PARE prune $F $T/x.gguf --layers 1 --drop-layers 1
# experts on the Mixtral-shape model: half of every expert tensor, router rows alike
MX=$SHARED/models/arch/mixtral/mixtral-f32.gguf
if [ -f $MX ]; then
    expect_exit 0 $PARE prune $MX $T/mx.gguf --structured --experts-keep 0.5
    [ "$(key $T/mx.gguf llama.expert_count)" = 2 ] && [ "$(key $T/mx.gguf llama.expert_used_count)" = 2 ] ||
        fail "expert counts"
    $PARE inspect $T/mx.gguf | grep -Eq "blk.1.ffn_up_exps.weight +f32 +\[128, 32, 2\]" || fail "ffn_up_exps shape"
    $PARE inspect $T/mx.gguf | grep -Eq "blk.0.ffn_gate_inp.weight +f32 +\[128, 2\]" || fail "router shape"
    expect_exit 0 $PARE prune $MX $T/mx1.gguf --structured --experts-keep 0.25
    [ "$(key $T/mx1.gguf llama.expert_used_count)" = 1 ] || fail "expert_used_count above expert_count"
    expect_exit 0 $PARE hash $T/mx.gguf
    # routing stays top-k over the kept experts: the evaluator runs it (PPL, 4 chunks of GPL-3)
    p_all=$(ppl $MX $TXT 4) p_half=$(ppl $T/mx.gguf $TXT 4)
    [ -n "$p_all" ] && [ -n "$p_half" ] || fail "Mixtral PPL before/after --experts-keep 0.5"
    echo "Mixtral reference: PPL $p_all with 4 experts, $p_half with the 2 kept"
fi
echo "dropped layer $chosen (cheapest of 4, calibration PPL $best_ppl); FFN, heads, experts, HF round trip, shrink"
