#!/bin/sh
# bench/run.sh - pare's speed and memory benchmarks (make bench; many minutes; not run by CI).
#
# Compares pare with llama.cpp's tools as measured on this kind of machine (2 cores, figures in
# ../shared/README.md) and with a plain `cp` of the 1b checkpoint measured here and now.
# Each benchmark runs BENCH_REPEAT times (default 3; the median is reported) under /usr/bin/time -v (Debian package `time`), after a `sync` so
# that earlier writes are not billed to it, and prints one line:
#   name, wall seconds, throughput, peak RSS MB, the reference figure, speed ratio (reference
#   time / pare time, or pare tokens/s / reference tokens/s: above 1 means pare is faster),
#   pare's time in units of cp's (median of three copies of the 1b file; `cp+sync` shows what
#   a copy costs until the data is on disk); then the command itself.
# The same lines go to bench/out/results.txt; each command's output to bench/out/log/NAME.log.
# A pare subcommand that does not exist yet (`pare CMD --help` fails) is "not available".
#
# Inputs (made once and kept in bench/out/, which git ignores):
#   1b/     make_synthetic_llama.py --preset 1b --dtype bf16 (TinyLlama-1.1B shape, 2.2 GB)
#   small/  make_synthetic_llama.py --preset small --dtype f32 (125M parameters)
#   lora-1b/ bench/make_random_lora.py, rank 16 on all seven projections
# The synthetic checkpoints have no tokenizer: they get tests/fixtures/tiny-llama's
# sentencepiece files (384 pieces; a converter pads the vocabulary to the model's 32000 with
# [PAD] tokens as llama.cpp's does), so that GGUF files made from them can tokenize the text
# that `pare eval` reads.
#
# Environment: PARE (default build/pare), PARE_SHARED (default ../shared), BENCH_OUT
# (default bench/out), BENCH_ONLY (a grep -E pattern of benchmark names to run).
set -u
cd "$(dirname "$0")/.." || exit 1
PARE=${PARE:-build/pare}
SHARED=${PARE_SHARED:-../shared}
OUT=${BENCH_OUT:-bench/out}
ONLY=${BENCH_ONLY:-.}
REPEAT=${BENCH_REPEAT:-3}
TIME=/usr/bin/time
TEXT=tests/fixtures/eval.txt
FIX=tests/fixtures/tiny-llama
M1B=$OUT/1b
MSMALL=$OUT/small
RESULTS=$OUT/results.txt

die() { echo "bench: $*" >&2; exit 1; }

[ -x "$PARE" ] || die "$PARE not built (make)"
if [ ! -x "$TIME" ]; then
    if [ "$(id -u)" = 0 ]; then
        echo "bench: installing Debian package 'time' for $TIME"
        apt-get install -y -qq time >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq time >/dev/null; }
    fi
    [ -x "$TIME" ] || die "$TIME missing: apt-get install time"
fi
# Debian's python3 has numpy; a pyenv or venv python3 earlier on PATH may not.
PY=
for p in python3 /usr/bin/python3; do
    if command -v "$p" >/dev/null 2>&1 && "$p" -c 'import numpy' 2>/dev/null; then PY=$p; break; fi
done
[ -n "$PY" ] || die "no python3 with numpy (apt-get install python3-numpy)"
[ -f "$SHARED/tools/make_synthetic_llama.py" ] || die "$SHARED/tools/make_synthetic_llama.py not found"
mkdir -p "$OUT/log" "$OUT/tmp"

# ------------------------------------------------------------------ inputs, made once
make_synthetic() { # DIR PRESET DTYPE
    if [ ! -f "$1/.complete" ]; then
        echo "bench: writing the synthetic $2 checkpoint ($3) to $1 (once)"
        rm -rf "$1"
        "$PY" "$SHARED/tools/make_synthetic_llama.py" "$1" --preset "$2" --dtype "$3" || die "make_synthetic_llama.py failed"
        for f in tokenizer.model tokenizer_config.json special_tokens_map.json; do cp "$FIX/$f" "$1/"; done
        touch "$1/.complete"
    fi
}
# The 1b checkpoint (2.2 GB) only when a benchmark that reads it is selected.
NEED_1B=
for n in cp-1 cp+sync convert-f16 convert-q8_0 quantize-Q8_0 merge-lora prune-2:4 fp8-1b; do
    echo "$n" | grep -Eq "$ONLY" && NEED_1B=1
done
[ -n "$NEED_1B" ] && make_synthetic "$M1B" 1b bf16
make_synthetic "$MSMALL" small f32
if [ -n "$NEED_1B" ] && [ ! -f "$OUT/lora-1b/.complete" ]; then
    "$PY" bench/make_random_lora.py "$M1B" "$OUT/lora-1b" --rank 16 || die "make_random_lora.py failed"
    touch "$OUT/lora-1b/.complete"
fi

# ------------------------------------------------------------------ measuring
have() { "$PARE" "$1" --help >/dev/null 2>&1; }
# quantize IN OUT TYPE as `--type TYPE` when its --help mentions --type, else positional.
QTYPE_OPT=--type
have quantize && ! "$PARE" quantize --help 2>&1 | grep -q -- --type && QTYPE_OPT=
quantize_cmd() { # IN OUT TYPE
    echo "$PARE quantize $1 $2 ${QTYPE_OPT:+$QTYPE_OPT }$3 --threads 2 --force"
}
mb() { echo $(( $(stat -c %s "$1") / 1000000 )); }

# Seconds from GNU time's "Elapsed (wall clock) time (h:mm:ss or m:ss): 1:02.35".
wall_of() {
    sed -n 's/.*Elapsed (wall clock) time[^:]*: *//p' "$1" |
        awk -F: '{ s = 0; for (i = 1; i <= NF; i++) s = s * 60 + $i; printf "%.2f", s }'
}
rss_of() { sed -n 's/.*Maximum resident set size (kbytes): *//p' "$1" | awk '{ printf "%.0f", $1 / 1024 }'; }

line() { # NAME WALL THROUGHPUT RSS REFERENCE RATIO VS_CP COMMAND
    printf '%-16s %8s s  %-14s %7s MB  ref %-22s %-14s %-9s %s\n' "$1" "$2" "$3" "$4" "$5" "$6" "$7" "$8" | tee -a "$RESULTS"
}

CP_S=
# run NAME KIND REF_S REF_RSS UNITS -- CMD...
#   KIND: "bytes" (UNITS = input bytes; throughput MB/s; ratio = REF_S / wall) or
#         "tokens" (UNITS = tokens processed; throughput tokens/s; REF_S holds the reference
#         tokens/s; ratio = tokens/s / reference).
#   REF_S / REF_RSS: "-" when llama.cpp has no figure.
run() {
    name=$1 kind=$2 ref=$3 ref_rss=$4 units=$5; shift 6
    echo "$name" | grep -Eq "$ONLY" || return 0
    if [ "$1" = "$PARE" ] && ! have "$2"; then
        line "$name" - "not available" - "" "" "" "pare $2: not available yet"; return 0
    fi
    log=$OUT/log/$name.log
    : >"$log"
    tps=0
    # REPEAT runs (this VM's speed swings by up to 2x from one run to the next); the median
    # wall time and the largest peak RSS are reported. Outputs named after the command's
    # last path argument are not removed here: callers remove them after run().
    walls= rss=0 i=0
    while [ "$i" -lt "$REPEAT" ]; do
        i=$((i + 1))
        [ -n "${RM_BEFORE:-}" ] && rm -f "$RM_BEFORE"
        # Flush the previous run's dirty pages first, so that its writeback is not billed here.
        sync
        "$TIME" -v -o "$OUT/tmp/time.txt" "$@" >>"$log" 2>&1; rc=$?
        cat "$OUT/tmp/time.txt" >>"$log"
        if [ "$rc" -ne 0 ]; then
            line "$name" - "FAILED rc=$rc" - "" "" "" "$*  (see $log)"; return 0
        fi
        walls="$walls $(wall_of "$OUT/tmp/time.txt")"
        r=$(rss_of "$OUT/tmp/time.txt"); [ "$r" -gt "$rss" ] && rss=$r
    done
    wall=$(echo $walls | tr ' ' '\n' | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }')
    case $kind in
    bytes)
        tput=$(awk -v b="$units" -v s="$wall" 'BEGIN { printf "%.0f MB/s", (s > 0 ? b / 1e6 / s : 0) }')
        refs="-"; ratio=""
        if [ "$ref" != "-" ]; then
            refs="${ref} s"
            ratio=$(awk -v r="$ref" -v s="$wall" 'BEGIN { printf "x%.2f speed", (s > 0 ? r / s : 0) }')
        fi;;
    tokens)
        # pare eval's own figure (tokens evaluated / seconds of evaluation, load excluded, as
        # llama-perplexity's tokens per second), median over the runs; else units / wall.
        tps=$(sed -n 's/^pare eval: .* s, \([0-9]*\) tokens\/s$/\1/p' "$log" | sort -n |
              awk '{ a[NR] = $1 } END { if (NR) print a[int((NR + 1) / 2)] }')
        [ -n "$tps" ] || tps=$(awk -v n="$units" -v s="$wall" 'BEGIN { printf "%.0f", (s > 0 ? n / s : 0) }')
        tput="$tps tok/s"
        refs="-"; [ "$ref" != 0 ] && refs="${ref} tok/s"
        ratio=$(awk -v t="$tps" -v r="$ref" 'BEGIN { if (r > 0) printf "x%.2f speed", t / r }');;
    esac
    [ "$ref_rss" != "-" ] && refs="$refs ${ref_rss}MB"
    vscp=""
    [ -n "$CP_S" ] && vscp=$(awk -v c="$CP_S" -v s="$wall" 'BEGIN { printf "%.2f cp", (c > 0 ? s / c : 0) }')
    line "$name" "$wall" "$tput" "$rss" "$refs" "$ratio" "$vscp" "$*"
    LAST_WALL=$wall
    LAST_TPS=${tps:-0}
}

# ------------------------------------------------------------------ benchmarks
{
    echo "# pare benchmarks $(date -u '+%Y-%m-%d %H:%M UTC'), $(git rev-parse --short HEAD 2>/dev/null || echo '?'),"
    echo "# $(nproc) cores, $(sed -n 's/^model name[^:]*: //p' /proc/cpuinfo | head -n 1)"
    printf '%-16s %10s  %-14s %10s  %-26s %-14s %-9s %s\n' name wall throughput "peak RSS" reference ratio "vs cp" command
} | tee "$RESULTS"

# Evaluation first, on a machine not yet churned by the 2 GB writes below (page cache,
# writeback, huge-page compaction made it 10-20% slower when it ran last): the small preset
# as f32 / Q8_0 / Q4_0 / Q4_K_M / Q6_K GGUF, ctx 512, 3 chunks of eval.txt, 2 threads, at
# every kernel level this CPU runs (PARE_ISA; core/isa.h), each beside llama-perplexity's
# figure for that instruction set (../shared/README.md: AVX-512 VNNI machine: f32 1086,
# Q8_0 1131, Q4_0 1154, Q4_K_M 647 tokens/s; a 2-core AMD EPYC with AVX2: f32 384, Q8_0 409,
# Q4_0 431, Q4_K_M 336, Q6_K 253 tokens/s, the same text and chunks). The AVX2 figures come
# from another CPU: on an AVX-512 machine the avx2 lines only show the AVX2 kernels' pace.
# tok/s: pare eval's own figure (evaluation only, as llama-perplexity reports it); the wall
# column is the whole command, load included.
SMALL_F32=$OUT/small-f32.gguf
EVAL_TYPES="f32 Q8_0 Q4_0 Q4_K_M Q6_K"
if have eval && echo "eval-" | grep -Eq "$ONLY|eval"; then
    if have convert && [ ! -f "$SMALL_F32" ]; then
        "$PARE" convert "$MSMALL" "$SMALL_F32" --type f32 --force >"$OUT/log/small-convert.log" 2>&1 ||
            echo "bench: converting the small preset failed (see $OUT/log/small-convert.log)"
    fi
    for t in $EVAL_TYPES; do
        [ "$t" = f32 ] && continue
        if have quantize && [ -f "$SMALL_F32" ] && [ ! -f "$OUT/small-$t.gguf" ]; then
            $(quantize_cmd "$SMALL_F32" "$OUT/small-$t.gguf" "$t") \
                >"$OUT/log/small-quantize-$t.log" 2>&1 || echo "bench: quantizing small to $t failed"
        fi
    done
fi
eval_ref() { # LEVEL TYPE -> llama-perplexity's tokens/s, or "-"
    case $1:$2 in
    avx512:f32) echo 1086;; avx512:Q8_0) echo 1131;; avx512:Q4_0) echo 1154;; avx512:Q4_K_M) echo 647;;
    avx2:f32) echo 384;; avx2:Q8_0) echo 409;; avx2:Q4_0) echo 431;; avx2:Q4_K_M) echo 336;; avx2:Q6_K) echo 253;;
    *) echo -;;
    esac
}
KERNELS=$("$PARE" --version 2>/dev/null | sed -n 's/^kernels: //p')
echo "# kernels: ${KERNELS:-unknown}" | tee -a "$RESULTS"
CPU_LEVEL=$(echo "$KERNELS" | sed -n 's/.*cpu \([a-z0-9]*\).*/\1/p')
case $CPU_LEVEL in avx512) LEVELS_RUN="avx512 avx2";; avx2) LEVELS_RUN="avx2";; *) LEVELS_RUN="generic";; esac
EVAL_ARGS="--text $TEXT --ctx 512 --chunks 3 --threads 2"
for lvl in $LEVELS_RUN; do
    for t in $EVAL_TYPES; do
        g=$OUT/small-$t.gguf
        if have eval && [ ! -f "$g" ]; then
            echo "eval-$t-$lvl" | grep -Eq "$ONLY" && line "eval-$t-$lvl" - "no input" - "" "" "" "$g could not be made"
            continue
        fi
        ref=$(eval_ref "$lvl" "$t")
        [ "$ref" = - ] && ref=0
        export PARE_ISA=$lvl
        run "eval-$t-$lvl" tokens "$ref" - 1536 -- "$PARE" eval "$g" $EVAL_ARGS
        unset PARE_ISA
    done
done

# Under load: one busy process per core beside `pare eval --threads 2` (Q8_0), against the
# same run alone just before; the ratio of the two wall times is what to read (at most 2.5:
# the busy processes take half the CPU; a pool that spin-waits for a descheduled thread would
# take far longer).
if have eval && [ -f "$OUT/small-Q8_0.gguf" ] && echo "eval-load" | grep -Eq "$ONLY"; then
    run eval-quiet tokens 0 - 1536 -- "$PARE" eval "$OUT/small-Q8_0.gguf" $EVAL_ARGS
    quiet=$LAST_WALL
    busy=
    for c in $(seq "$(nproc)"); do sh -c 'while :; do :; done' & busy="$busy $!"; done
    run eval-load tokens 0 - 1536 -- "$PARE" eval "$OUT/small-Q8_0.gguf" $EVAL_ARGS
    kill $busy 2>/dev/null; wait $busy 2>/dev/null
    awk -v q="$quiet" -v l="$LAST_WALL" 'BEGIN { if (q > 0) printf "# eval under load: %.2f x its quiet time (%s s vs %s s)\n", l / q, l, q }' | tee -a "$RESULTS"
fi

# The portable binary against one built for this CPU only (make ARCH=native B=build-native,
# built here if missing): the kernels are the same, so their speeds should match.
if have eval && [ -f "$OUT/small-Q4_K_M.gguf" ] && echo "eval-native" | grep -Eq "$ONLY"; then
    [ -x build-native/pare ] || make -s ARCH=native B=build-native build-native/pare >"$OUT/log/native-build.log" 2>&1
    if [ -x build-native/pare ]; then
        for t in Q8_0 Q4_K_M; do
            run "eval-$t-portable" tokens 0 - 1536 -- "$PARE" eval "$OUT/small-$t.gguf" $EVAL_ARGS
            run "eval-$t-native" tokens 0 - 1536 -- build-native/pare eval "$OUT/small-$t.gguf" $EVAL_ARGS
        done
    fi
fi

# Architectures off the llama path must not fall off the fast kernels: 125M-class random
# models of gemma2's shape (26 layers, soft-capping, sliding window, sandwich norms, GEGLU) and
# of Mixtral's (8 experts of 1024, top-2), each beside a llama with the same active parameters
# (tests/fixtures/make_arch_models.py --preset bench: llama-gemma2 has gemma2's dims and tied
# embeddings; llama has a dense FFN of 2048 = two experts of 1024), f32 and Q4_K_M, same text,
# ctx and threads as above. The "ratio" column of the arch line is its tokens/s over its
# twin's (issue: at least 0.8).
if have eval && echo "eval-arch" | grep -Eq "$ONLY"; then
    for pair in gemma2:llama-gemma2 mixtral:llama; do
        a=${pair%%:*} b=${pair#*:}
        for m in $a $b; do
            if [ ! -f "$OUT/arch-$m/.complete" ]; then
                rm -rf "$OUT/arch-$m"
                "$PY" tests/fixtures/make_arch_models.py "$OUT/arch-$m" "$m" --preset bench || die "make_arch_models.py $m failed"
                touch "$OUT/arch-$m/.complete"
            fi
            [ -f "$OUT/arch-$m-f32.gguf" ] || "$PARE" convert "$OUT/arch-$m" "$OUT/arch-$m-f32.gguf" --type f32 --force \
                >"$OUT/log/arch-$m-convert.log" 2>&1 || echo "bench: converting $m failed"
            [ -f "$OUT/arch-$m-Q4_K_M.gguf" ] || $(quantize_cmd "$OUT/arch-$m-f32.gguf" "$OUT/arch-$m-Q4_K_M.gguf" Q4_K_M) \
                >"$OUT/log/arch-$m-quantize.log" 2>&1 || echo "bench: quantizing $m failed"
        done
        for t in f32 Q4_K_M; do
            run "eval-arch-$b-$t" tokens 0 - 1536 -- "$PARE" eval "$OUT/arch-$b-$t.gguf" $EVAL_ARGS
            twin=$LAST_TPS
            run "eval-arch-$a-$t" tokens 0 - 1536 -- "$PARE" eval "$OUT/arch-$a-$t.gguf" $EVAL_ARGS
            awk -v a="$LAST_TPS" -v b="$twin" -v n="$a-$t" 'BEGIN { if (b > 0) printf "# %s: %.2f x the tokens/s of its llama twin\n", n, a / b }' | tee -a "$RESULTS"
        done
    done
fi

if [ -z "$NEED_1B" ]; then echo "results in $RESULTS"; exit 0; fi
ST1B=$M1B/model.safetensors
B1B=$(stat -c %s "$ST1B")
F16=$OUT/1b-f16.gguf
# cp, three times (its time swings with the page cache's writeback); the median is the baseline.
LAST_WALL=
walls=
REPEAT_ALL=$REPEAT REPEAT=1
for i in 1 2 3; do
    run "cp-$i" bytes 4.1 - "$B1B" -- cp "$ST1B" "$OUT/tmp/copy.safetensors"
    walls="$walls $LAST_WALL"
    rm -f "$OUT/tmp/copy.safetensors"
done
CP_S=$(echo $walls | tr ' ' '\n' | sort -n | sed -n 2p)
# ... and once until the copy is on disk, for scale: the figures above may be page-cache speed.
run cp+sync bytes 4.1 - "$B1B" -- sh -c "cp '$ST1B' '$OUT/tmp/copy.safetensors' && sync"
rm -f "$OUT/tmp/copy.safetensors"
echo "# cp baseline (median of 3): ${CP_S:-?} s" | tee -a "$RESULTS"
REPEAT=$REPEAT_ALL

# Outputs are removed first: replacing an existing 2 GB file makes the rename free its blocks,
# which would be timed as part of pare's work.
# (each run removes its own output first: RM_BEFORE)
RM_BEFORE=$F16
run convert-f16 bytes 7.3 2500 "$B1B" -- "$PARE" convert "$M1B" "$F16" --type f16 --force
RM_BEFORE=
RM_BEFORE=$OUT/1b-q8_0.gguf
run convert-q8_0 bytes 15.0 - "$B1B" -- "$PARE" convert "$M1B" "$OUT/1b-q8_0.gguf" --type q8_0 --force
RM_BEFORE=
rm -f "$OUT/1b-q8_0.gguf"

if [ -f "$F16" ]; then
    BF16=$(stat -c %s "$F16")
    # pare writes large outputs past the page cache (O_DIRECT), so convert-f16's output is not
    # cached: read it once, untimed, so that the runs below start warm as convert's did (its
    # input was read by the cp runs).
    cat "$F16" >/dev/null
    for spec in Q8_0:4.0 Q4_0:2.5 Q6_K:16.7 Q2_K:19.5 Q4_K_M:26.7; do
        t=${spec%%:*}; ref=${spec#*:}
        RM_BEFORE=$OUT/1b-$t.gguf
        # shellcheck disable=SC2046 # paths here have no spaces
        run "quantize-$t" bytes "$ref" 2400 "$BF16" -- $(quantize_cmd "$F16" "$OUT/1b-$t.gguf" "$t")
        RM_BEFORE=
        rm -f "$OUT/1b-$t.gguf"
    done
    RM_BEFORE=$OUT/1b-merged.gguf
    run merge-lora bytes 15.4 265 "$BF16" -- \
        "$PARE" merge-lora "$F16" "$OUT/lora-1b" "$OUT/1b-merged.gguf" --threads 2 --force
    RM_BEFORE=
    rm -f "$OUT/1b-merged.gguf"
    RM_BEFORE=$OUT/1b-pruned.gguf
    run prune-2:4 bytes - - "$BF16" -- \
        "$PARE" prune "$F16" "$OUT/1b-pruned.gguf" --pattern 2:4 --threads 2 --force
    RM_BEFORE=
    rm -f "$OUT/1b-pruned.gguf"
else
    line "1b-f16.gguf" - "missing" - "" "" "" "quantize, merge-lora and prune need convert-f16's output"
fi

# An FP8 checkpoint of the 1b shape (tests/fixtures/make_fp8_model.py: DeepSeek-style
# F8_E4M3 linear weights with 128 x 128 weight_scale_inv blocks, 3 shards, 1.3 GB), straight
# to GGUF: bf16 and Q4_K_M in one pass each (issue: peak RSS under 300 MB). No llama.cpp
# figure: its converter does not read FP8 (a separate FP8 -> BF16 script runs first).
if echo "fp8-1b" | grep -Eq "$ONLY"; then
    if [ ! -f "$OUT/1b-fp8/.complete" ]; then
        rm -rf "$OUT/1b-fp8"
        "$PY" tests/fixtures/make_fp8_model.py "$M1B" "$OUT/1b-fp8" - --shards 3 || die "make_fp8_model.py failed"
        touch "$OUT/1b-fp8/.complete"
    fi
    BFP8=$(du -cb "$OUT"/1b-fp8/*.safetensors | tail -n 1 | cut -f 1)
    for t in bf16 Q4_K_M; do
        RM_BEFORE=$OUT/1b-fp8-$t.gguf
        if [ $t = bf16 ]; then set -- convert; else set -- quantize; fi
        run "fp8-1b-$t" bytes - - "$BFP8" -- "$PARE" "$1" "$OUT/1b-fp8" "$OUT/1b-fp8-$t.gguf" --type $t --force
        RM_BEFORE=
        rm -f "$OUT/1b-fp8-$t.gguf"
    done
fi

echo "results in $RESULTS"
