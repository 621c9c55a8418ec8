# pare convert of the ten architectures in ../shared/models/arch (gemma, gemma2, phi3,
# Mixtral, qwen2moe, starcoder2, olmo2, gptneox, command-r, phi2) gives llama.cpp's f32 GGUF
# byte for byte, GGUF -> HF folder -> GGUF keeps every byte, pare quantize gives llama-quantize's
# Q8_0 and Q4_K_M files and pare tokenize llama.cpp's tokens of GPL-3.
. tests/clilib.sh
need_shared models/arch/README.md
A=$SHARED/models/arch
IGN="--ignore-meta general.name --ignore-meta general.size_label"
for n in gemma gemma2 phi3 mixtral qwen2moe starcoder2 olmo2 gptneox command-r phi2; do
    REF=$A/$n/$n-f32.gguf
    expect_exit 0 $PARE convert $A/$n/hf $T/$n.gguf --type f32
    expect_exit 0 $PARE diff $T/$n.gguf $REF $IGN
    cmp -s $T/$n.gguf $REF || fail "$n: HF -> GGUF differs from llama.cpp's bytes"
    # back to a folder of that family and to GGUF again
    expect_exit 0 $PARE convert $REF $T/$n-hf
    for f in config.json model.safetensors tokenizer_config.json; do
        [ -f $T/$n-hf/$f ] || fail "$n: the HF folder has no $f"
    done
    expect_exit 0 $PARE convert $T/$n-hf $T/$n-rt.gguf
    expect_exit 0 $PARE diff $T/$n-rt.gguf $REF $IGN
    cmp -s $T/$n-rt.gguf $REF || fail "$n: GGUF -> HF -> GGUF changed bytes"
    # llama-quantize's files byte for byte
    for q in Q8_0 Q4_K_M; do
        expect_exit 0 $PARE quantize $REF $T/$n-$q.gguf --type $q
        cmp -s $T/$n-$q.gguf $A/$n/$n-$q.gguf || fail "$n: $q differs from llama-quantize's file"
        rm -f $T/$n-$q.gguf
    done
    # llama.cpp's tokens of GPL-3
    $PARE tokenize $REF --text $SHARED/data/gpl-3.txt --ids 2>/dev/null | tr -d '[] ' | tr ',' '\n' >$T/$n.tok
    cmp -s $T/$n.tok $A/$n/tokens-gpl3.txt || fail "$n: tokens differ from llama.cpp's"
done
echo "ten families: HF -> GGUF, GGUF -> HF -> GGUF, Q8_0 and Q4_K_M, tokens: llama.cpp's bytes"
# the folders name the family's class and keep HF tensor names
grep -q '"MixtralForCausalLM"' $T/mixtral-hf/config.json || fail "mixtral: config.json class"
grep -q '"Gemma2ForCausalLM"' $T/gemma2-hf/config.json || fail "gemma2: config.json class"
expect_exit 0 $PARE inspect $T/qwen2moe-hf/model.safetensors
grep -q 'model.layers.1.mlp.experts.3.up_proj.weight' $T/stdout || fail "qwen2moe: experts not split back"
grep -q 'model.layers.1.mlp.shared_expert_gate.weight' $T/stdout || fail "qwen2moe: shared expert gate"
expect_exit 0 $PARE inspect $T/gptneox-hf/model.safetensors
grep -q 'gpt_neox.layers.0.attention.query_key_value.weight' $T/stdout || fail "gptneox: HF names"
# f16 output: expert routers stay f32 as the converter keeps them
expect_exit 0 $PARE convert $A/mixtral/hf $T/mixtral-f16.gguf --type f16
expect_exit 0 $PARE inspect $T/mixtral-f16.gguf
grep -E 'blk.0.ffn_gate_inp.weight +f32' $T/stdout >/dev/null || fail "ffn_gate_inp must stay f32"
grep -E 'blk.0.ffn_up_exps.weight +f16' $T/stdout >/dev/null || fail "experts should be f16"
echo ok
