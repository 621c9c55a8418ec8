# pare tokenize --check: llama.cpp's pre-tokenizer against tokenizer.json's own definition.
# A generated Qwen-style folder (Qwen2's regex) and its GGUF agree; a planted \p{N}{1,2} is
# refused when naming (one line with the regex and --tokenizer-pre) and, forced to qwen2,
# found by --check on long numbers; \p{N}{1,3} (Llama 3's regex, merges not ignored) is named
# smaug-bpe, and forced to qwen2 differs. With ../shared, every byte-level BPE folder and
# GGUF there agrees on the GPL and on llama.cpp's test strings.
. tests/clilib.sh
need_numpy
"$PY" tests/fixtures/make_arch_models.py $T/q qwen2 >/dev/null || fail "make_arch_models.py qwen2"
printf 'In 2024, 1234567 people paid $89.99 each. Don'"'"'t stop!\n\tTabs  and   spaces 3.14159\n' > $T/text.txt
cat tests/fixtures/eval.txt >> $T/text.txt

# usage
expect_exit 1 $PARE tokenize $T/q --check $T/text.txt --text $T/text.txt
expect_exit 1 $PARE tokenize $T/q --check $T/text.txt --ids
expect_exit 1 $PARE tokenize $T/q --string x --tokenizer-pre qwen2
expect_exit 2 $PARE tokenize $T/q --check $T/missing.txt
expect_exit 2 $PARE tokenize $T/q --check $T/text.txt --tokenizer-pre no-such-pre
grep -q "no-such-pre" $T/stderr || fail "unknown --tokenizer-pre: $(cat $T/stderr)"

# the unmodified folder, and its GGUF
expect_exit 0 $PARE tokenize $T/q --check $T/text.txt
grep -q "tokens, the same with llama.cpp's pre-tokenizer 'qwen2'" $T/stdout || fail "folder: $(cat $T/stdout)"
[ "$(wc -l < $T/stdout)" -eq 1 ] || fail "not one line: $(cat $T/stdout)"
expect_exit 0 $PARE convert $T/q $T/q.gguf
expect_exit 0 $PARE tokenize $T/q.gguf --check $T/text.txt
grep -q "'qwen2' and with the definition in the tokenizer.json pare exports" $T/stdout || fail "gguf: $(cat $T/stdout)"
n_folder=$($PARE tokenize $T/q --check $T/text.txt | sed 's/.*: \([0-9]*\) tokens.*/\1/')
n_gguf=$($PARE tokenize $T/q.gguf --check $T/text.txt | sed 's/.*: \([0-9]*\) tokens.*/\1/')
[ "$n_folder" = "$n_gguf" ] && [ "$n_folder" -gt 100 ] || fail "token counts $n_folder / $n_gguf"

# plant: tokenizer.json's digit rule NEW in folder DIR (a copy of $T/q) whose vocabulary also
# gets two-digit tokens (the generated BPE learnt none, and without them cutting digits
# differently gives the same tokens)
plant() {
    mkdir -p $1 && cp $T/q/* $1/ &&
    "$PY" - "$1/tokenizer.json" "$2" <<'PYEOF' || fail "planting $2 in $1"
import json, sys
path, new = sys.argv[1], sys.argv[2]
j = json.load(open(path, encoding="utf-8"))
split = j["pre_tokenizer"]["pretokenizers"][0]
re = split["pattern"]["Regex"]
assert "|\\p{N}|" in re
split["pattern"]["Regex"] = re.replace("|\\p{N}|", "|" + new + "|", 1)
m = j["model"]
n = max(max(m["vocab"].values()), max(a["id"] for a in j["added_tokens"])) + 1
for a, b in ["12", "34", "20", "24", "56"]:
    m["vocab"][a + b] = n
    n += 1
    m["merges"].insert(0, a + " " + b)
json.dump(j, open(path, "w", encoding="utf-8"), ensure_ascii=False)
PYEOF
}

# a modified regex that matches no pre-tokenizer: refused, with the regex and the hint
plant $T/m2 '\p{N}{1,2}'
grep -q 'p{N}{1,2}|' $T/m2/tokenizer.json || fail "the regex was not planted"
expect_exit 2 $PARE tokenize $T/m2 --check $T/text.txt
grep -q 'BPE pre-tokenizer not recognized' $T/stderr && grep -q 'p{N}{1,2}' $T/stderr &&
    grep -q -- '--tokenizer-pre NAME forces one' $T/stderr || fail "refusal: $(cat $T/stderr)"
[ "$(wc -l < $T/stderr)" -eq 1 ] || fail "refusal not one line: $(cat $T/stderr)"
# forced to qwen2: --check finds where the digits are cut differently
expect_exit 3 $PARE tokenize $T/m2 --check $T/text.txt --tokenizer-pre qwen2
grep -q "the tokenizations differ at token [0-9]*, byte 3 of the text" $T/stdout || fail "difference: $(cat $T/stdout)"
grep -q "llama.cpp's 'qwen2'" $T/stdout && grep -q "tokenizer.json's own" $T/stdout || fail "sides: $(cat $T/stdout)"
cat $T/stdout

# convert names the pre-tokenizer the same way: the planted regex is refused, naming the file
# and showing the regex, and nothing is written; --tokenizer-pre forces a name; an unknown
# name is refused
expect_exit 2 $PARE convert $T/m2 $T/m2.gguf
grep -q 'tokenizer.json' $T/stderr && grep -q 'p{N}{1,2}' $T/stderr || fail "convert refusal: $(cat $T/stderr)"
[ -e $T/m2.gguf ] && fail "a refused conversion left $T/m2.gguf"
expect_exit 0 $PARE convert $T/m2 $T/m2.gguf --tokenizer-pre qwen2
expect_exit 0 $PARE inspect $T/m2.gguf
grep -q 'tokenizer.ggml.pre.*qwen2' $T/stdout || fail "forced pre not written: $(grep pre $T/stdout)"
expect_exit 0 $PARE quantize $T/m2 $T/m2-q8.gguf --type Q8_0 --tokenizer-pre qwen2
expect_exit 1 $PARE convert $T/m2 $T/m2b.gguf --tokenizer-pre no-such-pre
grep -q 'no-such-pre' $T/stderr || fail "unknown forced name: $(cat $T/stderr)"
[ -e $T/m2b.gguf ] && fail "a refused conversion left $T/m2b.gguf"
# the unmodified folder converts to qwen2 unforced
expect_exit 0 $PARE inspect $T/q.gguf
grep -q 'tokenizer.ggml.pre.*qwen2' $T/stdout || fail "qwen2 not named at conversion: $(grep pre $T/stdout)"

# Llama 3's digit rule (without Llama 3's ignore_merges: llama.cpp's smaug-bpe) in a folder whose
# GGUF would say qwen2: named smaug-bpe, and as qwen2 it differs
plant $T/m3 '\p{N}{1,3}'
expect_exit 0 $PARE tokenize $T/m3 --check $T/text.txt
grep -q "pre-tokenizer 'smaug-bpe'" $T/stdout || fail "smaug-bpe: $(cat $T/stdout)"
expect_exit 3 $PARE tokenize $T/m3 --check $T/text.txt --tokenizer-pre qwen2
grep -q "byte 3 of the text" $T/stdout || fail "qwen2 vs {1,3}: $(cat $T/stdout)"

if [ -d "$SHARED/models/arch" ]; then
    for a in qwen2moe starcoder2 olmo2 gptneox command-r phi2; do
        for m in $SHARED/models/arch/$a/hf $SHARED/models/arch/$a/$a-f32.gguf; do
            expect_exit 0 $PARE tokenize $m --check $SHARED/data/gpl-3.txt
        done
        grep -q "pre-tokenizer '$( [ $a = phi2 ] && echo phi-2 || echo gpt-2)'" $T/stdout || fail "$a: $(cat $T/stdout)"
    done
    expect_exit 0 $PARE tokenize $SHARED/data/vocab/ggml-vocab-gpt-2.gguf --check $SHARED/data/vocab/ggml-vocab-gpt-2.gguf.inp
    echo "../shared byte-level BPE tokenizers: llama.cpp's pre-tokenizer and tokenizer.json agree"
elif [ "${CI:-}" = "true" ]; then
    fail "$SHARED missing under CI"
fi
echo ok
