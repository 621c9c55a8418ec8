# pare convert reproduces llama.cpp's conversions of ../shared/models/fortune-llama tensor for
# tensor and key for key; GGUF -> HF folder -> GGUF keeps every tensor byte.
. tests/clilib.sh
need_shared models/fortune-llama/config.json
M=$SHARED/models
REF=$M/fortune-llama-gguf
IGN="--ignore-meta general.name --ignore-meta general.size_label"
for t in f32 f16 bf16; do
    expect_exit 0 $PARE convert $M/fortune-llama $T/st-$t.gguf --type $t
    expect_exit 0 $PARE diff $T/st-$t.gguf $REF/fortune-llama-$t.gguf $IGN
    # the PyTorch checkpoint alone (named through the config beside it)
    expect_exit 0 $PARE convert $M/fortune-llama/pytorch_model.bin $T/pt-$t.gguf --type $t
    expect_exit 0 $PARE diff $T/pt-$t.gguf $REF/fortune-llama-$t.gguf $IGN
done
# a folder that has only the PyTorch weights
mkdir -p $T/ptonly
for f in config.json tokenizer.model tokenizer_config.json special_tokens_map.json generation_config.json pytorch_model.bin; do
    ln -s "$(cd $M/fortune-llama && pwd)/$f" $T/ptonly/$f
done
expect_exit 0 $PARE convert $T/ptonly $T/ptonly.gguf --type f32
expect_exit 0 $PARE diff $T/ptonly.gguf $REF/fortune-llama-f32.gguf --ignore-meta 'general.*'
# the bf16 sharded folder
expect_exit 0 $PARE convert $M/fortune-llama-bf16-sharded $T/sh.gguf --type bf16
expect_exit 0 $PARE diff $T/sh.gguf $REF/fortune-llama-bf16-sharded-bf16.gguf $IGN
# GGUF -> HF folder -> GGUF keeps every tensor byte and the metadata
expect_exit 0 $PARE convert $REF/fortune-llama-f32.gguf $T/rt
[ -f $T/rt/config.json ] && [ -f $T/rt/model.safetensors ] || fail "folder output incomplete"
expect_exit 0 $PARE convert $T/rt $T/rt.gguf
expect_exit 0 $PARE diff $T/rt.gguf $REF/fortune-llama-f32.gguf $IGN
# the same weights hash the same in every format
a=$($PARE hash --values $M/fortune-llama | tail -n 1 | cut -d' ' -f1)
b=$($PARE hash --values $REF/fortune-llama-f32.gguf | tail -n 1 | cut -d' ' -f1)
c=$($PARE hash --values $M/fortune-llama/pytorch_model.bin | tail -n 1 | cut -d' ' -f1)
[ "$a" = "$b" ] && [ "$a" = "$c" ] || fail "value hashes differ: $a $b $c"
# every GGUF under ../shared is read without error
for f in $(find $SHARED -name '*.gguf'); do expect_exit 0 $PARE inspect $f; done
echo ok
