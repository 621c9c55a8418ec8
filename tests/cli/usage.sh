# Usage errors exit 1; outputs are never partial, existing files need --force, inputs are
# never overwritten.
. tests/clilib.sh
F=tests/fixtures/tiny-llama
expect_exit 1 $PARE
expect_exit 0 $PARE --help
expect_exit 1 $PARE nosuchcommand
for c in inspect convert hash diff; do
    expect_exit 0 $PARE $c --help
    expect_exit 1 $PARE $c --no-such-option
done
expect_exit 1 $PARE convert $F
expect_exit 1 $PARE convert $F $T/a.gguf --type q9_9
expect_exit 0 $PARE convert $F $T/a.gguf
cp $T/a.gguf $T/a.copy
expect_exit 1 $PARE convert $F $T/a.gguf          # exists, no --force
cmp -s $T/a.gguf $T/a.copy || fail "existing output was touched"
expect_exit 1 $PARE convert $T/a.gguf $T/a.gguf --force   # the input itself
cmp -s $T/a.gguf $T/a.copy || fail "input was modified"
expect_exit 0 $PARE convert $F $T/a.gguf --force --type f16
expect_exit 2 $PARE inspect $T/does-not-exist.gguf
# nothing but the outputs asked for is left in the folder
n=$(ls -A $T | grep -c pare- || true)
[ "$n" -eq 0 ] || fail "temporary files left: $(ls -A $T)"
echo ok
