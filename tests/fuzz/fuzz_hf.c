/* tests/fuzz/fuzz_hf.c - the Hugging Face folder readers (formats/hf.h): config.json,
 * tokenizer.model (sentencepiece protobuf), tokenizer.json, tokenizer_config.json,
 * added_tokens.json, special_tokens_map.json, as `pare convert FOLDER out.gguf` and
 * `pare tokenize FOLDER` drive them.
 *
 * Input: up to six files separated by FUZZ_SEP, in the order of piece_names below; an
 * empty piece means the file is absent. They are written into a folder that also holds
 * fixed weights made once per process: Llama-style names (model.embed_tokens.weight BF16
 * [384, 64], layer 0's q_proj F32 [64, 64] and k_proj [32, 64], model.norm.weight), or
 * GPT-2-style ones (transformer.wte.weight, a Conv1D c_attn) when the config piece
 * mentions gpt2, so that either architecture gets past the weights to the tokenizer.
 * When the folder loads: names and layout go to GGUF's (pare_hf_to_gguf), every tensor is
 * read (the q/k permutation runs), a tokenizer is built from the metadata and tokenizes a
 * short text, the metadata is written back as an HF folder (pare_hf_write_folder_meta)
 * and loaded once more, and the model goes back to HF names (pare_gguf_to_hf) and is read
 * again. Statuses are checked; the written folder is not compared (its general.name comes
 * from the folder's own name). */
#include "formats/hf.h"
#include "formats/safetensors.h"
#include "fuzz_util.h"
#include "verify/tokenizer.h"

static const char *const piece_names[] = {"config.json", "tokenizer.model", "tokenizer_config.json",
                                          "tokenizer.json", "added_tokens.json", "special_tokens_map.json"};
#define N_PIECES (sizeof piece_names / sizeof piece_names[0])

#define HF_VOCAB 384
#define HF_EMBD 64

typedef struct {
    const char *name;
    pare_type type;
    int n_dims;
    int64_t ne[2];
} weight_spec;

static const weight_spec llama_weights[] = {
    {"model.embed_tokens.weight", PARE_TYPE_BF16, 2, {HF_EMBD, HF_VOCAB}},
    {"model.layers.0.self_attn.q_proj.weight", PARE_TYPE_F32, 2, {HF_EMBD, HF_EMBD}},
    {"model.layers.0.self_attn.k_proj.weight", PARE_TYPE_F32, 2, {HF_EMBD, HF_EMBD / 2}},
    {"model.norm.weight", PARE_TYPE_F32, 1, {HF_EMBD, 1}},
};
static const weight_spec gpt2_weights[] = {
    {"transformer.wte.weight", PARE_TYPE_F16, 2, {HF_EMBD, HF_VOCAB}},
    {"transformer.h.0.attn.c_attn.weight", PARE_TYPE_F32, 2, {3 * HF_EMBD, HF_EMBD}},
    {"transformer.h.0.attn.bias", PARE_TYPE_F32, 1, {4, 1}},
    {"transformer.ln_f.weight", PARE_TYPE_F32, 1, {HF_EMBD, 1}},
};

/* folder/model.safetensors with the given tensors, filled with small varied values. */
static void write_weights(const char *folder, const weight_spec *ws, size_t n) {
    pare_tensor ts[8] = {{0}};
    pare_err err = {0};
    for (size_t i = 0; i < n; i++)
        if (pare_tensor_init(&ts[i], ws[i].name, ws[i].type, ws[i].n_dims, ws[i].ne, &err))
            FUZZ_BUG("weights: %s", err.msg);
    char *path = pare_path_join(folder, "model.safetensors");
    pare_st_writer *w = NULL;
    if (!path || pare_st_writer_open(path, NULL, ts, n, true, NULL, 0, &w, &err)) FUZZ_BUG("weights: %s", err.msg);
    for (size_t i = 0; i < n; i++) {
        uint64_t nb = 0;
        if (pare_tensor_nbytes(ts[i].type, ts[i].n_dims, ts[i].ne, &nb, &err)) FUZZ_BUG("weights: %s", err.msg);
        int64_t ne = ts[i].ne[0] * ts[i].ne[1];
        float *f = malloc((size_t)ne * sizeof *f);
        void *b = malloc((size_t)nb);
        if (!f || !b) abort();
        for (int64_t k = 0; k < ne; k++) f[k] = (float)((k * 7919 + (int64_t)i * 13) % 1000) / 1000.0f - 0.5f;
        if (ts[i].type == PARE_TYPE_F32)
            memcpy(b, f, (size_t)nb);
        else if (!pare_f32_to_plain(ts[i].type, f, b, ne))
            FUZZ_BUG("weights: no conversion to %s", pare_type_name(ts[i].type));
        if (pare_st_writer_add(w, b, nb, &err)) FUZZ_BUG("weights: %s", err.msg);
        free(f);
        free(b);
    }
    if (pare_st_writer_finish(w, &err)) FUZZ_BUG("weights: %s", err.msg);
    pare_st_writer_free(w);
    free(path);
    for (size_t i = 0; i < n; i++) pare_tensor_clear(&ts[i]);
}

/* The folder for this input: gpt2's when the config piece names it, else llama's. */
static const char *folder_for(fuzz_piece cfg) {
    static char llama[1024], gpt2[1024];
    if (!llama[0]) {
        fuzz_fresh_dir(llama, sizeof llama, "hf-llama");
        write_weights(llama, llama_weights, sizeof llama_weights / sizeof llama_weights[0]);
        fuzz_fresh_dir(gpt2, sizeof gpt2, "hf-gpt2");
        write_weights(gpt2, gpt2_weights, sizeof gpt2_weights / sizeof gpt2_weights[0]);
    }
    for (size_t i = 0; i + 4 <= cfg.n; i++)
        if (!memcmp(cfg.p + i, "gpt2", 4) || !memcmp(cfg.p + i, "GPT2", 4)) return gpt2;
    return llama;
}

static void tokenize_some(const pare_meta *meta) {
    static const char text[] = "Hello world, 123  tabs\tand\nnewlines; "
                               "\xc3\xbc" "n\xc3\xaf" "c\xc3\xb6" "d\xc3\xa9 <s>";
    pare_tokenizer *tk = NULL;
    pare_err err = {0};
    pare_status st = pare_tokenizer_new(meta, &tk, &err);
    fuzz_check_status(st, &err, "pare_tokenizer_new");
    if (st) return;
    int32_t *ids = NULL;
    size_t n = 0;
    st = pare_tokenize(tk, text, sizeof text - 1, true, &ids, &n, &err);
    fuzz_check_status(st, &err, "pare_tokenize");
    for (size_t i = 0; !st && i < n; i++) {
        size_t len;
        if ((size_t)ids[i] >= pare_tokenizer_n_vocab(tk) || !pare_token_piece(tk, ids[i], &len))
            FUZZ_BUG("token %d out of a vocabulary of %zu", (int)ids[i], pare_tokenizer_n_vocab(tk));
    }
    free(ids);
    pare_tokenizer_free(tk);
}

/* Writes m's metadata as an HF folder beside a link to the weights and loads that. */
static void write_back(const pare_model *m, const char *folder) {
    char out[1024], link[1100], target[1100];
    fuzz_fresh_dir(out, sizeof out, "hf-out");
    pare_err err = {0};
    pare_status st = pare_hf_write_folder_meta(m, out, true, &err);
    fuzz_check_status(st, &err, "pare_hf_write_folder_meta");
    if (st) return;
    snprintf(link, sizeof link, "%s/model.safetensors", out);
    snprintf(target, sizeof target, "%s/model.safetensors", folder);
    if (symlink(target, link) != 0) abort();
    pare_model *m2 = NULL;
    st = pare_hf_load(out, &m2, &err);
    fuzz_check_status(st, &err, "pare_hf_load of a written folder");
    pare_model_free(m2);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_piece pc[N_PIECES];
    size_t n = fuzz_split(data, size, pc, N_PIECES);
    for (size_t i = n; i < N_PIECES; i++) pc[i] = (fuzz_piece){NULL, 0};
    const char *folder = folder_for(pc[0]);
    for (size_t i = 0; i < N_PIECES; i++) fuzz_put_piece(folder, piece_names[i], pc[i]);
    pare_model *m = NULL;
    pare_err err = {0};
    pare_status st = pare_hf_load(folder, &m, &err);
    fuzz_check_status(st, &err, "pare_hf_load");
    if (!st) {
        st = pare_hf_to_gguf(m, &err);
        fuzz_check_status(st, &err, "pare_hf_to_gguf");
    }
    if (!st) {
        fuzz_read_all(m);
        tokenize_some(&m->meta);
        write_back(m, folder);
        st = pare_gguf_to_hf(m, &err);
        fuzz_check_status(st, &err, "pare_gguf_to_hf");
        if (!st) fuzz_read_all(m);
    }
    pare_model_free(m);
    return 0;
}
