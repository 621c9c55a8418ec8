# The newer families end to end on checkpoints made by tests/fixtures/make_arch_models.py:
# qwen3, qwen3moe, gemma3 and the language model of a Gemma3ForConditionalGeneration
# checkpoint (gemma3mm). pare convert HF -> GGUF gives the metadata keys and tensor names of
# tests/fixtures/arch_families.txt (what llama.cpp writes, recorded there with its sources);
# GGUF -> HF folder -> GGUF keeps every byte; extract-lora, merge-lora, imatrix, quantize (with
# the imatrix), prune and shrink run on each. The logits are test_arch_ref's.
. tests/clilib.sh
need_numpy
FIX=tests/fixtures/arch_families.txt
# keys in order with their types, then tensors outside blocks 1.. (name, type, shape)
names() {
    awk '/^metadata \(/ {m=1; next} m && /^$/ {m=0} m {print "key " $1 " " $2}
         /^  #  +tensor/ {t=1; next}
         t && NF >= 4 && $2 !~ /^blk\.[1-9]/ {s=$4; i=4; while (s !~ /\]$/ && i < NF) {i++; s=s $i}; print "tensor " $2 " " $3 " " s}' "$1"
}
for f in qwen3 qwen3moe gemma3 gemma3mm; do
    "$PY" tests/fixtures/make_arch_models.py $T/$f $f >/dev/null || fail "make_arch_models.py $f"
    expect_exit 0 $PARE convert $T/$f $T/$f.gguf --type f32
    expect_exit 0 $PARE inspect $T/$f.gguf
    names $T/stdout >$T/got.txt
    sed -n "/^== $f\$/,/^== /p" $FIX | grep -v '^==' >$T/want.txt
    [ -s $T/want.txt ] || fail "$f: no section in $FIX"
    diff $T/want.txt $T/got.txt >$T/d.txt || { cat $T/d.txt; fail "$f: keys or tensor names differ from $FIX"; }
    # back to an HF folder of the family and to GGUF again
    expect_exit 0 $PARE convert $T/$f.gguf $T/$f-hf
    expect_exit 0 $PARE convert $T/$f-hf $T/$f-rt.gguf
    cmp -s $T/$f.gguf $T/$f-rt.gguf || fail "$f: GGUF -> HF -> GGUF changed bytes"
    # a LoRA adapter from a second checkpoint, merged back
    "$PY" tests/fixtures/make_arch_models.py $T/$f-b $f --seed 2 >/dev/null || fail "make_arch_models.py $f --seed 2"
    expect_exit 0 $PARE convert $T/$f-b $T/$f-b.gguf --type f32
    expect_exit 0 $PARE extract-lora $T/$f.gguf $T/$f-b.gguf $T/$f-lora --rank 4
    expect_exit 0 $PARE merge-lora $T/$f.gguf $T/$f-lora $T/$f-m.gguf
    expect_exit 0 $PARE imatrix $T/$f.gguf --text tests/fixtures/calib.txt $T/$f.dat --ctx 64 --chunks 2
    expect_exit 0 $PARE quantize $T/$f.gguf $T/$f-q.gguf --type Q4_K_M --imatrix $T/$f.dat
    expect_exit 0 $PARE prune $T/$f.gguf $T/$f-p.gguf --sparsity 0.5
    expect_exit 0 $PARE shrink $T/$f.gguf $T/$f-s.gguf --type Q8_0 --text tests/fixtures/calib.txt --ctx 64 --chunks 2
    a=$f; [ $f = gemma3mm ] && a=gemma3
    for o in $f-m $f-q $f-p $f-s; do
        expect_exit 0 $PARE inspect $T/$o.gguf
        grep -q "^architecture: $a\$" $T/stdout || fail "$o: not a $a GGUF"
    done
    rm -rf $T/$f-b $T/$f-b.gguf $T/$f-hf $T/$f-lora
done
# a multimodal checkpoint's text_config without the keys Gemma3Model has defaults for (as the
# 4B-27B checkpoints ship it): the converter's defaults
"$PY" - $T/gemma3mm/config.json <<'PYEOF' || fail "editing config.json"
import json, sys
c = json.load(open(sys.argv[1]))
for k in ["num_attention_heads", "head_dim", "num_key_value_heads", "rms_norm_eps", "rope_theta",
          "max_position_embeddings"]:
    c["text_config"].pop(k)
json.dump(c, open(sys.argv[1], "w"))
PYEOF
expect_exit 0 $PARE convert $T/gemma3mm $T/sparse.gguf --type f32
expect_exit 0 $PARE inspect $T/sparse.gguf
for kv in "context_length u32 131072" "attention.head_count u32 8" "attention.key_length u32 256" \
          "attention.value_length u32 256" "attention.head_count_kv u32 4" "rope.freq_base f32 1000000" \
          "attention.layer_norm_rms_epsilon f32 9.99999997e-07" "rope.scaling.factor f32 8"; do
    set -- $kv
    grep -Eq "^  gemma3\.$1 +$2 +$3\$" $T/stdout || { cat $T/stdout; fail "gemma3 default: $kv"; }
done
echo ok
