# pare eval reproduces llama-perplexity's figures (ctx 128, GPL-3) for the dense families of
# ../shared/models/arch: within 0.02% for f32, 0.2% for Q8_0 and Q4_K_M. llama.cpp made them
# with an AVX2 build, so the evaluations run at pare's AVX2 kernel level (PARE_ISA=avx2), where
# pare follows the same order (gemma2's 26 layers amplify the last bits of any other order by
# up to 0.8% of PPL); the families other than gemma2 also at the CPU's own level.
# Also: a GGUF of an architecture pare does not evaluate is refused in one line (exit 2).
. tests/clilib.sh
need_shared models/arch/gemma2/gemma2-f32.gguf
FAST=${PARE_FAST:-build/pare}
A=$SHARED/models/arch
TXT=$SHARED/data/gpl-3.txt
# the figure of FILE in the README's table (the PPL before ±)
want() { sed -n "s/^| $1 | $2 | [0-9]* | \([0-9.]*\) ±.*/\1/p" $A/README.md; }
check() { # ARCH TYPE TOLERANCE(relative) [ISA]
    f=$1-$2.gguf
    w=$(want $1 $f)
    [ -n "$w" ] || fail "no llama.cpp figure for $f in $A/README.md"
    PARE_ISA=${4:-} $FAST eval $A/$1/$f --text $TXT --ctx 128 --threads 2 >$T/out 2>$T/err ||
        { cat $T/err; fail "eval $f failed"; }
    got=$(sed -n 's/^Final estimate: PPL = \([0-9.]*\).*/\1/p' $T/out)
    lvl=$(sed -n 's/.*threads, \([a-z0-9]*\) kernels$/\1/p' $T/err)
    awk -v g="$got" -v w="$w" -v t="$3" 'BEGIN { d = (g - w) / w; if (d < 0) d = -d; exit !(d <= t) }' ||
        fail "$f ($lvl kernels): PPL $got, llama.cpp $w (tolerance $3)"
    echo "$f ($lvl): $got (llama.cpp $w)"
}
avx2=$(PARE_ISA=avx2 $FAST eval $A/phi2/phi2-f32.gguf --text $TXT --ctx 128 --chunks 1 2>&1 >/dev/null |
       sed -n 's/.*threads, \([a-z0-9]*\) kernels$/\1/p')
for a in starcoder2 phi2 gptneox command-r olmo2 gemma phi3 gemma2; do
    if [ "$avx2" = avx2 ]; then
        check $a f32 0.0002 avx2
        check $a Q8_0 0.002 avx2
        check $a Q4_K_M 0.002 avx2
    else
        echo "no AVX2 level on this CPU: $a at its own level only"
    fi
    [ $a = gemma2 ] && continue
    check $a f32 0.0002
    check $a Q4_K_M 0.002
done
# a vision projector (general.architecture "clip"): a GGUF v3 with that one key and no tensors
printf 'GGUF\003\000\000\000\000\000\000\000\000\000\000\000\001\000\000\000\000\000\000\000' >$T/clip.gguf
printf '\024\000\000\000\000\000\000\000general.architecture\010\000\000\000\004\000\000\000\000\000\000\000clip' >>$T/clip.gguf
expect_exit 2 $PARE eval $T/clip.gguf --text $TXT
grep -q "cannot evaluate architecture 'clip'" $T/stderr || { cat $T/stderr; fail "unknown architecture message"; }
[ "$(wc -l <$T/stderr)" -eq 1 ] || { cat $T/stderr; fail "the message is not one line"; }
echo ok
