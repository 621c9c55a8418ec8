# pare convert of the shared HF folders gives llama.cpp's GGUF files byte for byte: the same
# metadata (general.name and size_label included), tensor order, permuted q/k rows, padding.
. tests/clilib.sh
need_shared models/fortune-llama/config.json
M=$SHARED/models
REF=$M/fortune-llama-gguf
for t in f32 f16 bf16; do
    expect_exit 0 $PARE convert $M/fortune-llama $T/$t.gguf --type $t
    cmp $T/$t.gguf $REF/fortune-llama-$t.gguf || fail "$t conversion differs from llama.cpp's"
done
expect_exit 0 $PARE convert $M/fortune-llama-bf16-sharded $T/sh.gguf --type bf16
cmp $T/sh.gguf $REF/fortune-llama-bf16-sharded-bf16.gguf || fail "sharded bf16 conversion differs from llama.cpp's"
echo ok
