# pare run RECIPE.json refuses a bad recipe before any work: every case below exits 1 with a
# one-line message naming the key at fault, and leaves nothing (no output, no debris).
. tests/clilib.sh
F=$PWD/tests/fixtures
export XDG_CACHE_HOME=$T/cache
mkdir -p $T/r
ln -s $F/tiny-llama $T/r/model
ln -s $F/eval.txt $T/r/eval.txt
BASE='"input": "model", "output": "out.gguf", "text": "eval.txt", "ctx": 64'
n=0
# bad KEY 'JSON': the recipe {BASE, JSON} (or JSON alone when it starts with '!') fails naming KEY
bad() {
    key=$1 body=$2
    case "$body" in
    !*) printf '%s\n' "${body#!}" >$T/r/recipe.json ;;
    *) printf '{%s, %s}\n' "$BASE" "$body" >$T/r/recipe.json ;;
    esac
    expect_exit 1 $PARE run $T/r/recipe.json
    grep -q -- "$key" $T/stderr || fail "recipe $(cat $T/r/recipe.json): message does not name '$key': $(cat $T/stderr)"
    [ "$(wc -l <$T/stderr)" -le 2 ] || fail "more than a line: $(cat $T/stderr)"
    [ ! -e $T/r/out.gguf ] && [ "$(ls -a $T/r | grep -c pare-)" -eq 0 ] || fail "$body left files: $(ls -a $T/r)"
    n=$((n + 1))
}
bad colour '"type": "Q8_0", "colour": "blue"'                      # unknown key
bad ctx '"type": "Q8_0", "ctx": "64"'                              # a string for an integer (and given twice)
bad chunks '"type": "Q8_0", "chunks": 2.5'                         # not an integer
bad chunks '"type": "Q8_0", "chunks": "all"'                       # a string for an integer
bad max-ppl-increase '"type": "Q8_0", "max-ppl-increase": "3"'     # a string for a number
bad max-kld '"type": "Q8_0", "max-kld": -1'                        # out of range
bad type '"type": 4'                                               # a number for a string
bad type '"type": "Q9_9"'                                          # an unknown type
bad lora '"type": "Q8_0", "lora": "adapter"'                       # a string for an array
bad lora '"type": "Q8_0", "lora": [1]'                             # not a string in the array
bad lora '"type": "Q8_0", "lora": ["missing-adapter"]'             # a relative path that is not there
bad force '"type": "Q8_0", "force": "yes"'                         # a string for a flag
bad input '!{"output": "out.gguf", "text": "eval.txt", "type": "Q8_0"}'              # input missing
bad input '!{"input": "nomodel", "output": "out.gguf", "text": "eval.txt", "type": "Q8_0"}' # not there
bad input '!{"input": 3, "output": "out.gguf", "text": "eval.txt", "type": "Q8_0"}'  # not a string
bad output '!{"input": "model", "text": "eval.txt", "type": "Q8_0"}'                 # output missing
bad output '!{"input": "model", "output": "out.safetensors", "text": "eval.txt", "type": "Q8_0"}'
bad text '!{"input": "model", "output": "out.gguf", "type": "Q8_0"}'                 # no gate text
bad text '!{"input": "model", "output": "out.gguf", "text": "../eval.txt", "type": "Q8_0"}' # relative to the recipe
bad calib '"type": "Q8_0", "calib": "nocalib.txt"'                 # a missing calibration text
bad pattern '"type": "Q8_0", "sparsity": 0.5, "pattern": "2:4"'    # conflicting options
bad target-size '"type": "Q8_0", "target-size": "1M"'              # needs type auto
bad target-size '"type": "auto", "target-size": "twelve"'          # not a size
bad tensor-type '"type": "auto", "tensor-type": ["*=q8_0"]'         # auto chooses the types
bad calib '"type": "Q8_0", "sparsity": 0.5, "method": "wanda"'     # wanda needs calib
bad method '"type": "Q8_0", "sparsity": 0.5, "method": "random"'   # not a choice
bad print-recipe '"type": "Q8_0", "print-recipe": true'            # a command-line flag only
bad scope '"type": "Q8_0", "scope": {"a": 1}'                      # an object
bad type '"type": "Q8_0", "type": "Q4_0"'                          # given twice
bad "nothing to do" '!{"input": "model", "output": "out.gguf", "text": "eval.txt"}'
bad 'not valid JSON' '!{"input": "model",'
bad 'JSON object' '!["input", "model"]'
[ $n -ge 15 ] || fail "only $n cases"
echo "$n recipe errors refused"
