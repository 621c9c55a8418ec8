# Every malformed file of the module tests' corpora gets a one-line error naming the file,
# exit status 2, no crash under the sanitizers, and no output left behind.
. tests/clilib.sh
mkdir -p $T/corpus $T/out
n=0
for t in test_gguf test_safetensors test_pytorch test_hf; do
    bin=build/san/tests/$t
    [ -x $bin ] || fail "$bin missing"
    mkdir -p $T/corpus/$t
    $bin --write-corpus $T/corpus/$t >/dev/null 2>&1 || fail "$bin --write-corpus failed"
done
for f in $T/corpus/*/*; do
    n=$((n + 1))
    $PARE inspect "$f" >/dev/null 2>$T/err; rc=$?
    [ $rc -eq 2 ] || { cat $T/err; fail "inspect $f: exit $rc, expected 2"; }
    [ "$(wc -l < $T/err)" -eq 1 ] || { cat $T/err; fail "inspect $f: error is not one line"; }
    base=$(basename "$f")
    grep -qF "$base" $T/err || { cat $T/err; fail "inspect $f: the error does not name the file"; }
    $PARE convert "$f" $T/out/x.gguf >/dev/null 2>$T/err; rc=$?
    [ $rc -eq 2 ] || { cat $T/err; fail "convert $f: exit $rc, expected 2"; }
    [ -z "$(ls -A $T/out)" ] || fail "convert $f left $(ls -A $T/out)"
done
[ $n -ge 30 ] || fail "only $n malformed inputs"
echo "$n malformed inputs refused"
