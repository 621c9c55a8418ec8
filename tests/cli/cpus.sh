# The portable binary on CPUs it was not built on, emulated by qemu-user: on a Nehalem (no AVX)
# it picks the generic kernels and its f32 perplexity is the float64 reference's (the generic
# level's f32 products are OpenBLAS's, whose kernels and roundings follow the CPU, so its
# digits are not the native run's); on a Haswell (AVX2, FMA, F16C, no AVX-512) it picks the
# avx2 kernels and gives, for a Q4_K_M model, the perplexity PARE_ISA=avx2 gives natively,
# to the last digit.
. tests/clilib.sh
F=tests/fixtures
P=${PARE_RELEASE:-build/pare}
[ -x "$P" ] || fail "$P not built"
Q=$(command -v qemu-x86_64) || {
    [ "${CI:-}" = "true" ] && fail "qemu-x86_64 missing under CI (make deps installs qemu-user)"
    echo "qemu-x86_64 not installed (Debian package qemu-user)"; exit 77; }
case $(uname -m) in x86_64) ;; *) echo "not an x86-64 machine"; exit 77;; esac
expect_exit 0 $P convert $F/tiny-llama $T/m.gguf
expect_exit 0 $P quantize $T/m.gguf $T/q.gguf --type Q4_K_M
ppl() { sed -n 's/^Final estimate: PPL = \([0-9.]*\).*/\1/p' $T/stdout; }
for spec in Nehalem:generic Haswell:avx2; do
    cpu=${spec%%:*} lvl=${spec#*:}
    "$Q" -cpu $cpu $P --version >$T/stdout 2>/dev/null || fail "$cpu: --version failed under qemu"
    grep -q "^kernels: $lvl (cpu $lvl;" $T/stdout || fail "$cpu: $(cat $T/stdout)"
done
ref=$(sed -n 's/.*"ppl_ctx64": \([0-9.]*\).*/\1/p' $F/tiny-llama-reference.json)
"$Q" -cpu Nehalem $P eval $T/m.gguf --text $F/eval.txt --ctx 64 >$T/stdout 2>/dev/null || fail "Nehalem: eval failed"
got=$(ppl)
awk -v g="$got" -v w="$ref" 'BEGIN { d = (g - w) / w; if (d < 0) d = -d; exit !(d <= 0.001) }' ||
    fail "Nehalem: PPL $got, float64 reference $ref"
echo "Nehalem: generic kernels, f32 PPL $got (float64 reference $ref)"
"$Q" -cpu Haswell $P eval $T/q.gguf --text $F/eval.txt --ctx 64 --chunks 4 >$T/stdout 2>/dev/null ||
    fail "Haswell: eval failed under qemu"
emulated=$(ppl)
expect_exit 0 env PARE_ISA=avx2 $P eval $T/q.gguf --text $F/eval.txt --ctx 64 --chunks 4
[ -n "$emulated" ] && [ "$emulated" = "$(ppl)" ] || fail "Haswell: PPL $emulated, natively at avx2 $(ppl)"
echo "Haswell: avx2 kernels, Q4_K_M PPL $emulated as natively"
