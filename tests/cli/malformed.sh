# Malformed files of every format, each breaking one rule of docs/readers.md, made from real
# files by tests/fixtures/make_malformed.py: each gives exit status 2 and one line of error
# naming the file and the rule, with no crash or sanitizer report and nothing written.
# A few files that only look dangerous (auto_map, a chat template with Jinja code) must load.
. tests/clilib.sh
command -v python3 >/dev/null 2>&1 || fail "python3 missing (make deps installs it)"
M=$T/malformed
mkdir -p $T/out
# The base GGUF: the committed tiny-llama fixture converted by pare (a real model with a vocabulary).
$PARE convert tests/fixtures/tiny-llama $T/base.gguf >/dev/null 2>$T/err || { cat $T/err; fail "convert failed"; }
python3 tests/fixtures/make_malformed.py $M $T/base.gguf >$T/gen 2>&1 || { cat $T/gen; fail "make_malformed.py failed"; }
n=0; bad=0
tab=$(printf '\t')
while IFS="$tab" read -r name kind input rule; do
    n=$((n + 1))
    case $kind in
        inspect|accept) $PARE inspect "$input" >/dev/null 2>$T/err; rc=$?;;
        lora) $PARE merge-lora tests/fixtures/tiny-llama "$input" $T/out/merged.gguf -q >/dev/null 2>$T/err; rc=$?;;
        imatrix) $PARE quantize $T/base.gguf $T/out/q.gguf --type q4_0 --imatrix "$input" >/dev/null 2>$T/err
                 rc=$?;;
        *) fail "$name: unknown kind $kind";;
    esac
    if [ "$kind" = accept ]; then
        [ $rc -eq 0 ] || { echo "$name: exit $rc, expected 0: $(head -c 300 $T/err)"; bad=$((bad + 1)); }
        continue
    fi
    msg=$(head -c 600 $T/err)
    # The file named: every input's path holds the case's name (the file, or the folder of
    # an HF model, an index or a split model, whose messages name the file inside).
    base=$name
    if [ $rc -ne 2 ]; then
        echo "$name: exit $rc, expected 2: $msg"; bad=$((bad + 1))
    elif [ "$(wc -l <$T/err)" -ne 1 ]; then
        echo "$name: $(wc -l <$T/err) lines of error, expected 1: $msg"; bad=$((bad + 1))
    elif ! grep -qF -- "$base" $T/err; then
        echo "$name: the error does not name a file of the case: $msg"; bad=$((bad + 1))
    elif ! grep -qF -- "$rule" $T/err; then
        echo "$name: the error does not say '$rule': $msg"; bad=$((bad + 1))
    fi
    [ -z "$(ls -A $T/out)" ] || { echo "$name: left $(ls -A $T/out)"; bad=$((bad + 1)); rm -rf $T/out/*; }
done <$M/cases.tsv
[ ! -e /tmp/pare-pwned ] || fail "a file's code was run (/tmp/pare-pwned exists)"
[ $bad -eq 0 ] || fail "$bad of $n malformed inputs misbehaved"
[ $n -ge 150 ] || fail "only $n malformed inputs"
echo "$n malformed inputs: every one refused with exit 2 and one line naming the file and the rule"
