#!/bin/sh
# bench/structured.sh - structured pruning against quantization alone on ../shared's
# fortune-llama (a few minutes on 2 cores; not run by CI).
#
# Calibration: the Debian licence texts other than GPL-3 (/usr/share/common-licenses);
# evaluation: ../shared/data/gpl-3.txt, ctx 128, all 156 chunks. For each variant prints one
# markdown row: file size, parameters, PPL, pare eval's tokens/s (the median of BENCH_REPEAT
# runs, default 3). Structured variants are shown in f32 and quantized to Q8_0 / Q4_K_M
# afterwards (pare quantize), beside llama.cpp's own quantizations of the unpruned model,
# which reach the same sizes by lower-bit types alone. Then one pare shrink with a gate.
# Usage: sh bench/structured.sh [OUTDIR]   (PARE=build/pare, PARE_SHARED=../shared)
set -u
PARE=${PARE:-build/pare}
SHARED=${PARE_SHARED:-../shared}
OUT=${1:-bench/out/structured}
REPEAT=${BENCH_REPEAT:-3}
R=$SHARED/models/fortune-llama-gguf
F=$R/fortune-llama-f32.gguf
TXT=$SHARED/data/gpl-3.txt
LIC=/usr/share/common-licenses
mkdir -p "$OUT"
cat $LIC/Apache-2.0 $LIC/Artistic $LIC/BSD $LIC/GPL-2 $LIC/LGPL-2.1 $LIC/MPL-2.0 > "$OUT/calib.txt"
C="--calib $OUT/calib.txt --calib-ctx 128 --calib-tokens 4096"

row() { # name file
    params=$($PARE inspect "$2" | sed -n 's/^tensors: *[0-9]*, \([0-9]*\) parameters.*/\1/p')
    size=$(stat -c %s "$2")
    ppl=; speeds=
    for i in $(seq "$REPEAT"); do
        $PARE eval "$2" --text "$TXT" --ctx 128 > "$OUT/eval.txt" 2>&1
        ppl=$(sed -n 's/^Final estimate: PPL = \([0-9.]*\).*/\1/p' "$OUT/eval.txt")
        speeds="$speeds $(sed -n 's/.* \([0-9]*\) tokens\/s$/\1/p' "$OUT/eval.txt")"
    done
    speed=$(echo $speeds | tr ' ' '\n' | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }')
    printf '| %-28s | %10s | %9s | %8s | %7s |\n' "$1" "$size" "$params" "$ppl" "$speed"
}

prune() { # name options...
    n=$1; shift
    $PARE prune "$F" "$OUT/$n.gguf" --structured "$@" $C --force > "$OUT/$n.plan" 2>&1 || { cat "$OUT/$n.plan"; exit 1; }
}

prune drop1 --drop-layers 1
prune drop2 --drop-layers 2
prune ffn75 --ffn-keep 0.75
prune ffn50 --ffn-keep 0.5
prune heads75 --heads-keep 0.75
for n in drop1 drop2 ffn75 ffn50 heads75; do
    for q in Q8_0 Q4_K_M; do $PARE quantize "$OUT/$n.gguf" "$OUT/$n-$q.gguf" --type $q --force > /dev/null 2>&1; done
done

echo "| model | file bytes | params | PPL gpl-3 | tokens/s |"
echo "|---|---:|---:|---:|---:|"
row "f32 (unpruned)" "$F"
for n in drop1 drop2 ffn75 ffn50 heads75; do row "$n f32" "$OUT/$n.gguf"; done
for q in Q8_0 Q6_K Q5_K_M Q5_0 Q4_K_M Q4_0 Q3_K_M Q2_K; do row "$q (unpruned)" "$R/fortune-llama-$q.gguf"; done
for n in drop1 drop2 ffn75 ffn50 heads75; do
    for q in Q8_0 Q4_K_M; do row "$n + $q" "$OUT/$n-$q.gguf"; done
done

echo
echo "pare shrink --ffn-keep 0.75 --type Q8_0 (gate: 5% PPL on gpl-3.txt, ctx 128):"
$PARE shrink "$F" "$OUT/shrink.gguf" --text "$TXT" --ctx 128 --ffn-keep 0.75 $C --type Q8_0 --force 2>&1 | grep '^shrink: PPL\|gate'
