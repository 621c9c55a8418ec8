#!/bin/sh
# bench/auto.sh - pare shrink --type auto against llama-quantize's standard mixes (make bench;
# minutes; not run by CI).
#
# On ../shared/models/fortune-llama (the f32 GGUF), gate text ../shared/data/gpl-3.txt (ctx 256,
# all 78 chunks), calibration text tests/fixtures/calib.txt (a different text: the imatrix and
# the sensitivities come from it, the verdict from the gate):
#  1. every standard mix (Q2_K ... Q8_0, IQ2_XXS ... IQ4_XS) quantized by pare quantize with the
#     imatrix of the calibration text (the information auto has), evaluated on the gate;
#  2. --type auto for budgets of +1%, +3%, +10% PPL and for mean KLD 0.01, 0.03, 0.1;
#  3. --type auto --target-size at Q4_K_M's file size.
# Prints a Markdown table (bytes, PPL, PPL increase, KLD) and, per budget, the smallest
# standard mix that passes the same gate; "auto wins" when the auto file is smaller.
# Optional: BENCH_AUTO_1B=1 (only: nothing else) also times auto on the synthetic 1.1B model of bench/run.sh
# (bench/out/1b converted to GGUF) against quantize Q4_K_M plus two evaluations.
#
# Environment: PARE (default build/pare), PARE_SHARED (default ../shared), BENCH_OUT
# (default bench/out); BENCH_AUTO_REUSE_MIXES=1 keeps the standard mixes' rows of the last run
# in BENCH_OUT (after a change to auto only).
set -u
cd "$(dirname "$0")/.." || exit 1
PARE=${PARE:-build/pare}
SHARED=${PARE_SHARED:-../shared}
OUT=${BENCH_OUT:-bench/out}/auto
M=$SHARED/models/fortune-llama-gguf/fortune-llama-f32.gguf
GATE=$SHARED/data/gpl-3.txt
CAL=tests/fixtures/calib.txt
CTX=256
[ -e "$M" ] || { echo "bench/auto.sh: $M missing"; exit 0; }
mkdir -p "$OUT"
export XDG_CACHE_HOME="$OUT/cache"
RES="$OUT/results.md"
jget() { python3 -c "import json,sys
d=json.load(open(sys.argv[1]))
for k in sys.argv[2].split('.'): d=d[k] if d is not None else None
print('' if d is None else d)" "$@"; }

rc=0
if [ "${BENCH_AUTO_1B:-}" != only ]; then
$PARE imatrix "$M" --text "$CAL" "$OUT/calib.dat" --ctx $CTX --force >/dev/null 2>&1 || { echo "imatrix failed"; exit 1; }
REF=$($PARE eval "$M" --text "$GATE" --ctx $CTX --json 2>/dev/null | python3 -c "import json,sys; print(json.load(sys.stdin)['ppl'])")
echo "reference f32 PPL $REF (gate gpl-3.txt, ctx $CTX)"
printf '| file | bytes | PPL | PPL increase | mean KLD |\n| --- | --- | --- | --- | --- |\n' >"$RES"
if [ "${BENCH_AUTO_REUSE_MIXES:-}" = 1 ] && [ -s "$OUT/mixes.txt" ]; then
    # the mixes' rows of an earlier run (same model, gate and imatrix): only auto runs again
    while read -r mix bytes ppl inc kld; do
        printf '| %s | %s | %.4f | %+.2f%% | %.5f |\n' $mix $bytes $ppl $inc $kld >>"$RES"
    done <"$OUT/mixes.txt"
else
: >"$OUT/mixes.txt"
for mix in Q2_K Q3_K_S Q3_K_M Q3_K_L Q4_0 Q4_1 Q4_K_S Q4_K_M Q5_0 Q5_1 Q5_K_S Q5_K_M Q6_K Q8_0 \
           IQ2_XXS IQ2_XS IQ2_S IQ2_M IQ3_XXS IQ3_XS IQ3_S IQ3_M IQ4_NL IQ4_XS; do
    f="$OUT/$mix.gguf"
    $PARE quantize "$M" "$f" --type $mix --imatrix "$OUT/calib.dat" --force >/dev/null 2>&1 || { echo "$mix: quantize failed"; continue; }
    $PARE eval "$f" --text "$GATE" --ctx $CTX --kld-base "$M" --json >"$OUT/$mix.json" 2>/dev/null || { echo "$mix: eval failed"; continue; }
    bytes=$(stat -c %s "$f")
    ppl=$(jget "$OUT/$mix.json" ppl)
    kld=$(jget "$OUT/$mix.json" kld.mean)
    inc=$(python3 -c "print('%.3f' % (100*($ppl/$REF-1)))")
    echo "$mix $bytes $ppl $inc $kld" >>"$OUT/mixes.txt"
    printf '| %s | %s | %.4f | %+.2f%% | %.5f |\n' $mix $bytes $ppl $inc $kld >>"$RES"
    rm -f "$f"
done
fi

# auto: one budget; prints its row and the comparison
auto_row() { # NAME ARGS...
    name=$1; shift
    f="$OUT/auto.gguf"
    t0=$(date +%s.%N)
    $PARE shrink "$M" "$f" --type auto --calib "$CAL" --text "$GATE" --ctx $CTX "$@" --force -q \
        --report "$OUT/$name.json" >/dev/null 2>"$OUT/$name.log"
    rc=$?
    t1=$(date +%s.%N)
    if [ $rc -ne 0 ]; then echo "| $name | refused (exit $rc) | | | |" >>"$RES"; return; fi
    bytes=$(stat -c %s "$f")
    ppl=$(jget "$OUT/$name.json" result.ppl)
    inc=$(jget "$OUT/$name.json" result.ppl_increase_pct)
    # the KLD of the written file, measured the same way as the mixes'
    kld=$($PARE eval "$f" --text "$GATE" --ctx $CTX --kld-base "$M" --json 2>/dev/null |
          python3 -c "import json,sys; print(json.load(sys.stdin)['kld']['mean'])")
    printf '| **%s** | %s | %.4f | %+.2f%% | %.5f |\n' "$name" $bytes $ppl $inc $kld >>"$RES"
    echo "$name $bytes $ppl $inc $kld $(python3 -c "print('%.1f' % ($t1-$t0))")" >>"$OUT/auto.txt"
    rm -f "$f"
}
: >"$OUT/auto.txt"
for p in 1 3 10; do auto_row "auto +$p% PPL" --max-ppl-increase $p; done
for k in 0.01 0.03 0.1; do auto_row "auto KLD $k" --max-kld $k; done
q4=$(awk '$1 == "Q4_K_M" { print $2 }' "$OUT/mixes.txt")
[ -n "$q4" ] && auto_row "auto --target-size $q4 (Q4_K_M)" --target-size $q4 --max-ppl-increase 100

cat "$RES"
echo
# every budget against the smallest passing mix
python3 - "$OUT/mixes.txt" "$OUT/auto.txt" <<'PY'
import sys
mixes = [l.split() for l in open(sys.argv[1]) if l.strip()]
autos = [l.rsplit(None, 5) for l in open(sys.argv[2]) if l.strip()]
ok = True
for name, b, ppl, inc, kld, secs in autos:
    b, inc, kld = int(b), float(inc), float(kld)
    if 'PPL' in name:
        lim = float(name.split('+')[1].split('%')[0]); passing = [m for m in mixes if float(m[3]) <= lim]
    elif 'KLD' in name:
        lim = float(name.split()[-1]); passing = [m for m in mixes if float(m[4]) <= lim]
    else:
        q4 = [m for m in mixes if m[0] == 'Q4_K_M'][0]
        win = float(ppl) < float(q4[2]); ok &= win
        print("%s: PPL %s vs Q4_K_M's %s: %s (%s s)" % (name, ppl, q4[2], "auto wins" if win else "AUTO LOSES", secs))
        continue
    best = min(passing, key=lambda m: int(m[1])) if passing else None
    win = best is None or b < int(best[1]); ok &= win
    print("%s: %d bytes; smallest passing mix %s: %s -> %s (%s s)" % (name, b, best[0] if best else "none",
          best[1] if best else "-", "auto wins" if win else "AUTO LOSES", secs))
sys.exit(0 if ok else 1)
PY
rc=$?
fi

# The 1.1B synthetic model (bench/run.sh's bench/out/1b, bf16 HF, made there once), as f16
# GGUF: --type auto with a 4-chunk gate (ctx 512) against pare quantize --type Q4_K_M plus
# two evaluations of the same gate (the reference and the result); the issue's bounds: at
# most 5x their time, peak memory at most the evaluator's own peak + 300 MB.
if [ "${BENCH_AUTO_1B:-}" = 1 ] || [ "${BENCH_AUTO_1B:-}" = only ]; then
    B1=${BENCH_OUT:-bench/out}/1b
    [ -f "$B1/.complete" ] || { echo "bench/auto.sh: $B1 missing (BENCH_ONLY=convert-f16 make bench makes it)"; exit 1; }
    F16=$OUT/1b-f16.gguf
    [ -f "$F16" ] || $PARE convert "$B1" "$F16" --type f16 --force >/dev/null 2>&1 || { echo "convert 1b failed"; exit 1; }
    TXT=tests/fixtures/eval.txt
    G="--text $TXT --ctx 512 --chunks 4"
    timed() { # LABEL CMD...: prints "seconds peak_MB cpu_seconds"
        label=$1; shift
        /usr/bin/time -v -o "$OUT/time-$label.txt" "$@" >"$OUT/1b-$label.log" 2>&1 || { echo "$label failed (see $OUT/1b-$label.log)"; exit 1; }
        awk -F': ' '/Elapsed/ { n = split($2, a, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + a[i] }
                    /User time|System time/ { c += $2 }
                    /Maximum resident/ { r = $2 / 1024 } END { printf "%.1f %.0f %.1f\n", s, r, c }' "$OUT/time-$label.txt"
    }
    q=$(timed quantize $PARE quantize "$F16" "$OUT/1b-q4km.gguf" --type Q4_K_M --force)
    e1=$(timed eval-ref $PARE eval "$F16" $G)
    e2=$(timed eval-q4km $PARE eval "$OUT/1b-q4km.gguf" $G --kld-base "$F16")
    # a KLD budget near Q4_K_M's (0.084 here): the synthetic model's weights are random, its
    # perplexity is near the vocabulary's size and moves either way under quantization, so a
    # PPL budget is met by every plan and the search would only walk to the smallest one
    a=$(timed auto $PARE shrink "$F16" "$OUT/1b-auto.gguf" --type auto --calib "$CAL" $G --max-kld 0.1 --no-cache --force -q)
    rm -f "$OUT/1b-q4km.gguf" "$OUT/1b-auto.gguf"
    echo
    echo "1.1B synthetic, f16 GGUF, gate 4 chunks of 512 (wall seconds, peak MB, CPU seconds):"
    echo "  quantize Q4_K_M $q; eval reference $e1; eval Q4_K_M with KLD $e2; shrink --type auto $a"
    python3 - "$q" "$e1" "$e2" "$a" <<'PY'
import sys
(qs, qm, qc), (e1s, e1m, e1c), (e2s, e2m, e2c), (as_, am, ac) = [tuple(map(float, x.split())) for x in sys.argv[1:5]]
base, basec = qs + e1s + e2s, qc + e1c + e2c
print("  auto / (quantize + 2 evals): wall %.2f, CPU %.2f (bound 5); auto peak %.0f MB vs the reference's"
      " evaluation %.0f MB + 300 and the gate's (with KLD) %.0f MB + 300" % (as_ / base, ac / basec, am, e1m, e2m))
sys.exit(0 if as_ <= 5 * base and am <= max(e1m, e2m) + 300 else 1)
PY
    rc=$((rc | $?))
fi
exit $rc
