# pare quantize makes llama-quantize's files: same per-tensor types, same bytes, same keys.
. tests/clilib.sh
need_shared models/fortune-llama-gguf/fortune-llama-f32.gguf
R=$SHARED/models/fortune-llama-gguf
for t in Q8_0 Q6_K Q5_K_M Q5_0 Q5_1 Q4_K_M Q4_K_S Q4_0 Q4_1 Q3_K_M Q2_K IQ4_NL IQ4_XS; do
    expect_exit 0 $PARE quantize $R/fortune-llama-f32.gguf $T/$t.gguf --type $t --threads 2
    expect_exit 0 $PARE diff $T/$t.gguf $R/fortune-llama-$t.gguf
    rm -f $T/$t.gguf
done
for t in Q2_K Q4_K_M IQ4_XS; do
    expect_exit 0 $PARE quantize $R/fortune-llama-f32.gguf $T/$t.gguf --type $t --imatrix $R/fortune-llama-imatrix-licenses.dat
    expect_exit 0 $PARE diff $T/$t.gguf $R/fortune-llama-$t-imatrix.gguf --ignore-meta quantize.imatrix.file
done
# the same bytes whatever the thread count
expect_exit 0 $PARE quantize $R/fortune-llama-f32.gguf $T/a.gguf --type Q4_K_M --threads 1
expect_exit 0 $PARE quantize $R/fortune-llama-f32.gguf $T/b.gguf --type Q4_K_M --threads 4
cmp -s $T/a.gguf $T/b.gguf || fail "--threads changes the output"
# from the HF folder directly
expect_exit 0 $PARE quantize $SHARED/models/fortune-llama $T/hf.gguf --type Q4_K_M
expect_exit 0 $PARE diff $T/hf.gguf $R/fortune-llama-Q4_K_M.gguf --tensors-only
# bad requests: an imatrix of another model, a type that needs one, unknown types; nothing left
expect_exit 2 $PARE quantize tests/fixtures/tiny-llama $T/x.gguf --type Q4_K_M --imatrix $R/fortune-llama-imatrix-licenses.dat
expect_exit 1 $PARE quantize $R/fortune-llama-f32.gguf $T/x.gguf --type IQ2_XXS
expect_exit 1 $PARE quantize $R/fortune-llama-f32.gguf $T/x.gguf --type Q9_9
[ ! -e $T/x.gguf ] || fail "output left behind"
echo ok
