# merge-lora, prune, imatrix and shrink on every architecture: the ten of ../shared/models/arch
# (gemma, gemma2, phi3, mixtral, qwen2moe, starcoder2, olmo2, gptneox, command-r, phi2) and
# tests/fixtures/tiny-llama. Per family:
# - merge-lora of a PEFT adapter on every attention and MLP projection (a random one from
#   tests/fixtures/make_peft_lora.py; for Mixtral and Qwen2-MoE the committed
#   tests/fixtures/moe-lora adapters, experts and shared expert included) into the HF folder
#   (-> .safetensors) and into the f32 GGUF (-> .gguf, read back through pare convert to an
#   HF folder): every merged tensor within 1e-6 of the float64 W + alpha/r B A (relative to
#   the tensor's largest value), every other tensor unchanged;
# - prune --sparsity 0.5 (row) and --pattern 2:4 of the f32 GGUF: 50.0000% printed, the
#   zeros counted again in numpy on the HF folder of the result, pare eval reads it;
# - extract-lora of the merge's difference at rank 4 gives the merge back (1e-6);
# - imatrix (--ctx 128 --chunks 2): an entry for every attention/MLP matrix, experts included;
# - shrink --type Q8_0 (--ctx 128 --chunks 4): passes its gate and writes a Q8_0 file.
# Mixtral and Qwen2-MoE also get 2:4 on their 3-D expert tensors by --include.
. tests/clilib.sh
need_shared models/arch/README.md
need_shared data/gpl-3.txt
need_numpy
FAST=${PARE_RELEASE:-build/pare}
A=$SHARED/models/arch
TXT=$SHARED/data/gpl-3.txt
F=tests/fixtures
export XDG_CACHE_HOME=$T/cache
# runs a checker, its output kept in $T/check (shown on failure)
check() { # WHAT CMD...
    what=$1; shift
    "$@" >$T/check 2>&1 || { cat $T/check; fail "$what"; }
}
# the relative error figure of make_peft_lora.py --compare's line
relerr() { sed -n 's/.*max relative error \([0-9.e+-]*\).*/\1/p' $T/check; }
# pare eval of FILE reads it and gives a finite perplexity
evals() {
    $FAST eval $1 --text $TXT --ctx 128 --chunks 1 --threads 2 >$T/ev 2>&1 || { cat $T/ev; fail "eval $1"; }
    grep -Eq '^Final estimate: PPL = [0-9]' $T/ev || { cat $T/ev; fail "eval $1: no finite PPL"; }
}
expect_exit 0 $PARE convert $F/tiny-llama $T/llama-f32.gguf --type f32
worst=0
for n in llama gemma gemma2 phi3 mixtral qwen2moe starcoder2 olmo2 gptneox command-r phi2; do
    if [ $n = llama ]; then H=$F/tiny-llama G=$T/llama-f32.gguf; else H=$A/$n/hf G=$A/$n/$n-f32.gguf; fi
    R=$T/$n-lora
    case $n in
        mixtral | qwen2moe) AD=$F/moe-lora/$n; check "$n: reference" $PY $F/make_peft_lora.py $H $R --adapter $AD ;;
        *) AD=$R; check "$n: adapter" $PY $F/make_peft_lora.py $H $R ;;
    esac
    # merge-lora into the HF folder and into the f32 GGUF
    expect_exit 0 $PARE merge-lora $H $AD $T/m.safetensors -q --threads 2
    check "$n: HF merge" $PY $F/make_peft_lora.py --compare $R/reference.npz $T/m.safetensors $H
    e_hf=$(relerr)
    expect_exit 0 $PARE merge-lora $G $AD $T/m.gguf -q --threads 2
    expect_exit 0 $PARE convert $T/m.gguf $T/m-hf
    expect_exit 0 $PARE convert $G $T/base-hf # the unmerged tensors as GGUF -> HF gives them
    check "$n: GGUF merge" $PY $F/make_peft_lora.py --compare $R/reference.npz $T/m-hf/model.safetensors \
        $T/base-hf/model.safetensors
    e_gg=$(relerr)
    worst=$(awk -v a="$worst" -v b="$e_hf" -v c="$e_gg" 'BEGIN { m = a; if (b > m) m = b; if (c > m) m = c; print m }')
    # extract-lora of (merged - base) at the adapter's rank 4, merged again into the HF folder:
    # the same weights
    rm -rf $T/ex
    expect_exit 0 $PARE extract-lora $G $T/m.gguf $T/ex --rank 4 --threads 2
    expect_exit 0 $PARE merge-lora $H $T/ex $T/mx.safetensors -q --threads 2 --force
    check "$n: extract-lora round trip" $PY $F/make_peft_lora.py --compare $R/reference.npz $T/mx.safetensors $H
    ex="extract-lora $(relerr)"
    # prune: row scope and 2:4 on the attention and MLP projections (experts included)
    for how in "row 0.5" "nm 2 4"; do
        case $how in row*) opt="--sparsity 0.5" ;; *) opt="--pattern 2:4" ;; esac
        expect_exit 0 $PARE prune $G $T/p.gguf $opt --threads 2 --force
        grep -q "(50.0000%) in [0-9]* tensors" $T/stdout || { cat $T/stdout; fail "$n: prune $opt: sparsity"; }
        case $n in mixtral | qwen2moe)
            grep -q '_exps.weight' $T/stdout || fail "$n: prune $opt left the experts out" ;;
        esac
        rm -rf $T/p-hf
        expect_exit 0 $PARE convert $T/p.gguf $T/p-hf
        check "$n: prune $opt" $PY $F/check_arch.py sparsity $T/p-hf $how
        evals $T/p.gguf
    done
    # imatrix over every attention/MLP matrix
    expect_exit 0 $FAST imatrix $G --text $TXT $T/im.dat --ctx 128 --chunks 2 --threads 2 --force
    $PARE inspect $G >$T/inspect || fail "$n: inspect"
    check "$n: imatrix" $PY $F/check_arch.py imatrix $T/im.dat $T/inspect
    im=$(head -n 1 $T/check)
    # shrink to Q8_0 through its quality gate
    expect_exit 0 $FAST shrink $G $T/s.gguf --type Q8_0 --text $TXT --ctx 128 --chunks 4 --threads 2 -q --force
    [ -s $T/s.gguf ] || fail "$n: shrink wrote nothing"
    $FAST inspect $T/s.gguf | grep -Eq 'blk\.0\.(attn_q|attn_qkv)\.weight +q8_0' || fail "$n: shrink output is not Q8_0"
    ppl=$(sed -n 's/.*, \(PPL [0-9.]* ([^)]*)\).*/\1/p' $T/stdout)
    echo "$n: merge max rel. error HF $e_hf, GGUF $e_gg; $ex; prune row + 2:4; imatrix $im; shrink Q8_0 $ppl"
    rm -rf $T/m.safetensors $T/m.gguf $T/m-hf $T/base-hf $T/p.gguf $T/p-hf $T/s.gguf $R $T/ex $T/mx.safetensors
done
awk -v w="$worst" 'BEGIN { exit !(w <= 1e-6) }' || fail "largest merge error $worst"
echo "largest merge error $worst (relative to each tensor's largest value)"
# MoE: 2:4 on the 3-D expert tensors asked for by name
for n in mixtral qwen2moe; do
    G=$A/$n/$n-f32.gguf
    expect_exit 0 $PARE prune $G $T/pe.gguf --pattern 2:4 --threads 2 --force \
        --include 'blk.*.ffn_*_exps.weight' --include 'blk.*.ffn_gate_shexp.weight' \
        --include 'blk.*.ffn_up_shexp.weight' --include 'blk.*.ffn_down_shexp.weight'
    grep -q '(50.0000%) in' $T/stdout || fail "$n: expert 2:4 sparsity"
    [ "$(grep '_exps.weight' $T/stdout | grep -c '50.00% zero')" = 6 ] || fail "$n: 2:4 on the experts"
    rm -rf $T/pe-hf
    expect_exit 0 $PARE convert $T/pe.gguf $T/pe-hf
    check "$n: expert 2:4" $PY $F/check_arch.py sparsity $T/pe-hf nm 2 4
    echo "$n experts 2:4: $(head -n 1 $T/check)"
    evals $T/pe.gguf
done
echo ok
