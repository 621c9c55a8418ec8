# An input cut short while pare reads it gives an error, never a crash (docs/readers.md,
# "Files that change under pare").
# 1. Deterministic: tests/faults/inject.c truncates the input at its 2nd / 5th read (a pread,
#    or the release of a mapped tensor's pages), in the release binary: pare hash (reads
#    through the mapping: SIGBUS, caught), quantize and convert (read with pread: a short
#    read). Each gives exit 2, one line naming the input, and nothing in the output folder.
# 2. Racing a real truncate(1) against the sanitized binary at several moments: exit 0 (done
#    before the cut) or 2 with one line, never a signal or a sanitizer report.
. tests/clilib.sh
[ -n "${FAULTLIB:-}" ] && [ -f "$FAULTLIB" ] || fail "FAULTLIB (the fault injector) not built: run through make test"
P=${PARE_RELEASE:-build/pare}
[ -x "$P" ] || fail "$P not built"
expect_exit 0 $P convert tests/fixtures/tiny-llama $T/base.gguf
D=$T/out; mkdir -p $D
n=0
for at in 2 5; do
    for cmd in "hash IN" "quantize IN $D/q.gguf --type q8_0" "quantize IN $D/q.gguf --type q4_K_M" \
               "convert IN $D/x.safetensors" "convert IN $D/x.gguf" "eval IN --text tests/fixtures/eval.txt --ctx 64"; do
        n=$((n + 1))
        cp $T/base.gguf $T/in.gguf
        # shellcheck disable=SC2086
        env LD_PRELOAD="$FAULTLIB" PARE_FAULT_TRUNCATE="$at:4096:$T/in.gguf" $P $(echo "$cmd" | sed "s|IN|$T/in.gguf|") \
            >/dev/null 2>$T/err
        rc=$?
        [ "$(stat -c %s $T/in.gguf)" -eq 4096 ] || fail "'$cmd' (cut at read $at): the injector did not cut the file"
        [ $rc -eq 2 ] || { cat $T/err; fail "'$cmd' (cut at read $at): exit $rc, expected 2"; }
        # (eval says what it evaluates on stderr first: count the error lines)
        [ "$(grep -c '^pare: ' $T/err)" -eq 1 ] || { cat $T/err; fail "'$cmd': not one line of error"; }
        grep -q "in.gguf: .*\(shorter\|cut short\|past the end\)" $T/err || { cat $T/err; fail "'$cmd': message"; }
        [ -z "$(ls -A $D)" ] || fail "'$cmd' (cut at read $at) left $(ls -A $D)"
    done
done
echo "$n runs with the input cut short under them: exit 2, one line, nothing written"
# The race: a 32 MB model, cut to 1 MB at several moments of a hash and a quantization.
python3 - "$T/big.gguf" <<'PY' || fail "could not write big.gguf"
import struct, sys
n, ne = 8, 1 << 20
out = bytearray(b"GGUF") + struct.pack("<IQQ", 3, n, 1)
k = b"general.architecture"
out += struct.pack("<Q", len(k)) + k + struct.pack("<IQ", 8, 4) + b"test"
for i in range(n):
    nm = b"t%d" % i
    out += struct.pack("<Q", len(nm)) + nm + struct.pack("<IQIQ", 1, ne, 0, i * ne * 4)
out += b"\0" * ((-len(out)) % 32)
open(sys.argv[1], "wb").write(bytes(out) + b"\1\0\0\0" * (n * ne))
PY
cut=0
for d in 0.02 0.05 0.1 0.2 0.4 0.8; do
    for cmd in "hash IN" "quantize IN $D/q.gguf --type q8_0"; do
        cp $T/big.gguf $T/in.gguf
        # shellcheck disable=SC2086
        $PARE $(echo "$cmd" | sed "s|IN|$T/in.gguf|") >/dev/null 2>$T/err &
        pid=$!
        sleep $d
        truncate -s 1000000 $T/in.gguf
        wait $pid
        rc=$?
        case $rc in
            0) rm -f $D/q.gguf;;
            2) cut=$((cut + 1))
               [ "$(wc -l <$T/err)" -eq 1 ] || { cat $T/err; fail "'$cmd' cut after ${d}s: not one line"; }
               grep -q "in.gguf" $T/err || { cat $T/err; fail "'$cmd' cut after ${d}s: no file named"; };;
            *) cat $T/err; fail "'$cmd' cut after ${d}s: exit $rc (a crash?)";;
        esac
        [ -z "$(ls -A $D)" ] || fail "'$cmd' cut after ${d}s left $(ls -A $D)"
    done
done
echo "12 races with truncate(1): $cut ended in an error, the others had finished; no crash"
