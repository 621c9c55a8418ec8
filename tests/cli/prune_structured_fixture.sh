# pare prune --structured on the repository's tiny-llama fixture (2 layers, HF folder in):
# each removal gives a model the evaluator runs, with the counts and widths it should have;
# the layer test's report names a layer; --dry-run writes nothing; usage errors.
. tests/clilib.sh
F=tests/fixtures
C="--calib $F/calib.txt --calib-ctx 32 --calib-tokens 256"
key() { $PARE inspect "$1" | awk -v k="$2" '$1 == k { $1 = ""; $2 = ""; sub(/^ +/, ""); print }'; }
ppl() { $PARE eval "$1" --text $F/eval.txt --ctx 32 --chunks 4 2>/dev/null | sed -n 's/^Final estimate: PPL = \([0-9.]*\).*/\1/p'; }
expect_exit 0 $PARE prune $F/tiny-llama $T/d1.gguf --structured --drop-layers 1 $C
grep -q -- "-> removing layer [01] " $T/stdout || fail "no layer chosen: $(cat $T/stdout)"
[ "$(key $T/d1.gguf llama.block_count)" = 1 ] || fail "block_count"
expect_exit 0 $PARE prune $F/tiny-llama $T/f.gguf --structured --ffn-keep 0.5 --heads-keep 0.5 $C
[ "$(key $T/f.gguf llama.feed_forward_length)" = 96 ] || fail "feed_forward_length $(key $T/f.gguf llama.feed_forward_length)"
[ "$(key $T/f.gguf llama.attention.head_count)" = 2 ] && [ "$(key $T/f.gguf llama.attention.head_count_kv)" = 1 ] ||
    fail "head counts"
for f in d1 f; do [ -n "$(ppl $T/$f.gguf)" ] || fail "$f.gguf does not evaluate"; done
expect_exit 0 $PARE prune $F/tiny-llama $T/x.gguf --structured --ffn-keep 0.5 --dry-run $C
[ ! -e $T/x.gguf ] || fail "--dry-run wrote the file"
expect_exit 1 $PARE prune $F/tiny-llama $T/x.gguf --structured --ffn-keep 0.5 --sparsity 0.5 $C
expect_exit 1 $PARE prune $F/tiny-llama $T/x.gguf --structured --ffn-keep 0.5
expect_exit 1 $PARE prune $F/tiny-llama $T/x.gguf --structured --layers 0,1
expect_exit 1 $PARE prune $F/tiny-llama $T/x.gguf --structured --experts-keep 0.5
[ ! -e $T/x.gguf ] || fail "a refused result was written"
echo "tiny-llama: one layer dropped, FFN 192 -> 96, heads 4/2 -> 2/1"
