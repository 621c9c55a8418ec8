# The option table (cmd/opts.c): every command's options go through one parser, with one
# message per kind of mistake (exit 1), --opt=VALUE as well as --opt VALUE, the same --ctx
# range everywhere, shrink's pruning options as prune's, and a generated docs/options.md
# that matches the table.
. tests/clilib.sh
set -f # globs below are arguments, not file names
F=tests/fixtures
M=$F/tiny-llama
TXT=$F/eval.txt
# usage_error CMD MESSAGE ARGS...: exit 1 with "pare CMD: MESSAGE" as the first line
usage_error() {
    cmd=$1 msg=$2; shift 2
    expect_exit 1 $PARE $cmd "$@"
    line=$(head -n 1 $T/stderr)
    [ "$line" = "pare $cmd: $msg" ] || fail "'$cmd $*': got '$line', expected 'pare $cmd: $msg'"
}

# every command's help comes from the table and lists its options
for c in inspect convert hash quantize eval merge-lora extract-lora prune imatrix diff tokenize shrink; do
    expect_exit 0 $PARE $c --help
    grep -q '^usage: pare '"$c" $T/stdout || fail "$c --help has no usage line"
    usage_error $c "unknown option '--no-such-option'" --no-such-option
done
expect_exit 0 $PARE shrink --help
for o in --scope --include --exclude --calib-tokens --calib-ctx --max-kld --lora; do
    grep -q -- "^  $o " $T/stdout || fail "shrink --help does not list $o"
done

# issue #13: a missing value is named as such, not as an unknown option
usage_error quantize "option '--type' needs a value" $M $T/q.gguf --type
usage_error quantize "option '--type' needs a value" $M $T/q.gguf --type --dry-run
usage_error eval "option '--text' needs a value" $M --text
# a string may start with "--": the next argument is its value
expect_exit 0 $PARE tokenize $M --string --x --ids

# the kinds of values and their messages
usage_error eval "option '--ctx' must be between 4 and 1048576 (got 3)" $M --text $TXT --ctx 3
usage_error eval "option '--ctx' takes an integer (got '64k')" $M --text $TXT --ctx 64k
usage_error convert "option '--threads' must be between 1 and 256 (got 0)" $M $T/a.gguf --threads 0
usage_error prune "option '--sparsity' must be between 0 and 1 (got 1.5)" $M $T/a.gguf --sparsity 1.5
usage_error prune "option '--pattern' takes N:M with 1 <= N < M <= 256 (got '4:2')" $M $T/a.gguf --pattern 4:2
usage_error prune "option '--scope' must be one of row, tensor, global (got 'diagonal')" $M $T/a.gguf --sparsity 0.5 --scope diagonal
usage_error convert "option '--type': unknown type 'q9_9' (f32, f16, bf16, q8_0, q4_K, ...)" $M $T/a.gguf --type q9_9
usage_error quantize "option '--tensor-type' takes GLOB=TYPE (got 'q8_0')" $M $T/a.gguf --type Q8_0 --tensor-type q8_0
usage_error diff "option '--tolerance' must be at least 0 (got -1)" $M $M --values --tolerance -1
usage_error eval "option '--chunk-range' takes A:B with 0 <= A < B (got '3:3')" $M --text $TXT --chunk-range 3:3
# a repeated option is a mistake, a repeatable one is not
usage_error convert "option '--threads' given twice" $M $T/a.gguf --threads 2 --threads 4
usage_error convert "option '--force' takes no value (got 'yes')" $M $T/a.gguf --force=yes
usage_error hash "too many arguments (one MODEL)" $M $M
usage_error convert "need IN and OUT" $M
[ ! -e $T/a.gguf ] || fail "a usage error wrote its output"

# --opt=VALUE is --opt VALUE; "--" ends the options
expect_exit 0 $PARE hash $M --threads=2
cp $T/stdout $T/h1
expect_exit 0 $PARE hash --threads 2 -- $M
cmp -s $T/stdout $T/h1 || fail "--threads=2 and --threads 2 hash differently"
expect_exit 0 $PARE tokenize $M --string=hello --ids
cp $T/stdout $T/t1
expect_exit 0 $PARE tokenize $M --string hello --ids
cmp -s $T/stdout $T/t1 || fail "--string=hello and --string hello differ"

# a flag's value as a recipe gives it (through the same cmd_opts_set): true / false
expect_exit 0 $PARE convert $M $T/f.gguf
expect_exit 1 $PARE convert $M $T/f.gguf --force=false
grep -q "already exists" $T/stderr || fail "--force=false replaced the output: $(cat $T/stderr)"
expect_exit 0 $PARE convert $M $T/f.gguf --force=true

# issue #13: eval --merge takes options anywhere among the parts
expect_exit 0 $PARE eval $M --text $TXT --ctx 64 --chunk-range 0:2 --json
cp $T/stdout $T/p1.json
expect_exit 0 $PARE eval $M --text $TXT --ctx 64 --chunk-range=2:4 --json
cp $T/stdout $T/p2.json
expect_exit 0 $PARE eval --merge $T/p1.json $T/p2.json
cp $T/stdout $T/m1
expect_exit 0 $PARE eval --merge $T/p1.json --threads 4 $T/p2.json
cmp -s $T/stdout $T/m1 || fail "eval --merge with --threads among the parts differs"
expect_exit 0 $PARE eval $M --text $TXT --ctx 64 --chunks 4
grep -F "$(grep '^Final estimate' $T/m1)" $T/stdout >/dev/null || fail "merged parts differ from one run of 4 chunks"
usage_error eval "--merge needs the JSON parts" --merge --json
usage_error eval "give --chunks or --chunk-range, not both" $M --text $TXT --chunks 2 --chunk-range 0:2

# issue #13: the same smallest --ctx (the evaluator's 4) in eval, imatrix and shrink
usage_error imatrix "option '--ctx' must be between 4 and 1048576 (got 3)" $M --text $TXT $T/i.dat --ctx 3
usage_error shrink "option '--ctx' must be between 4 and 1048576 (got 3)" $M $T/s.gguf --text $TXT --ctx 3
expect_exit 0 $PARE eval $M --text $TXT --ctx 4 --chunks 2
expect_exit 0 $PARE shrink $M $T/s4.gguf --text $TXT --ctx 4 --chunks 4 --type Q8_0 --max-ppl-increase 1000

# issue #13: shrink takes prune's --scope, --include and --exclude, with prune's meaning:
# shrink with only pruning publishes exactly what pare prune writes
P="--sparsity 0.4 --scope tensor --include token_embd.weight --exclude blk.0.*"
expect_exit 0 $PARE prune $M $T/pruned.gguf $P
expect_exit 0 $PARE shrink $M $T/shrunk.gguf --text $TXT --ctx 64 --max-ppl-increase 1000 $P
cmp -s $T/pruned.gguf $T/shrunk.gguf || fail "shrink's pruning with --scope/--include/--exclude differs from prune's"
expect_exit 0 $PARE prune $M $T/plain.gguf --sparsity 0.4
cmp -s $T/plain.gguf $T/pruned.gguf && fail "--scope/--include/--exclude changed nothing"
# issue #13: a failure before or inside pare_shrink frees nothing it did not allocate (the
# sanitizers watch): a missing adapter, with --json too
expect_exit 1 $PARE shrink $M $T/x.gguf --text $TXT --ctx 64 --type Q8_0 --lora $T/missing-adapter:0.5
grep -q "missing-adapter: no such adapter" $T/stderr || fail "missing adapter: $(cat $T/stderr)"
expect_exit 1 $PARE shrink $M $T/x.gguf --text $TXT --ctx 64 --type Q8_0 --lora $T/missing-adapter --json
expect_exit 2 $PARE shrink $M $T/x.gguf --text $T/missing.txt --ctx 64 --type Q8_0 --json
[ ! -e $T/x.gguf ] || fail "a failed shrink wrote its output"

# docs/options.md is what the table says
expect_exit 0 $PARE help-options
cmp -s $T/stdout docs/options.md || fail "docs/options.md is out of date: regenerate it with 'pare help-options > docs/options.md'"
echo ok
