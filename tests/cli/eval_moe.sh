# pare eval on the mixture-of-experts references (Mixtral = llama with experts, Qwen2-MoE with
# its shared expert): llama-perplexity's figures at --ctx 128 on GPL-3, within 0.02% (f32)
# and 0.2% (Q8_0, Q4_K_M); ../shared/models/arch/README.md lists them.
. tests/clilib.sh
need_shared models/arch/qwen2moe/qwen2moe-f32.gguf
TXT=$SHARED/data/gpl-3.txt
check() { # ARCH TYPE WANT TOLERANCE(relative)
    f=$SHARED/models/arch/$1/$1-$2.gguf
    $PARE eval $f --text $TXT --ctx 128 --threads 2 >$T/out 2>$T/err || { cat $T/err; fail "eval $f failed"; }
    got=$(sed -n 's/^Final estimate: PPL = \([0-9.]*\).*/\1/p' $T/out)
    awk -v g="$got" -v w="$3" -v t="$4" 'BEGIN { d = (g - w) / w; if (d < 0) d = -d; exit !(d <= t) }' ||
        fail "$1 $2: PPL $got, llama.cpp $3 (tolerance $4)"
    echo "$1 $2: $got (llama.cpp $3)"
}
check mixtral f32 25528743.6868 0.0002
check mixtral Q8_0 25466612.9600 0.002
check mixtral Q4_K_M 24632921.9779 0.002
check qwen2moe f32 37889720.0577 0.0002
check qwen2moe Q8_0 38355329.3887 0.002
check qwen2moe Q4_K_M 38861698.1875 0.002
echo ok
