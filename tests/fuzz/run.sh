#!/bin/sh
# tests/fuzz/run.sh NAME... - runs the libFuzzer targets build/fuzz/fuzz_NAME one after the
# other (under nice, one process at a time), FUZZ_SECONDS each (default 60). `make fuzz`.
#
# Seeds: tests/fuzz/regress/NAME (committed), the fixtures tests/fuzz/targets.sh lists, real
# files of ../shared (fuzz_shared_seeds, cut to -max_len; tokenizer texts cut into their test
# cases), and
# the malformed files the module tests write (test_gguf, test_safetensors, test_pytorch,
# test_hf --write-corpus) when those binaries are built. New inputs go to
# build/fuzz/corpus/NAME (kept between runs), crashes, leaks and timeouts to
# build/fuzz/crashes/NAME-*. Exits 1 when any target failed; prints one line per target.
set -u
. tests/fuzz/targets.sh
: "${FUZZ_SECONDS:=60}"
B=build/fuzz
mkdir -p $B/corpus $B/crashes $B/seeds
# Scratch files go to tmpfs when there is one (pare_outfile fsyncs every output).
tmp=$(mktemp -d "${FUZZ_TMP:-/dev/shm}/pare-fuzz-run.XXXXXX" 2>/dev/null || mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export TMPDIR="$tmp" OPENBLAS_NUM_THREADS=1
SEP='\n#pare-fuzz-file#\n'

# HF corpus folders of test_hf as fuzz_hf.c's joined pieces.
hf_join() {
    first=1
    for f in config.json tokenizer.model tokenizer_config.json tokenizer.json added_tokens.json \
             special_tokens_map.json; do
        [ $first -eq 1 ] || printf "$SEP"
        first=0
        [ -f "$1/$f" ] && cat "$1/$f"
    done
}

seeds_for() {
    s=$B/seeds/$1
    rm -rf "$s"; mkdir -p "$s"
    for f in $(fuzz_fixture_seeds "$1"); do
        if [ -d "$f" ]; then cp "$f"/* "$s"/; else cp "$f" "$s"/; fi
    done
    # Real files of ../shared, cut to what the fuzzer reads; folders joined into one input.
    max=$(fuzz_max_len "$1")
    k=0
    for f in $(fuzz_shared_seeds "$1"); do
        k=$((k + 1))
        case $1 in
            hf) hf_join "$f" | head -c "$max" >"$s/shared-$k";;
            lora) { cat "$f/adapter_config.json"; printf "$SEP"; cat "$f/adapter_model.safetensors" 2>/dev/null; } |
                      head -c "$max" >"$s/shared-$k";;
            # one seed per test case, each after a selector byte (fuzz_tokenizer.c) that
            # goes round the vocabularies with and without BOS/EOS
            tokenizer)
                awk -v RS='\n__ggml_vocab_test__\n' -v out="$tmp/case-" '{ f = out NR; printf "%s", $0 > f; close(f) }' "$f"
                for c in "$tmp"/case-*; do
                    [ -f "$c" ] || continue
                    sel=$(( (k * 7 + ${c##*-}) % 36 ))
                    { printf "\\$(printf %03o $sel)"; head -c $((max - 1)) "$c"; } >"$s/shared-$k-${c##*-}"
                    rm -f "$c"
                done;;
            *) head -c "$max" "$f" >"$s/shared-$k";;
        esac
    done
    case $1 in
        gguf|safetensors|pytorch)
            t=build/san/tests/test_$1
            [ -x "$t" ] && "$t" --write-corpus "$s" >/dev/null 2>&1;;
        hf)
            if [ -x build/san/tests/test_hf ]; then
                build/san/tests/test_hf --write-corpus "$tmp/hfc" >/dev/null 2>&1
                for d in "$tmp"/hfc/*/; do [ -d "$d" ] && hf_join "$d" >"$s/test_hf-$(basename "$d")"; done
            fi;;
    esac
    echo "$s"
}

failed=""
for name in "$@"; do
    bin=$B/fuzz_$name
    [ -x "$bin" ] || { echo "fuzz $name: $bin missing"; failed="$failed $name"; continue; }
    mkdir -p $B/corpus/$name
    seeds=$(seeds_for "$name")
    dict=tests/fuzz/dict/$name.dict
    [ -f "$dict" ] && dict="-dict=$dict" || dict=""
    log=$B/fuzz_$name.log
    regress=""; [ -d tests/fuzz/regress/$name ] && regress=tests/fuzz/regress/$name
    # malloc_limit_mb: no input of 64 KB justifies 256 MB; rss_limit_mb leaves the machine usable.
    nice -n 19 "$bin" -max_total_time="$FUZZ_SECONDS" -max_len="$(fuzz_max_len "$name")" $dict \
        -timeout=10 -malloc_limit_mb=256 -rss_limit_mb=1024 -print_final_stats=1 \
        -artifact_prefix="$B/crashes/$name-" \
        $B/corpus/$name $regress "$seeds" >"$log" 2>&1
    rc=$?
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -n 1)
    if [ $rc -eq 0 ]; then
        echo "fuzz $name: ok, ${runs:-?} runs in ${FUZZ_SECONDS}s, $cov, corpus $(ls $B/corpus/$name | wc -l) files"
    else
        echo "fuzz $name: FAILED (exit $rc), see $log:"
        grep -E 'ERROR|runtime error|oracle failed|Test unit written|SUMMARY' "$log" | head -n 8 | sed 's/^/  /'
        failed="$failed $name"
    fi
done
[ -z "$failed" ] || { echo "fuzz failed:$failed"; exit 1; }
echo "fuzz: every target ran clean"
