/*
 * pipeline/cache.c - the reference-result cache: a matrix of jobs on one model and one gate
 * text evaluates the reference once.
 *
 * An entry is one small text file "ref-KEY.txt" where KEY is XXH3-128 over the reference
 * model's content digest (verify/hash.h, bytes mode), the text file's digest, ctx, chunks
 * and PARE_EVAL_VERSION. It repeats the key, holds the figures as exact hex floats and ends
 * with a digest of everything before it: an entry that does not parse, whose key is not
 * the one asked for, or whose check fails is ignored (and replaced by the next put), never
 * trusted. Entries are written to a temporary name and renamed.
 */
#include "pipeline/pipeline.h"

#include "formats/formats.h"
#include "verify/hash.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#define MAGIC "pare-reference-cache 1\n"

bool pare_file_digest(const char *path, char hex[33]) {
    FILE *f = fopen(path, "rb");
    if (!f) return false;
    XXH3_state_t *s = XXH3_createState();
    bool ok = s && XXH3_128bits_reset(s) == XXH_OK;
    char buf[1 << 16];
    size_t n;
    while (ok && (n = fread(buf, 1, sizeof buf, f)) > 0) ok = XXH3_128bits_update(s, buf, n) == XXH_OK;
    ok = ok && !ferror(f);
    if (ok) {
        XXH128_hash_t h = XXH3_128bits_digest(s);
        pare_digest_hex((pare_digest){h.high64, h.low64}, hex);
    }
    XXH3_freeState(s);
    fclose(f);
    return ok;
}

pare_status pare_cache_key(const char *model, const char *text, int ctx, int n_chunks, int n_threads, char key[33],
                           pare_err *err) {
    pare_model *m = NULL;
    pare_model_digest d = {0};
    char mh[33], th[33], buf[160];
    TRY(pare_model_load_gguf(model, &m, err));
    pare_status st = pare_hash_model(m, false, n_threads, &d, err);
    pare_model_free(m);
    TRY(st);
    pare_digest_hex(d.model, mh);
    pare_model_digest_free(&d);
    FAIL_IF(!pare_file_digest(text, th), PARE_EIO, "%s: cannot read", text);
    int n = snprintf(buf, sizeof buf, "model %s text %s ctx %d chunks %d evaluator %d", mh, th, ctx, n_chunks,
                     PARE_EVAL_VERSION);
    XXH128_hash_t h = XXH3_128bits(buf, (size_t)n);
    pare_digest_hex((pare_digest){h.high64, h.low64}, key);
    return PARE_OK;
}

/* dir, or $XDG_CACHE_HOME/pare, or $HOME/.cache/pare, made when missing (NULL if none). */
static char *cache_dir(const char *dir, bool make) {
    char *d = NULL;
    if (dir) {
        d = strdup(dir);
    } else {
        const char *x = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
        if (x && *x) {
            if (make) mkdir(x, 0755); /* as ~/.cache: the parent may not exist yet */
            d = pare_path_join(x, "pare");
        }
        else if (home && *home) {
            char *c = pare_path_join(home, ".cache");
            if (c && make) mkdir(c, 0755);
            d = c ? pare_path_join(c, "pare") : NULL;
            free(c);
        }
    }
    if (d && make && mkdir(d, 0755) != 0 && errno != EEXIST) {
        free(d);
        return NULL;
    }
    return d;
}

static char *entry_path(const char *dir, const char *key, bool make) {
    char *d = cache_dir(dir, make), name[64];
    if (!d) return NULL;
    snprintf(name, sizeof name, "ref-%s.txt", key);
    char *p = pare_path_join(d, name);
    free(d);
    return p;
}

/* the entry's text without its check line */
static int entry_text(char *buf, size_t n, const char *key, const pare_ref_result *r) {
    return snprintf(buf, n, MAGIC "key %s\nppl %a\nppl_err %a\nchunks %d\nctx %d\n", key, r->ppl, r->ppl_err,
                    r->n_chunks, r->n_ctx);
}

bool pare_cache_get(const char *dir, const char *key, pare_ref_result *r) {
    char *p = entry_path(dir, key, false), *text = NULL;
    size_t len = 0;
    pare_err e = {0};
    bool ok = p && !pare_read_file(p, 4096, &text, &len, &e);
    free(p);
    pare_ref_result x = {0};
    char k[64], check[64], want[512];
    unsigned long long sum = 0;
    ok = ok && !strncmp(text, MAGIC, strlen(MAGIC)) &&
         sscanf(text + strlen(MAGIC), "key %63s\nppl %la\nppl_err %la\nchunks %d\nctx %d\ncheck %63s", k, &x.ppl,
                &x.ppl_err, &x.n_chunks, &x.n_ctx, check) == 6 &&
         !strcmp(k, key) && x.ppl > 0 && x.n_chunks > 0;
    if (ok) {
        int n = entry_text(want, sizeof want, key, &x);
        sum = XXH3_64bits(want, (size_t)n);
        char hex[24];
        snprintf(hex, sizeof hex, "%016llx", sum);
        ok = !strcmp(hex, check) && len == (size_t)n + strlen("check ") + 16 + 1 && !strncmp(text, want, (size_t)n);
    }
    free(text);
    if (ok) *r = x;
    return ok;
}

void pare_cache_put(const char *dir, const char *key, const pare_ref_result *r) {
    char *p = entry_path(dir, key, true);
    if (!p) return;
    char buf[512], *tmp = malloc(strlen(p) + 32);
    int n = entry_text(buf, sizeof buf - 32, key, r);
    n += snprintf(buf + n, sizeof buf - (size_t)n, "check %016llx\n", (unsigned long long)XXH3_64bits(buf, (size_t)n));
    if (tmp) {
        sprintf(tmp, "%s.%ld.tmp", p, (long)getpid());
        FILE *f = fopen(tmp, "wb");
        bool ok = f && fwrite(buf, 1, (size_t)n, f) == (size_t)n;
        if (f && fclose(f) != 0) ok = false;
        if (!ok || rename(tmp, p) != 0) unlink(tmp);
    }
    free(tmp);
    free(p);
}
