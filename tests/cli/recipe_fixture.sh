# pare shrink --print-recipe prints a recipe that pare run turns into the same file, byte for
# byte: run in the recipe's folder and from elsewhere (its relative paths are read from the
# recipe's folder); options on pare run's command line win over the recipe's.
. tests/clilib.sh
F=$PWD/tests/fixtures
P=$(cd "$(dirname $PARE)" && pwd)/$(basename $PARE)
export XDG_CACHE_HOME=$T/cache
mkdir -p $T/r
ln -s $F/tiny-llama $T/r/model
ln -s $F/tiny-llama-lora $T/r/adapter
cp $F/eval.txt $F/calib.txt $T/r/
ARGS="model out.gguf --lora adapter:0.5 --type auto --calib calib.txt --text eval.txt --ctx 64 --chunks 16
      --max-ppl-increase 3"
(cd $T/r && $P shrink $ARGS --print-recipe >recipe.json) || fail "--print-recipe failed"
[ ! -e $T/r/out.gguf ] || fail "--print-recipe ran the job"
python3 -c "import json,sys; r=json.load(open(sys.argv[1])); assert r['type'] == 'auto' and r['lora'] == ['adapter:0.5'] and r['ctx'] == 64 and r['max-ppl-increase'] == 3, r" $T/r/recipe.json ||
    fail "recipe: $(cat $T/r/recipe.json)"
(cd $T/r && $P shrink $ARGS -q >/dev/null 2>$T/err) || { cat $T/err; fail "the command line failed"; }
mv $T/r/out.gguf $T/first.gguf
# in the recipe's folder
(cd $T/r && $P run recipe.json -q >/dev/null 2>$T/err) || { cat $T/err; fail "pare run failed in the recipe's folder"; }
cmp -s $T/r/out.gguf $T/first.gguf || fail "pare run (in its folder) wrote other bytes than the command line"
rm $T/r/out.gguf
# from elsewhere: paths from the recipe's folder, and the reference from the cache
expect_exit 0 $PARE run $T/r/recipe.json --report $T/rep.json
cmp -s $T/r/out.gguf $T/first.gguf || fail "pare run (from elsewhere) wrote other bytes than the command line"
python3 -c "import json,sys; r=json.load(open(sys.argv[1])); assert r['reference']['source'] == 'cache', r['reference']" $T/rep.json ||
    fail "the matrix's second job did not use the cached reference"
# the command line wins: --report given to run goes where run says, the recipe's output stays
rm $T/r/out.gguf
expect_exit 1 $PARE run $T/r/recipe.json --type Q8_0
grep -q "type" $T/stderr || fail "an option run does not take: $(cat $T/stderr)"
echo ok
