# pare quantize on the mixture-of-experts references (Mixtral = llama with experts, Qwen2-MoE):
# llama-quantize's files byte for byte. Qwen2-MoE's ffn_gate_inp_shexp is [128, 1] in the
# converter's file and [128] in llama-quantize's (it writes ggml_n_dims dimensions).
. tests/clilib.sh
need_shared models/arch/qwen2moe/qwen2moe-f32.gguf
for a in mixtral qwen2moe; do
    R=$SHARED/models/arch/$a
    for t in Q8_0 Q4_K_M; do
        expect_exit 0 $PARE quantize $R/$a-f32.gguf $T/$a-$t.gguf --type $t --threads 2
        cmp -s $T/$a-$t.gguf $R/$a-$t.gguf || fail "$a $t: not llama-quantize's bytes"
        rm -f $T/$a-$t.gguf
    done
done
# imatrix on the experts (one run of values per expert), then quantizing with it
for a in mixtral qwen2moe; do
    R=$SHARED/models/arch/$a
    expect_exit 0 $PARE imatrix $R/$a-f32.gguf --text $SHARED/data/gpl-3.txt $T/$a.dat --ctx 128 --chunks 8
    for t in IQ4_XS Q4_K_M IQ3_S; do
        expect_exit 0 $PARE quantize $R/$a-f32.gguf $T/$a-$t.gguf --type $t --imatrix $T/$a.dat
        expect_exit 0 $PARE eval $T/$a-$t.gguf --text $SHARED/data/gpl-3.txt --ctx 128 --chunks 4
        rm -f $T/$a-$t.gguf
    done
done
echo ok
