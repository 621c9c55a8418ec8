# pare quantize on the committed fixture: every single type and mix, dry runs, statistics.
. tests/clilib.sh
F=tests/fixtures/tiny-llama
expect_exit 0 $PARE convert $F $T/f32.gguf
for t in F16 BF16 Q8_0 Q4_0 Q4_1 Q5_0 Q5_1 Q6_K IQ4_NL TQ2_0 TQ1_0 Q4_K_M Q5_K_S Q3_K_L Q2_K_S; do
    expect_exit 0 $PARE quantize $T/f32.gguf $T/$t.gguf --type $t --stats
    expect_exit 0 $PARE inspect $T/$t.gguf
    expect_exit 0 $PARE diff $T/$t.gguf $T/f32.gguf --values --tolerance 2.0 --tensors-only
done
expect_exit 0 $PARE quantize $T/f32.gguf --type Q4_K_M --dry-run
grep -q "bits per weight" $T/stdout || fail "dry run prints no summary"
# rows of 64 do not fit 256-blocks: every k-quant falls back (to IQ4_NL for Q2_K_S), so
# Q2_K_S needs no imatrix here, as in llama-quantize
expect_exit 0 $PARE quantize $T/f32.gguf $T/o.gguf --type Q4_0 --tensor-type 'blk.*.ffn_down.weight=q8_0' --output-tensor-type q8_0
expect_exit 0 $PARE inspect --json $T/o.gguf
echo ok
