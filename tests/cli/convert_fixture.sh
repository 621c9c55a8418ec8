# Round trips on the committed fixture (no ../shared needed): HF -> GGUF -> HF -> GGUF keeps
# every tensor and key; values hash the same across formats; f16/bf16/q8_0 outputs read back.
. tests/clilib.sh
F=tests/fixtures/tiny-llama
expect_exit 0 $PARE convert $F $T/a.gguf
expect_exit 0 $PARE inspect --json $T/a.gguf
grep -Eq '"architecture":[[:space:]]*"llama"' $T/stdout || fail "inspect --json lacks the architecture"
expect_exit 0 $PARE convert $T/a.gguf $T/hf
expect_exit 0 $PARE convert $T/hf $T/b.gguf
expect_exit 0 $PARE diff $T/a.gguf $T/b.gguf --ignore-meta general.name   # named after the folder
expect_exit 0 $PARE diff $F $T/hf --tensors-only
h1=$($PARE hash --values $F | tail -n 1 | cut -d' ' -f1)
h2=$($PARE hash --values $T/a.gguf | tail -n 1 | cut -d' ' -f1)
[ "$h1" = "$h2" ] || fail "value hash differs between HF folder and GGUF"
h3=$($PARE hash $T/a.gguf | tail -n 1 | cut -d' ' -f1)
h4=$($PARE hash $T/b.gguf | tail -n 1 | cut -d' ' -f1)
[ "$h3" = "$h4" ] || fail "byte hash differs after a round trip"
for t in f16 bf16 q8_0; do
    expect_exit 0 $PARE convert $F $T/$t.gguf --type $t
    expect_exit 0 $PARE diff $T/$t.gguf $T/a.gguf --values --tolerance 0.02 --tensors-only
done
expect_exit 0 $PARE convert $F $T/one.safetensors
expect_exit 0 $PARE diff $T/one.safetensors $F/model.safetensors --tensors-only
echo ok
