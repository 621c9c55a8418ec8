# tests/fuzz/targets.sh - what each fuzz target reads, for tests/fuzz/run.sh (make fuzz) and
# tests/cli/fuzz_replay.sh (make test). Sourced; defines two functions.

# fuzz_max_len NAME: -max_len for libFuzzer, sized for the format (the committed seeds fit).
fuzz_max_len() {
    case $1 in
        st_index) echo 8192;;
        imatrix) echo 16384;;
        tokenizer) echo 4096;;
        *) echo 65536;;
    esac
}

# fuzz_fixture_seeds NAME: committed fixtures that are inputs of the target as they are
# (files or folders); the other seeds are in tests/fuzz/regress/NAME, made by mkseeds.c.
fuzz_fixture_seeds() {
    case $1 in
        safetensors) echo tests/fixtures/tiny-llama-lora/adapter_model.safetensors \
                          tests/fixtures/tiny-llama/model.safetensors;;
        pytorch) echo tests/fixtures/tiny.pt tests/fixtures/evil.pt tests/fixtures/pytorch;;
        *) ;;
    esac
}
