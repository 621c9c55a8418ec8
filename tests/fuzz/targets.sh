# tests/fuzz/targets.sh - what each fuzz target reads, for tests/fuzz/run.sh (make fuzz) and
# tests/cli/fuzz_replay.sh (make test). Sourced; defines three functions.

# fuzz_max_len NAME: -max_len for libFuzzer, sized for the format (the committed seeds fit).
fuzz_max_len() {
    case $1 in
        st_index) echo 8192;;
        imatrix) echo 16384;;
        tokenizer|recipe) echo 4096;;
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

# fuzz_shared_seeds NAME: real files of ../shared ($PARE_SHARED) that are inputs of the target
# (run.sh cuts each to the target's -max_len); nothing when ../shared is absent. HF folders
# are listed as folders (run.sh joins their pieces as fuzz_hf.c reads them).
fuzz_shared_seeds() {
    sh_dir=${PARE_SHARED:-../shared}
    [ -d "$sh_dir/models" ] || return 0
    case $1 in
        gguf) find -L "$sh_dir/models" -name '*.gguf' | sort | head -n 40;;
        safetensors) find -L "$sh_dir/models" -name '*.safetensors' | sort;;
        st_index) find -L "$sh_dir/models" -name '*.safetensors.index.json' | sort;;
        imatrix) find -L "$sh_dir/models" -name '*.dat' | sort;;
        pytorch) find -L "$sh_dir/models" -name '*.bin' -size -64k | sort;;
        hf) find -L "$sh_dir/models" -name config.json | sort | while read -r c; do dirname "$c"; done;;
        lora) find -L "$sh_dir/models" -name adapter_config.json | sort | while read -r c; do dirname "$c"; done;;
        # llama.cpp's tokenizer test inputs (cases separated by __ggml_vocab_test__) and texts
        tokenizer) find -L "$sh_dir/data" \( -name '*.inp' -o -name '*.txt' \) -size -4M | sort;;
        *) ;;
    esac
}
