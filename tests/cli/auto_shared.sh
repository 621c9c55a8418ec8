# pare shrink --type auto on ../shared's fortune-llama, gate gpl-3.txt, calibration another
# text: a 3% PPL budget gives a file that passes and is smaller than llama-quantize's Q2_K
# (the smallest of its standard mixes in ../shared, +2.5% on this gate). The release binary:
# the search evaluates the model a dozen times (bench/auto.sh measures every mix and budget).
. tests/clilib.sh
need_shared models/fortune-llama-gguf/fortune-llama-Q2_K.gguf
P=${PARE_RELEASE:-build/pare}
R=$SHARED/models/fortune-llama-gguf
export XDG_CACHE_HOME=$T/cache
jget() { python3 -c "import json,sys
d=json.load(open(sys.argv[1]))
for k in sys.argv[2].split('.'): d=d[k]
print(d)" "$@"; }
expect_exit 0 $P shrink $R/fortune-llama-f32.gguf $T/a.gguf --type auto --calib tests/fixtures/calib.txt \
    --text $SHARED/data/gpl-3.txt --ctx 256 --max-ppl-increase 3 --report $T/a.json
inc=$(jget $T/a.json result.ppl_increase_pct)
awk -v x="$inc" 'BEGIN { exit !(x <= 3) }' || fail "PPL increase $inc% above the 3% budget"
a=$(stat -c %s $T/a.gguf) q2=$(stat -c %s $R/fortune-llama-Q2_K.gguf)
[ "$a" -lt "$q2" ] || fail "auto +3%: $a bytes, not smaller than Q2_K's $q2"
echo "auto +3%: $a bytes (Q2_K $q2), PPL +$inc%, $(jget $T/a.json passes.0.auto.probes | grep -o step | wc -l) probes"
