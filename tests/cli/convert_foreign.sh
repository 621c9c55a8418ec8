# A GGUF of an architecture pare does not model (a vision projector, a made-up family) is a
# container of tensors: convert to safetensors keeps its GGUF names and puts its metadata in
# __metadata__; an HF folder is refused with a message that says what works.
. tests/clilib.sh
command -v python3 >/dev/null 2>&1 || fail "python3 missing (make deps installs it)"
for arch in clip mystery-net; do
    python3 tests/fixtures/make_foreign_gguf.py $T/$arch.gguf $arch || fail "make_foreign_gguf.py failed"
    expect_exit 0 $PARE inspect $T/$arch.gguf
    expect_exit 0 $PARE convert $T/$arch.gguf $T/$arch.safetensors
    expect_exit 0 $PARE diff $T/$arch.gguf $T/$arch.safetensors --tensors-only
    expect_exit 0 $PARE inspect $T/$arch.safetensors
    for want in v.patch_embd.weight v.blk.0.attn_q.weight mm.0.bias '"pt"' "\"$arch\"" '"true"' '"224"' \
        '[0.5,0.25,0.125]' '["cat","dog"]'; do
        grep -qF -- "$want" $T/stdout || { cat $T/stdout; fail "$arch: $want missing from the safetensors file"; }
    done
    # f16 stays f16, values equal
    grep -E 'v.blk.0.attn_q.weight +f16' $T/stdout >/dev/null || fail "$arch: the f16 tensor changed type"
    expect_exit 0 $PARE diff $T/$arch.gguf $T/$arch.safetensors --tensors-only --values
    expect_exit 2 $PARE convert $T/$arch.gguf $T/$arch-hf
    grep -q "safetensors" $T/stderr || fail "$arch: the folder refusal should point at safetensors"
done
echo ok
