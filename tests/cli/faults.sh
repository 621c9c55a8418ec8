# Faults while writing (tests/faults/inject.c, preloaded into the release binary): ENOSPC at
# every write of a quantization in turn, and EDQUOT, EFBIG, EIO; short writes; a failing
# fsync and rename; a folder where no file can be created; an output on another file
# system. Each failure gives exit 2 and one line naming the output and the cause, leaves the
# old OUT byte for byte and nothing new in the folder; short writes give the same file.
. tests/clilib.sh
F=tests/fixtures
[ -n "${FAULTLIB:-}" ] && [ -f "$FAULTLIB" ] || fail "FAULTLIB (the fault injector) not built: run through make test"
P=${PARE_RELEASE:-build/pare}
[ -x "$P" ] || fail "$P not built"
inj() { f=$1; shift; env LD_PRELOAD="$FAULTLIB" PARE_FAULT="$f" "$@"; } # inj FAULT CMD...
expect_exit 0 $P convert $F/tiny-llama $T/base.gguf
D=$T/out; mkdir -p $D
# the reference output and how many writes it takes
expect_exit 0 $P quantize $T/base.gguf $T/ref.gguf --type Q4_K_M
env PARE_FAULT_COUNT=$T/count LD_PRELOAD="$FAULTLIB" $P quantize $T/base.gguf $D/q.gguf --type Q4_K_M >/dev/null 2>&1 || fail "counting run failed"
cmp -s $D/q.gguf $T/ref.gguf || fail "the preloaded library changed the output"
n=$(cat $T/count)
[ "$n" -ge 3 ] || fail "only $n writes counted"
echo "old output" >$D/q.gguf
cp $D/q.gguf $T/old
listing() { ls -A $D | tr '\n' ' '; }
before=$(listing)
# check_fail WHAT PATTERN: the last run failed with exit 2, one line naming q.gguf and PATTERN,
# the old output intact, nothing new in the folder
check_fail() {
    [ "$(wc -l <$T/stderr)" -eq 1 ] || fail "$1: not one line of error: $(cat $T/stderr)"
    grep -q "q.gguf" $T/stderr && grep -q "$2" $T/stderr || fail "$1: message '$(cat $T/stderr)'"
    cmp -s $D/q.gguf $T/old || fail "$1: the old output was changed"
    [ "$(listing)" = "$before" ] || fail "$1: the folder now holds $(listing), before $before"
}
k=1
while [ $k -le $n ]; do
    expect_exit 2 inj write:$k:ENOSPC $P quantize $T/base.gguf $D/q.gguf --type Q4_K_M --force
    check_fail "ENOSPC at write $k of $n" "No space left on device"
    k=$((k + 1))
done
for e in "EDQUOT:Disk quota exceeded" "EFBIG:File too large" "EIO:Input/output error"; do
    for k in 1 $((n / 2)) $n; do
        expect_exit 2 inj write:$k:${e%%:*} $P quantize $T/base.gguf $D/q.gguf --type Q4_K_M --force
        check_fail "${e%%:*} at write $k" "${e#*:}"
    done
done
expect_exit 2 inj fsync:1:EIO $P quantize $T/base.gguf $D/q.gguf --type Q4_K_M --force
check_fail "fsync" "fsync failed"
expect_exit 2 inj rename:1:EIO $P quantize $T/base.gguf $D/q.gguf --type Q4_K_M --force
check_fail "rename" "cannot rename"
expect_exit 2 inj create:all:EROFS $P quantize $T/base.gguf $D/q.gguf --type Q4_K_M --force
check_fail "read-only folder" "Read-only file system"
# short writes everywhere: the same file
expect_exit 0 inj short $P quantize $T/base.gguf $D/short.gguf --type Q4_K_M
cmp -s $D/short.gguf $T/ref.gguf || fail "short writes changed the output"
rm -f $D/short.gguf
# an output on another file system than the input (tmpfs), where it is written in place
if [ -d /dev/shm ] && S=$(mktemp -d /dev/shm/pare-faults-XXXXXX); then
    expect_exit 0 $P quantize $T/base.gguf $S/q.gguf --type Q4_K_M
    cmp -s $S/q.gguf $T/ref.gguf || fail "output on tmpfs differs"
    [ "$(ls -A $S)" = "q.gguf" ] || fail "tmpfs folder holds $(ls -A $S)"
    rm -rf $S
fi
echo "$n writes failed in turn, 9 other errors, fsync, rename, read-only folder: exit 2, old output kept, nothing left"
