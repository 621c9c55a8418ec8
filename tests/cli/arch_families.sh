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
echo ok
