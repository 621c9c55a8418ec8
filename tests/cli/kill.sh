# SIGKILL at random moments of convert, quantize, merge-lora, prune, shrink and a folder
# output (four moments each, spread over the run's length as measured first): the
# destination folder holds nothing afterwards but OUT, and OUT, when there, is the whole file
# an uninterrupted run writes (outputs are unnamed files until complete: core/files.c).
# The exception are folders (a folder cannot be unnamed): shrink's working folder
# (.OUT.pare-shrink-XXXXXX) and the folder an HF output is built in (.OUT.pare-XXXXXX), which
# the next pare run that writes in that folder removes; that is checked.
. tests/clilib.sh
F=tests/fixtures
TXT=$F/eval.txt
expect_exit 0 $PARE convert $F/tiny-llama $T/base.gguf
now() { date +%s.%N; }
kills=0
# try NAME OUTNAME CMD...: a reference run, then four runs killed at random moments
try() {
    name=$1 out=$2; shift 2
    mkdir -p $T/ref-$name
    t0=$(now)
    "$@" $T/ref-$name/$out >/dev/null 2>&1 || fail "$name: the uninterrupted run failed"
    dur=$(awk -v a="$t0" -v b="$(now)" 'BEGIN { printf "%.3f", b - a }')
    for i in 1 2 3 4; do
        d=$T/kill-$name-$i
        mkdir -p $d
        delay=$(awk -v s="$dur" -v seed="$$$i" 'BEGIN { srand(seed); printf "%.3f", rand() * s }')
        "$@" $d/$out >/dev/null 2>&1 &
        pid=$!
        sleep "$delay"
        kill -9 $pid 2>/dev/null
        wait $pid 2>/dev/null
        kills=$((kills + 1))
        left=$(ls -A $d | grep "^\.$out\.pare-" | head -n 1)
        if [ -n "$left" ] && [ -d "$d/$left" ]; then
            expect_exit 0 $PARE convert $F/tiny-llama $d/sweeper.gguf # any write here sweeps it
            rm -f $d/sweeper.gguf
        fi
        for e in $(ls -A $d); do
            [ "$e" = "$out" ] || fail "$name, killed after ${delay}s of ${dur}s: '$e' left in the folder"
        done
        if [ -d $d/$out ]; then
            diff -r $d/$out $T/ref-$name/$out >/dev/null || fail "$name, killed after ${delay}s: $out/ is not complete"
        elif [ -e $d/$out ]; then
            cmp -s $d/$out $T/ref-$name/$out || fail "$name, killed after ${delay}s: $out is not the complete file"
        fi
    done
}
try convert out.gguf $PARE convert $F/tiny-llama --type f16
try quantize out.gguf $PARE quantize $T/base.gguf --type Q4_K_M
try merge-lora out.gguf $PARE merge-lora $T/base.gguf $F/tiny-llama-lora
try prune out.gguf $PARE prune $T/base.gguf --pattern 2:4
try shrink out.gguf $PARE shrink $T/base.gguf --text $TXT --ctx 64 --type Q8_0
try hf-folder hf $PARE convert $T/base.gguf
echo "$kills runs killed at random moments: no debris, no partial output"
