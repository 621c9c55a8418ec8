# pare tokenize: usage errors, the tiny-llama fixture's tokens, JSON, a GGUF without a
# vocabulary, and (with ../shared) llama.cpp's tokens of the GPL byte for byte.
. tests/clilib.sh
F=tests/fixtures/tiny-llama
expect_exit 0 $PARE tokenize --help
expect_exit 1 $PARE tokenize $F
expect_exit 1 $PARE tokenize $F --string a --text b
expect_exit 1 $PARE tokenize --string a
expect_exit 1 $PARE tokenize $F --string a --bogus
expect_exit 0 $PARE tokenize $F --string "Hello world" --ids
[ "$(cat $T/stdout)" = "[1, 300, 344, 301, 312, 312, 303, 282, 273, 312, 311]" ] || fail "ids: $(cat $T/stdout)"
expect_exit 0 $PARE tokenize $F --string "Hello world" --ids --no-bos
[ "$(cat $T/stdout)" = "[300, 344, 301, 312, 312, 303, 282, 273, 312, 311]" ] || fail "no-bos ids: $(cat $T/stdout)"
printf 'Hello world' > $T/hello.txt
expect_exit 0 $PARE tokenize $F --text $T/hello.txt --json
grep -q '"n_tokens":11' $T/stdout || fail "json: $(cat $T/stdout)"
grep -q '"tokens":\[1,300,344,' $T/stdout || fail "json: $(cat $T/stdout)"
expect_exit 0 $PARE tokenize $F --string "Hello"
grep -q "^   344 'H'$" $T/stdout || fail "pieces: $(cat $T/stdout)"
expect_exit 2 $PARE tokenize $F --text $T/does-not-exist.txt
# a valid GGUF with no metadata at all: a one-line error naming it
printf 'GGUF\003\000\000\000\000\000\000\000\000\000\000\000\000\000\000\000\000\000\000\000' > $T/empty.gguf
expect_exit 2 $PARE tokenize $T/empty.gguf --string x
[ "$(wc -l < $T/stderr)" -eq 1 ] && grep -q "empty.gguf.*tokenizer.ggml.model" $T/stderr || fail "error: $(cat $T/stderr)"
if [ -e "$SHARED/models/fortune-llama-golden/tokens-gpl3.txt" ]; then
    expect_exit 0 $PARE tokenize $SHARED/models/fortune-llama-gguf/fortune-llama-f32.gguf --text $SHARED/data/gpl-3.txt --ids
    cmp -s $T/stdout $SHARED/models/fortune-llama-golden/tokens-gpl3.txt || fail "GPL tokens differ from llama.cpp's"
    echo "GPL tokens equal llama.cpp's"
elif [ "${CI:-}" = "true" ]; then
    fail "$SHARED missing under CI"
fi
echo ok
