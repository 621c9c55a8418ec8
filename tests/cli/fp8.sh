# FP8 checkpoints (formats/fp8.h): a DeepSeek-style folder (F8_E4M3 weights with per-block
# weight_scale_inv, three shards, blocks that do not divide the tensors) converts and
# quantizes in one pass to exactly what its f32 values give; so do F8_E5M2 and per-tensor
# scales. The reference folder holds every value as the float64 product rounded to f32
# (tests/fixtures/make_fp8_model.py).
. tests/clilib.sh
need_numpy
SRC=tests/fixtures/tiny-llama
IGN="--ignore-meta general.name --ignore-meta general.size_label"
check() { # NAME ARGS...: a variant of the checkpoint against its reference
    name=$1; shift
    mkdir -p $T/$name
    $PY tests/fixtures/make_fp8_model.py $SRC $T/$name/fp8 $T/$name/ref "$@" >/dev/null || fail "$name: generator"
    grep -qa '"F8_E' $T/$name/fp8/*.safetensors || fail "$name: the checkpoint has no FP8 tensor"
    for ty in f32 bf16 f16; do
        expect_exit 0 $PARE convert $T/$name/fp8 $T/$name/a-$ty.gguf --type $ty
        expect_exit 0 $PARE convert $T/$name/ref $T/$name/b-$ty.gguf --type $ty
        expect_exit 0 $PARE diff $T/$name/a-$ty.gguf $T/$name/b-$ty.gguf $IGN
        grep -q scale $T/stdout && fail "$name: a scale tensor reached the output"
    done
    # straight to a quantized type, and to safetensors
    expect_exit 0 $PARE quantize $T/$name/fp8 $T/$name/a-q4.gguf --type Q4_K_M
    expect_exit 0 $PARE quantize $T/$name/ref $T/$name/b-q4.gguf --type Q4_K_M
    expect_exit 0 $PARE diff $T/$name/a-q4.gguf $T/$name/b-q4.gguf $IGN
    expect_exit 0 $PARE convert $T/$name/fp8 $T/$name/a.safetensors --type bf16
    expect_exit 0 $PARE inspect $T/$name/a.safetensors
    grep -q 'scale' $T/stdout && fail "$name: a scale tensor in the safetensors output"
    grep -q 'F8_E' $T/stdout && fail "$name: an FP8 tensor in the safetensors output"
}
check block128 --shards 3
check block32 --shards 2 --block 32
check e5m2 --e5m2 --block 48
check pertensor --per-tensor
# a scale grid that does not fit its weight is refused, naming the tensor, and nothing is written
mkdir -p $T/bad
$PY tests/fixtures/make_fp8_model.py $SRC $T/bad/fp8 $T/bad/ref --block 32 --shards 1 >/dev/null
$PY - $T/bad/fp8/model-*.safetensors <<'PY' || fail "could not plant a bad scale"
import json, struct, sys
p = sys.argv[1]
b = open(p, 'rb').read()
n = struct.unpack('<Q', b[:8])[0]
h = json.loads(b[8:8 + n])
k = next(k for k in h if k.endswith('_scale_inv') and h[k]['shape'][0] != h[k]['shape'][1])
h[k]['shape'] = h[k]['shape'][::-1]  # the same bytes, a grid that does not fit the weight
nb = json.dumps(h).encode()
nb += b' ' * ((8 - len(nb) % 8) % 8)
open(p, 'wb').write(struct.pack('<Q', len(nb)) + nb + b[8 + n:])
PY
expect_exit 2 $PARE convert $T/bad/fp8 $T/bad/out.gguf --type f32
grep -q 'scale_inv' $T/stderr || { cat $T/stderr; fail "the refusal does not name the scale"; }
[ -e $T/bad/out.gguf ] && fail "a refused conversion left a file"
echo ok
