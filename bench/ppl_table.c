/* bench/ppl_table.c - llama-perplexity's whole table of ../shared/README.md (not part of make
 * test: it evaluates 78 chunks per model, which takes too long under AddressSanitizer).
 *
 *   make build/libpare.a
 *   cc -O2 -march=native -std=c11 -D_DEFAULT_SOURCE -I. bench/ppl_table.c build/libpare.a \
 *      $(pkg-config --libs openblas libzip libcjson libxxhash libpcre2-8 lapacke) -lpthread -lm \
 *      -o build/ppl_table && ./build/ppl_table [shared-dir] [threads]
 *
 * For every model file of the table whose tensor types pare can read: PPL on data/gpl-3.txt
 * at ctx 256 (the tokens of models/fortune-llama-golden/tokens-gpl3.txt) against llama.cpp's
 * value. Exits 1 when a float model (f32, f16, bf16) is off by more than 0.02 %.
 */
#include "formats/gguf.h"
#include "quant/quant.h"
#include "verify/llm.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct {
    const char *file;
    double ppl, err;
} table[] = {
    {"f32", 46.4733, 1.42353},    {"f16", 46.4731, 1.42354},    {"bf16", 46.4733, 1.42351},
    {"Q8_0", 46.4857, 1.42439},   {"Q6_K", 46.5127, 1.42295},   {"Q5_K_M", 46.4769, 1.42180},
    {"Q5_0", 46.5573, 1.42550},   {"Q5_1", 46.5260, 1.42286},   {"Q4_K_M", 46.8055, 1.43318},
    {"Q4_K_S", 46.6965, 1.42923}, {"Q4_0", 46.7152, 1.42834},   {"Q4_1", 46.4703, 1.41983},
    {"Q3_K_M", 46.7498, 1.43019}, {"Q2_K", 47.6477, 1.45049},   {"IQ4_NL", 46.9337, 1.43685},
    {"IQ4_XS", 46.8784, 1.43403}, {"merged-licenses-f32", 27.2037, 0.87552},
};

static int32_t *read_tokens(const char *path, size_t *n) {
    char *buf;
    size_t len;
    pare_err err;
    *n = 0;
    if (pare_read_file(path, 16u << 20, &buf, &len, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return NULL;
    }
    int32_t *t = malloc(len / 2 * sizeof *t + 4);
    for (char *p = buf; *p;) {
        if (*p >= '0' && *p <= '9') t[(*n)++] = (int32_t)strtol(p, &p, 10);
        else p++;
    }
    free(buf);
    return t;
}

static const char *unreadable(const pare_model *m) {
    for (size_t i = 0; i < m->n_tensors; i++) {
        pare_type t = m->tensors[i].type;
        if (!pare_type_get(t)->is_float && !pare_quant_can_dequantize(t)) return pare_type_name(t);
    }
    return NULL;
}

int main(int argc, char **argv) {
    const char *shared = argc > 1 ? argv[1] : "../shared";
    int threads = argc > 2 ? atoi(argv[2]) : 2, bad = 0;
    char path[4096];
    snprintf(path, sizeof path, "%s/models/fortune-llama-golden/tokens-gpl3.txt", shared);
    size_t n;
    int32_t *tok = read_tokens(path, &n);
    if (!tok) return 2;
    printf("ppl_table: llama-perplexity -c 256 on gpl-3.txt (%zu tokens), %d threads\n", n, threads);
    printf("%-22s %10s %10s %10s %10s %8s %7s\n", "model", "PPL", "+/-", "llama.cpp", "+/-", "rel", "s");
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
        snprintf(path, sizeof path, "%s/models/fortune-llama-gguf/fortune-llama-%s.gguf", shared, table[i].file);
        pare_model *m;
        pare_llm *llm = NULL;
        pare_err err;
        if (pare_gguf_load(path, &m, &err)) {
            printf("%-22s %s\n", table[i].file, err.msg);
            bad++;
            continue;
        }
        const char *u = unreadable(m);
        if (u) {
            printf("%-22s not evaluated: pare cannot read type %s yet\n", table[i].file, u);
            pare_model_free(m);
            continue;
        }
        pare_ppl_opts o = {.n_ctx = 256, .n_chunks = -1, .n_threads = threads};
        pare_ppl_result r;
        double t0 = pare_now();
        pare_status st = pare_llm_new(m, threads, &llm, &err);
        if (!st) st = pare_perplexity(llm, NULL, tok, n, &o, NULL, NULL, &r, &err);
        if (st) {
            printf("%-22s %s\n", table[i].file, err.msg);
            bad++;
        } else {
            double rel = r.ppl / table[i].ppl - 1;
            bool is_float = strstr(table[i].file, "f32") || strstr(table[i].file, "f16") || strstr(table[i].file, "bf16");
            bool off = is_float && fabs(rel) > 2e-4;
            bad += off;
            printf("%-22s %10.4f %10.5f %10.4f %10.5f %+7.3f%% %7.2f%s\n", table[i].file, r.ppl, r.ppl_err,
                   table[i].ppl, table[i].err, 100 * rel, pare_now() - t0, off ? "  OFF" : "");
            pare_ppl_result_free(&r);
        }
        pare_llm_free(llm);
        pare_model_free(m);
    }
    free(tok);
    return bad ? 1 : 0;
}
