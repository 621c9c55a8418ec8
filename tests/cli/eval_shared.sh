# pare eval reproduces llama-perplexity's table for fortune-llama on GPL-3 (ctx 256):
# within 0.02% for f32/f16/bf16 and the HF folder, 0.2% for every quantized file.
# The full table runs the optimized binary ($PARE_FAST): 17 evaluations of 20k tokens.
. tests/clilib.sh
need_shared models/fortune-llama-gguf/fortune-llama-f32.gguf
FAST=${PARE_FAST:-build/pare}
R=$SHARED/models/fortune-llama-gguf
TXT=$SHARED/data/gpl-3.txt
check() { # MODEL WANT TOLERANCE(relative)
    $FAST eval "$1" --text $TXT --ctx 256 --threads 2 >$T/out 2>$T/err || { cat $T/err; fail "eval $1 failed"; }
    got=$(sed -n 's/^Final estimate: PPL = \([0-9.]*\).*/\1/p' $T/out)
    awk -v g="$got" -v w="$2" -v t="$3" 'BEGIN { d = (g - w) / w; if (d < 0) d = -d; exit !(d <= t) }' ||
        fail "$1: PPL $got, llama.cpp $2 (tolerance $3)"
    echo "$(basename $1): $got (llama.cpp $2)"
}
check $R/fortune-llama-f32.gguf 46.4733 0.0002
check $R/fortune-llama-f16.gguf 46.4731 0.0002
check $R/fortune-llama-bf16.gguf 46.4733 0.0002
check $SHARED/models/fortune-llama 46.4733 0.0002
for spec in Q8_0:46.4857 Q6_K:46.5127 Q5_K_M:46.4769 Q5_0:46.5573 Q5_1:46.5260 Q4_K_M:46.8055 Q4_K_S:46.6965 \
            Q4_0:46.7152 Q4_1:46.4703 Q3_K_M:46.7498 Q2_K:47.6477 IQ4_NL:46.9337 IQ4_XS:46.8784; do
    check $R/fortune-llama-${spec%%:*}.gguf ${spec#*:} 0.002
done
check $R/fortune-llama-merged-licenses-f32.gguf 27.2037 0.0002
# the running values and the error estimate as llama.cpp prints them
$FAST eval $R/fortune-llama-f32.gguf --text $TXT --ctx 256 --chunks 3 >$T/out 2>/dev/null
grep -q '^\[1\]101.78[34][0-9],\[2\]57.003[0-9],\[3\]43.141[0-9],' $T/out || { cat $T/out; fail "running values"; }
$FAST eval $R/fortune-llama-f32.gguf --text $TXT --ctx 256 >$T/out 2>/dev/null
grep -q 'PPL = 46.473[0-9] +/- 1.4235' $T/out || fail "error estimate"
# split runs merge into the whole run
$PARE eval $R/fortune-llama-Q4_K_M.gguf --text $TXT --ctx 256 --chunks 6 --json >$T/all.json 2>/dev/null || fail "json"
$PARE eval $R/fortune-llama-Q4_K_M.gguf --text $TXT --ctx 256 --chunk-range 0:2 --json >$T/a.json 2>/dev/null || fail "part a"
$PARE eval $R/fortune-llama-Q4_K_M.gguf --text $TXT --ctx 256 --chunk-range 2:6 --json >$T/b.json 2>/dev/null || fail "part b"
expect_exit 0 $PARE eval --merge $T/a.json $T/b.json
whole=$($PARE eval --merge $T/all.json | sed -n 's/^Final estimate: PPL = \(.*\)/\1/p')
merged=$(sed -n 's/^Final estimate: PPL = \(.*\)/\1/p' $T/stdout)
[ -n "$whole" ] && [ "$whole" = "$merged" ] || fail "merged parts give '$merged', the whole run '$whole'"
# KL divergence against the f32 base
$FAST eval $R/fortune-llama-Q4_K_M.gguf --text $TXT --ctx 256 --kld-base $R/fortune-llama-f32.gguf >$T/out 2>/dev/null || fail "kld"
grep -q 'Mean    KLD:' $T/out && grep -q 'Same top p:' $T/out && grep -q 'RMS Δp' $T/out || { cat $T/out; fail "kld report"; }
# bad input: a short text, a base with another vocabulary, an unknown architecture
head -c 300 $TXT > $T/short.txt
expect_exit 2 $PARE eval $R/fortune-llama-f32.gguf --text $T/short.txt --ctx 256
grep -q "fewer than two chunks" $T/stderr || fail "short text message"
expect_exit 2 $PARE eval $R/fortune-llama-f32.gguf --text $TXT --ctx 256 --kld-base tests/fixtures/tiny-llama
expect_exit 2 $PARE eval $SHARED/data/vocab/ggml-vocab-gpt-2.gguf --text $TXT
echo '{"format": "something-else"}' > $T/bad.json
expect_exit 2 $PARE eval --merge $T/bad.json
echo ok
