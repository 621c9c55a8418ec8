/*
 * verify/perplexity.c - perplexity and KL divergence as llama.cpp's llama-perplexity
 * computes them (examples/perplexity/perplexity.cpp of February 2025):
 *
 *   - the text is cut into n_chunk = n_tokens / n_ctx chunks of n_ctx tokens; the first
 *     token of each chunk is replaced by BOS when the vocabulary adds BOS;
 *   - each chunk is evaluated from position 0; of its logits, rows first = n_ctx/2 ..
 *     n_ctx-2 are scored against the next token (n_ctx - 1 - first tokens per chunk);
 *   - nll = -(logit[tok] - max - log(sum expf(logit - max))), the sum in double;
 *   - PPL = exp(mean nll), error = PPL * sqrt((mean nll^2 - mean nll^2) / (N - 1)).
 *
 * KL divergence (--kl-divergence): llama.cpp first saves the base model's log-probabilities
 * as 16-bit values (a scale and a minimum per token, the range clipped to 16 nats below the
 * maximum), then compares the model's distribution against those: KLD(base || model), the
 * change of the right token's probability (delta p), and whether the top tokens agree.
 * pare evaluates both models chunk by chunk and goes through the same 16-bit storage, so
 * its figures are those llama.cpp would print.
 */
#include "verify/llm_impl.h"

/* A function, not an inline: its answer depends on the kernels' level (this file is compiled
 * once per level), and pare_llm_prepare (model_llm.c, compiled once) must reserve for what
 * the level in use will batch. */
int llm_batch_seqs(int n_ctx, int n_chunks) {
#if defined(__AVX512F__) || (defined(__AVX2__) && defined(__FMA__) && defined(__F16C__))
    int n = n_ctx > 0 ? LLM_BATCH_TOKENS / n_ctx : 1;
    if (n > n_chunks) n = n_chunks;
    return n < 1 ? 1 : n;
#else
    (void)n_ctx, (void)n_chunks;
    return 1;
#endif
}

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------ per-token work */

typedef struct {
    const float *logits; /* row i at logits + i * n_vocab predicts next[i] */
    const int32_t *next;
    int n_vocab;
    double *nll;         /* [rows] -log p(next) */
    /* KLD: the base model's compressed log-probabilities, and per-row outputs */
    float *b_scale, *b_min; /* [rows] */
    double *b_nll;          /* [rows] the base's exact -log p of the next token */
    uint16_t *b_q;          /* [rows][n_vocab] */
    float *k_nll, *k_nll_base, *p_diff;
    double *kld;
    unsigned char *same_top;
} tok_job;

static void nll_row(void *ctx, int64_t i, int thread) {
    (void)thread;
    tok_job *j = ctx;
    const float *l = j->logits + i * j->n_vocab;
    const int n = j->n_vocab;
    float max = l[0];
    double sum = 0;
    int v = 1;
#if defined(__AVX512F__)
    /* 16 at a time: ggml's vector e^x (within an ulp or two of expf) summed in double in
     * sixteen lanes; the sum moves by about 1e-8 relative, perplexity by as little. */
    __m512 vmax = _mm512_set1_ps(l[0]);
    for (v = 0; v + 16 <= n; v += 16) vmax = _mm512_max_ps(vmax, _mm512_loadu_ps(l + v));
    max = _mm512_reduce_max_ps(vmax);
    for (; v < n; v++) max = l[v] > max ? l[v] : max;
    __m512d lo = _mm512_setzero_pd(), hi = lo;
    const __m512 m = _mm512_set1_ps(max);
    for (v = 0; v + 16 <= n; v += 16) {
        const __m512 e = llm_exp16(_mm512_sub_ps(_mm512_loadu_ps(l + v), m));
        lo = _mm512_add_pd(lo, _mm512_cvtps_pd(_mm512_castps512_ps256(e)));
        hi = _mm512_add_pd(hi, _mm512_cvtps_pd(_mm512_extractf32x8_ps(e, 1)));
    }
    sum = _mm512_reduce_add_pd(_mm512_add_pd(lo, hi));
    for (; v < n; v++) sum += expf(l[v] - max);
#elif defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
    /* the same with ggml's 8-lane e^x, in eight double lanes */
    __m256 vmax = _mm256_set1_ps(l[0]);
    for (v = 0; v + 8 <= n; v += 8) vmax = _mm256_max_ps(vmax, _mm256_loadu_ps(l + v));
    __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(vmax), _mm256_extractf128_ps(vmax, 1));
    m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    max = _mm_cvtss_f32(_mm_max_ss(m4, _mm_movehdup_ps(m4)));
    for (; v < n; v++) max = l[v] > max ? l[v] : max;
    __m256d lo = _mm256_setzero_pd(), hi = lo;
    const __m256 m = _mm256_set1_ps(max);
    for (v = 0; v + 8 <= n; v += 8) {
        const __m256 e = llm_exp8(_mm256_sub_ps(_mm256_loadu_ps(l + v), m));
        lo = _mm256_add_pd(lo, _mm256_cvtps_pd(_mm256_castps256_ps128(e)));
        hi = _mm256_add_pd(hi, _mm256_cvtps_pd(_mm256_extractf128_ps(e, 1)));
    }
    lo = _mm256_add_pd(lo, hi);
    const __m128d h = _mm_add_pd(_mm256_castpd256_pd128(lo), _mm256_extractf128_pd(lo, 1));
    sum = _mm_cvtsd_f64(_mm_add_sd(h, _mm_unpackhi_pd(h, h)));
    for (; v < n; v++) sum += expf(l[v] - max);
#else
    for (; v < n; v++) max = l[v] > max ? l[v] : max; /* fmaxf is a call here */
    for (v = 0; v < n; v++) sum += expf(l[v] - max);
#endif
    j->nll[i] = -((double)(l[j->next[i]] - max) - log(sum));
}

/* The base side: llama.cpp's log_softmax that writes uint16 log-probabilities. */
static void base_row(void *ctx, int64_t i, int thread) {
    (void)thread;
    tok_job *j = ctx;
    const int n = j->n_vocab;
    const float *l = j->logits + i * n;
    float max = l[0], min = l[0];
    for (int v = 1; v < n; v++) max = fmaxf(max, l[v]), min = fminf(min, l[v]);
    min = fmaxf(min, max - 16);
    double sum = 0;
    for (int v = 0; v < n; v++) sum += expf(l[v] - max);
    const float log_sum_exp = (float)log(sum);
    const float scale = (max - min) / 65535.f;
    j->b_nll[i] = -((double)(l[j->next[i]] - max) - log(sum)); /* exact, before the 16-bit storage */
    j->b_scale[i] = scale;
    j->b_min[i] = min - max - log_sum_exp;
    uint16_t *q = j->b_q + i * n;
    const float inv = scale != 0 ? 1 / scale : 0;
    for (int v = 0; v < n; v++) q[v] = scale != 0 && l[v] > min ? (uint16_t)nearbyintf(inv * (l[v] - min)) : 0;
}

/* The model side: llama.cpp's log_softmax against the stored base log-probabilities. */
static void kld_row(void *ctx, int64_t i, int thread) {
    (void)thread;
    tok_job *j = ctx;
    const int n = j->n_vocab, tok = j->next[i];
    const float *l = j->logits + i * n;
    float max = l[0];
    int imax = 0;
    for (int v = 1; v < n; v++)
        if (l[v] > max) max = l[v], imax = v;
    double sum_exp = 0;
    for (int v = 0; v < n; v++) sum_exp += expf(l[v] - max);
    const float log_sum_exp = (float)log(sum_exp);
    const float scale = j->b_scale[i], min_lp = j->b_min[i];
    const uint16_t *q = j->b_q + i * n;
    const float nll = max + log_sum_exp - l[tok];
    const float nll_base = -(scale * q[tok] + min_lp);
    const float lse = max + log_sum_exp;
    double kld = 0;
    int imax_base = -1;
    float best = 0;
    for (int v = 0; v < n; v++) {
        const float lpb = scale * q[v] + min_lp;
        if (v == 0 || lpb > best) best = lpb, imax_base = v;
        if (lpb > -16.f) kld += expf(lpb) * (lpb - l[v] + lse);
    }
    j->k_nll[i] = nll;
    j->k_nll_base[i] = nll_base;
    j->kld[i] = kld;
    j->p_diff[i] = expf(-nll) - expf(-nll_base);
    j->same_top[i] = imax == imax_base;
}

/* ------------------------------------------------------------------------ the run */

typedef struct {
    int n_ctx, first, n_score, n_vocab;
    int n_seq;           /* chunks evaluated together (llm_batch_seqs) */
    int32_t *chunk;      /* [n_seq][n_ctx] the tokens of the chunks, each with BOS in front */
    float *logits;       /* [n_ctx - first][n_vocab] */
    tok_job j;
    bool own_b;          /* j.b_* are this state's (else they point into a pare_ppl_base) */
} ppl_state;

static void state_free(ppl_state *s) {
    free(s->chunk);
    free(s->j.nll);
    if (s->own_b) {
        free(s->j.b_scale);
        free(s->j.b_nll);
        free(s->j.b_min);
        free(s->j.b_q);
    }
    free(s->j.k_nll);
    free(s->j.k_nll_base);
    free(s->j.p_diff);
    free(s->j.kld);
    free(s->j.same_top);
}

/* s->logits is llm's buffer (kept between runs, reserved by pare_llm_prepare), not s's own. */
static pare_status state_alloc(ppl_state *s, pare_llm *llm, bool kld, bool own_b, pare_err *err) {
    const size_t R = (size_t)s->n_score, V = (size_t)s->n_vocab;
    s->chunk = malloc((size_t)s->n_seq * (size_t)s->n_ctx * sizeof *s->chunk);
    s->logits = llm_ws_reserve(&llm->lbuf, &llm->lbuf_cap, (size_t)(s->n_ctx - s->first) * V * sizeof *s->logits)
                    ? llm->lbuf : NULL;
    s->j.nll = malloc(R * sizeof(double));
    bool ok = s->chunk && s->logits && s->j.nll;
    if (kld && own_b) {
        s->own_b = true;
        s->j.b_scale = malloc(R * sizeof(float));
        s->j.b_nll = malloc(R * sizeof(double));
        s->j.b_min = malloc(R * sizeof(float));
        s->j.b_q = malloc(R * V * sizeof(uint16_t));
        ok = ok && s->j.b_scale && s->j.b_nll && s->j.b_min && s->j.b_q;
    }
    if (kld) {
        s->j.k_nll = malloc(R * sizeof(float));
        s->j.k_nll_base = malloc(R * sizeof(float));
        s->j.p_diff = malloc(R * sizeof(float));
        s->j.kld = malloc(R * sizeof(double));
        s->j.same_top = malloc(R);
        ok = ok && s->j.k_nll && s->j.k_nll_base && s->j.p_diff && s->j.kld && s->j.same_top;
    }
    FAIL_IF(!ok, PARE_ENOMEM, "out of memory for perplexity buffers (%d x %d logits)", s->n_ctx - s->first,
            s->n_vocab);
    return PARE_OK;
}

/* Copies n_seq chunks starting at `tokens` into s->chunk, each with llm's BOS in front. */
static void load_chunks(const pare_llm *llm, ppl_state *s, const int32_t *tokens, int n_seq) {
    memcpy(s->chunk, tokens, (size_t)n_seq * (size_t)s->n_ctx * sizeof *tokens);
    if (llm->add_bos)
        for (int q = 0; q < n_seq; q++) s->chunk[(size_t)q * s->n_ctx] = llm->bos;
}

static void add_kld_sums(pare_ppl_result *r, const tok_job *j, int n, int64_t at) {
    for (int i = 0; i < n; i++) {
        const float nll = j->k_nll[i], nb = j->k_nll_base[i], pd = j->p_diff[i];
        r->sum_nll_base += nb;
        r->sum_nll_base_exact += j->b_nll[i];
        r->sum_nll_base2 += nb * nb;
        r->sum_nll_nll_base += nll * nb;
        r->sum_kld += j->kld[i];
        r->sum_kld2 += j->kld[i] * j->kld[i];
        r->sum_p_diff += pd;
        const double pd2 = pd * pd;
        r->sum_p_diff2 += pd2;
        r->sum_p_diff4 += pd2 * pd2;
        if (fabsf(pd) > r->max_p_diff) r->max_p_diff = fabsf(pd);
        r->n_same_top += j->same_top[i];
        r->kld_values[at + i] = (float)j->kld[i];
        r->p_diff_values[at + i] = pd;
    }
}

/* The base model's side of a KL divergence, kept: its 16-bit log-probabilities of every
 * scored token of every chunk (what base_row writes), for the options it was made with. */
struct pare_ppl_base {
    int n_ctx, first_chunk, n_chunks, n_score, n_vocab;
    size_t n_tokens;
    float *scale, *min; /* [n_chunks * n_score] */
    double *nll;        /* [n_chunks * n_score] */
    uint16_t *q;        /* [n_chunks * n_score][n_vocab] */
};

/* Points the base side of s->j at chunk c of a kept base. */
static void use_base(ppl_state *s, const pare_ppl_base *b, int c) {
    const size_t at = (size_t)c * (size_t)s->n_score;
    s->j.b_scale = b->scale + at;
    s->j.b_min = b->min + at;
    s->j.b_nll = b->nll + at;
    s->j.b_q = b->q + at * (size_t)s->n_vocab;
}

/* Chunk c (sequence q of the batch llm ran): its NLL and, with kld, the KLD sums against the
 * base side s->j points at. */
static pare_status score_chunk(pare_llm *llm, int q, int c, bool kld, ppl_state *s, pare_ppl_result *r,
                               pare_err *err) {
    TRY(llm_tail_logits(llm, q, s->n_ctx - s->first, s->logits, err));
    pare_pool_for(llm->pool, s->n_score, nll_row, &s->j);
    double sum = 0;
    for (int i = 0; i < s->n_score; i++) {
        sum += s->j.nll[i];
        r->nll2_sum += s->j.nll[i] * s->j.nll[i];
    }
    if (kld) {
        pare_pool_for(llm->pool, s->n_score, kld_row, &s->j);
        add_kld_sums(r, &s->j, s->n_score, r->n_scored);
    }
    r->chunk_nll[c] = sum;
    r->nll_sum += sum;
    r->n_scored += s->n_score;
    r->n_chunks_done = c + 1;
    r->chunk_ppl[c] = exp(r->nll_sum / (double)r->n_scored);
    return PARE_OK;
}

/* The chunks: base (a live model, or kept_base) and llm, then the per-token sums. With
 * llm NULL only the base runs, into fill (pare_ppl_base_new). */
static pare_status run_chunks(pare_llm *llm, pare_llm *base, const pare_ppl_base *kept_base, pare_ppl_base *fill,
                              const int32_t *tokens, ppl_state *s, pare_progress_fn progress, void *user,
                              pare_ppl_result *r, int n_chunks, pare_err *err) {
    for (int c0 = 0; c0 < n_chunks; c0 += s->n_seq) {
        const int n_seq = n_chunks - c0 < s->n_seq ? n_chunks - c0 : s->n_seq;
        const int32_t *ct0 = tokens + (size_t)(r->first_chunk + c0) * s->n_ctx;
        if (base) {
            load_chunks(base, s, ct0, n_seq);
            TRY(llm_run_layers(base, s->chunk, n_seq, s->n_ctx, s->first, err));
        }
        if (llm) {
            load_chunks(llm, s, ct0, n_seq);
            TRY(llm_run_layers(llm, s->chunk, n_seq, s->n_ctx, s->first, err));
        }
        pare_pool *pool = llm ? llm->pool : base->pool;
        for (int q = 0; q < n_seq; q++) {
            const int c = c0 + q;
            s->j.next = ct0 + (size_t)q * s->n_ctx + s->first + 1;
            const pare_ppl_base *kept = fill ? fill : kept_base;
            if (kept) use_base(s, kept, c);
            if (base) {
                TRY(llm_tail_logits(base, q, s->n_ctx - s->first, s->logits, err));
                pare_pool_for(pool, s->n_score, base_row, &s->j);
            }
            if (llm) TRY(score_chunk(llm, q, c, base || kept_base, s, r, err));
            if (progress) progress(user, "perplexity", (uint64_t)c + 1, (uint64_t)n_chunks);
        }
    }
    return PARE_OK;
}

static pare_status result_alloc(pare_ppl_result *r, int n_chunks, int n_score, bool kld, pare_err *err) {
    r->chunk_nll = calloc((size_t)n_chunks, sizeof(double));
    r->chunk_ppl = calloc((size_t)n_chunks, sizeof(double));
    bool ok = r->chunk_nll && r->chunk_ppl;
    if (kld) {
        r->kld_values = calloc((size_t)n_chunks * n_score, sizeof(float));
        r->p_diff_values = calloc((size_t)n_chunks * n_score, sizeof(float));
        ok = ok && r->kld_values && r->p_diff_values;
    }
    FAIL_IF(!ok, PARE_ENOMEM, "out of memory for the results of %d chunks", n_chunks);
    return PARE_OK;
}

int pare_ppl_n_chunks(size_t n_tokens, const pare_ppl_opts *o) {
    const size_t n_ctx = o->n_ctx > 0 ? (size_t)o->n_ctx : PARE_PPL_DEFAULT_CTX, n_max = n_tokens / n_ctx;
    if (n_max > INT32_MAX || o->first_chunk < 0 || (size_t)o->first_chunk >= n_max) return 0;
    const int n = (int)n_max - o->first_chunk;
    return o->n_chunks >= 0 && o->n_chunks < n ? o->n_chunks : n;
}

/* The checks and the state both entry points share; n_chunks_out is what will run. */
static pare_status begin(pare_llm *llm, int n_vocab_other, const char *other, size_t n_tokens, const pare_ppl_opts *o,
                         ppl_state *s, int *n_chunks_out, int *n_max_out, pare_err *err) {
    const int n_ctx = o->n_ctx > 0 ? o->n_ctx : PARE_PPL_DEFAULT_CTX;
    FAIL_IF(n_ctx < PARE_PPL_MIN_CTX, PARE_EUSAGE, "context of %d tokens is too small to score (at least %d)", n_ctx,
            PARE_PPL_MIN_CTX);
    FAIL_IF(n_tokens < 2 * (size_t)n_ctx, PARE_EUSAGE,
            "perplexity with a context of %d needs at least %d tokens; the text has %zu", n_ctx, 2 * n_ctx, n_tokens);
    FAIL_IF(n_tokens / (size_t)n_ctx > INT32_MAX, PARE_EUSAGE, "text of %zu tokens is too long", n_tokens);
    const int n_max = (int)(n_tokens / (size_t)n_ctx);
    FAIL_IF(o->first_chunk < 0 || o->first_chunk >= n_max, PARE_EUSAGE, "first chunk %d is outside the %d chunks",
            o->first_chunk, n_max);
    const int n_chunks = pare_ppl_n_chunks(n_tokens, o);
    FAIL_IF(n_chunks < 1, PARE_EUSAGE, "no chunk to evaluate");
    FAIL_IF(other && n_vocab_other != llm->n_vocab, PARE_EINPUT, "%s has %d tokens in its vocabulary, %s has %d",
            llm->name, llm->n_vocab, other, n_vocab_other);
    if (o->n_threads > 0) llm->n_threads = o->n_threads;
    *s = (ppl_state){.n_ctx = n_ctx, .first = n_ctx / 2, .n_vocab = llm->n_vocab, .n_seq = llm_batch_seqs(n_ctx, n_chunks)};
    s->n_score = n_ctx - 1 - s->first;
    s->j.n_vocab = s->n_vocab;
    *n_chunks_out = n_chunks;
    *n_max_out = n_max;
    return PARE_OK;
}

static pare_status ppl_run(pare_llm *llm, pare_llm *base, const pare_ppl_base *kept, const int32_t *tokens,
                           size_t n_tokens, const pare_ppl_opts *o, pare_progress_fn progress, void *user,
                           pare_ppl_result *res, pare_err *err) {
    memset(res, 0, sizeof *res);
    ppl_state s;
    int n_chunks, n_max;
    TRY(begin(llm, base ? base->n_vocab : kept ? kept->n_vocab : 0, base ? base->name : kept ? "the kept base" : NULL,
              n_tokens, o, &s, &n_chunks, &n_max, err));
    FAIL_IF(kept && (kept->n_ctx != s.n_ctx || kept->first_chunk != o->first_chunk || kept->n_chunks != n_chunks ||
                     kept->n_tokens != n_tokens),
            PARE_EINTERNAL, "%s: the kept base log-probabilities are of other chunks", llm->name);
    if (base && o->n_threads > 0) base->n_threads = o->n_threads;
    const bool kld = base || kept;
    res->n_ctx = s.n_ctx;
    res->n_vocab = llm->n_vocab;
    res->first_chunk = o->first_chunk;
    res->n_chunks_total = n_max;
    res->has_kld = kld;
    pare_status st = state_alloc(&s, llm, kld, base != NULL, err);
    if (!st) st = result_alloc(res, n_chunks, s.n_score, kld, err);
    s.j.logits = s.logits;
    if (!st) st = run_chunks(llm, base, kept, NULL, tokens, &s, progress, user, res, n_chunks, err);
    state_free(&s);
    if (st) {
        pare_ppl_result_free(res);
        return st;
    }
    pare_ppl_finish(res);
    return PARE_OK;
}

pare_status pare_perplexity(pare_llm *llm, pare_llm *base, const int32_t *tokens, size_t n_tokens,
                            const pare_ppl_opts *o, pare_progress_fn progress, void *user, pare_ppl_result *res,
                            pare_err *err) {
    return ppl_run(llm, base, NULL, tokens, n_tokens, o, progress, user, res, err);
}

pare_status pare_perplexity_kept(pare_llm *llm, const pare_ppl_base *base, const int32_t *tokens, size_t n_tokens,
                                 const pare_ppl_opts *o, pare_progress_fn progress, void *user, pare_ppl_result *res,
                                 pare_err *err) {
    return ppl_run(llm, NULL, base, tokens, n_tokens, o, progress, user, res, err);
}

void pare_ppl_base_free(pare_ppl_base *b) {
    if (!b) return;
    free(b->scale);
    free(b->min);
    free(b->nll);
    free(b->q);
    free(b);
}

pare_status pare_ppl_base_new(pare_llm *base, const int32_t *tokens, size_t n_tokens, const pare_ppl_opts *o,
                              pare_progress_fn progress, void *user, pare_ppl_base **out, pare_err *err) {
    *out = NULL;
    ppl_state s;
    int n_chunks, n_max;
    TRY(begin(base, 0, NULL, n_tokens, o, &s, &n_chunks, &n_max, err));
    pare_ppl_base *b = calloc(1, sizeof *b);
    FAIL_IF(!b, PARE_ENOMEM, "out of memory");
    *b = (pare_ppl_base){.n_ctx = s.n_ctx, .first_chunk = o->first_chunk, .n_chunks = n_chunks, .n_score = s.n_score,
                         .n_vocab = s.n_vocab, .n_tokens = n_tokens};
    const size_t R = (size_t)n_chunks * (size_t)s.n_score;
    b->scale = malloc(R * sizeof *b->scale);
    b->min = malloc(R * sizeof *b->min);
    b->nll = malloc(R * sizeof *b->nll);
    b->q = malloc(R * (size_t)s.n_vocab * sizeof *b->q);
    pare_status st = b->scale && b->min && b->nll && b->q
                         ? PARE_OK
                         : pare_err_set(err, PARE_ENOMEM, "%s: out of memory for the log-probabilities of %zu tokens",
                                        base->name, R);
    pare_ppl_result r = {.first_chunk = o->first_chunk};
    if (!st) st = state_alloc(&s, base, false, false, err);
    s.j.logits = s.logits;
    if (!st) st = run_chunks(NULL, base, NULL, b, tokens, &s, progress, user, &r, n_chunks, err);
    state_free(&s);
    if (st) {
        pare_ppl_base_free(b);
        return st;
    }
    *out = b;
    return PARE_OK;
}

/* ------------------------------------------------------------------------ statistics */

/* llama.cpp's mean_and_uncertainty: the mean and its standard error (0 for <= 10 values). */
static void mean_unc(double sum, double sum2, int64_t n, double *mean, double *unc) {
    *mean = *unc = 0;
    if (n < 1) return;
    double f = sum / (double)n, df = sum2 / (double)n - f * f;
    *mean = f;
    *unc = df > 0 && n > 10 ? sqrt(df / (double)(n - 1)) : 0;
}

static int cmp_float(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* llama.cpp's percentile: linear interpolation at fraction * (n - 1), in float. */
static double percentile(const float *v, size_t n, float fraction) {
    if (fraction <= 0) return v[0];
    if (fraction >= 1) return v[n - 1];
    float p = fraction * (float)(n - 1);
    size_t ip = (size_t)p;
    p -= (float)ip;
    return (1 - p) * v[ip] + p * v[ip + 1 < n ? ip + 1 : n - 1];
}

static double median(const float *v, size_t n) { return n % 2 ? v[n / 2] : 0.5f * (v[n / 2] + v[n / 2 - 1]); }

static void finish_kld(pare_ppl_result *r) {
    const int64_t n = r->n_scored;
    double lp, lpu, lb, lbu;
    mean_unc(r->nll_sum, r->nll2_sum, n, &lp, &lpu);
    mean_unc(r->sum_nll_base, r->sum_nll_base2, n, &lb, &lbu);
    r->ppl_base = exp(lb);
    r->ppl_base_exact = n > 0 ? exp(r->sum_nll_base_exact / (double)n) : 0;
    r->ppl_base_err = r->ppl_base * lbu;
    double cov = n < 10 ? 0 : (r->sum_nll_nll_base / n - (r->nll_sum / n) * (r->sum_nll_base / n)) / (double)(n - 1);
    r->ln_ppl_cor = lpu * lbu > 0 ? cov / (lpu * lbu) : 0;
    r->ln_ppl_ratio = lp - lb;
    double v = lpu * lpu + lbu * lbu - 2 * cov;
    r->ln_ppl_ratio_err = v > 0 ? sqrt(v) : 0;
    r->ppl_ratio = exp(r->ln_ppl_ratio);
    r->ppl_ratio_err = r->ppl_ratio * r->ln_ppl_ratio_err;
    const double ppl = exp(lp), ppl_unc = ppl * lpu, pcov = ppl * r->ppl_base * cov;
    r->ppl_diff = ppl - r->ppl_base;
    v = ppl_unc * ppl_unc + r->ppl_base_err * r->ppl_base_err - 2 * pcov;
    r->ppl_diff_err = v > 0 ? sqrt(v) : 0;
    mean_unc(r->sum_kld, r->sum_kld2, n, &r->kld_mean, &r->kld_err);
    mean_unc(r->sum_p_diff, r->sum_p_diff2, n, &r->dp_mean, &r->dp_err);
    double mse, mse_unc;
    mean_unc(r->sum_p_diff2, r->sum_p_diff4, n, &mse, &mse_unc);
    r->dp_rms = sqrt(mse);
    r->dp_rms_err = r->dp_rms > 0 ? 0.5 / r->dp_rms * mse_unc : 0;
    r->same_top = n ? (double)r->n_same_top / (double)n : 0;
    r->same_top_err = n > 1 ? sqrt(r->same_top * (1 - r->same_top) / (double)(n - 1)) : 0;
    float *k = malloc((size_t)n * sizeof *k), *p = malloc((size_t)n * sizeof *p);
    if (n > 0 && k && p) {
        memcpy(k, r->kld_values, (size_t)n * sizeof *k);
        memcpy(p, r->p_diff_values, (size_t)n * sizeof *p);
        qsort(k, (size_t)n, sizeof *k, cmp_float);
        qsort(p, (size_t)n, sizeof *p, cmp_float);
        const size_t N = (size_t)n;
        r->kld_max = k[N - 1], r->kld_min = k[0], r->kld_median = median(k, N);
        r->kld_p999 = percentile(k, N, 0.999f), r->kld_p99 = percentile(k, N, 0.990f);
        r->kld_p10 = percentile(k, N, 0.100f), r->kld_p5 = percentile(k, N, 0.050f);
        r->kld_p1 = percentile(k, N, 0.010f);
        r->dp_max = p[N - 1], r->dp_min = p[0], r->dp_median = median(p, N);
        r->dp_p999 = percentile(p, N, 0.999f), r->dp_p99 = percentile(p, N, 0.990f);
        r->dp_p95 = percentile(p, N, 0.950f), r->dp_p90 = percentile(p, N, 0.900f);
        r->dp_p75 = percentile(p, N, 0.750f), r->dp_p25 = percentile(p, N, 0.250f);
        r->dp_p10 = percentile(p, N, 0.100f), r->dp_p5 = percentile(p, N, 0.050f);
        r->dp_p1 = percentile(p, N, 0.010f), r->dp_p01 = percentile(p, N, 0.001f);
    }
    free(k);
    free(p);
}

void pare_ppl_finish(pare_ppl_result *r) {
    const int64_t n = r->n_scored;
    const double per_chunk = r->n_chunks_done ? (double)n / r->n_chunks_done : 0;
    double cum = 0;
    for (int c = 0; c < r->n_chunks_done; c++) {
        cum += r->chunk_nll[c];
        r->chunk_ppl[c] = exp(cum / (per_chunk * (c + 1)));
    }
    r->ppl = r->ppl_err = 0;
    if (n > 0) {
        const double mean = r->nll_sum / (double)n, var = r->nll2_sum / (double)n - mean * mean;
        r->ppl = exp(mean);
        r->ppl_err = var > 0 && n > 1 ? r->ppl * sqrt(var / (double)(n - 1)) : 0;
    }
    if (r->has_kld) finish_kld(r);
}

void pare_ppl_result_free(pare_ppl_result *r) {
    if (!r) return;
    free(r->chunk_nll);
    free(r->chunk_ppl);
    free(r->kld_values);
    free(r->p_diff_values);
    r->chunk_nll = r->chunk_ppl = NULL;
    r->kld_values = r->p_diff_values = NULL;
}

/* ------------------------------------------------------------------------ merging */

static int cmp_first(const void *a, const void *b) {
    const pare_ppl_result *x = *(const pare_ppl_result *const *)a, *y = *(const pare_ppl_result *const *)b;
    return (x->first_chunk > y->first_chunk) - (x->first_chunk < y->first_chunk);
}

static pare_status merge_check(const pare_ppl_result **p, size_t n, pare_err *err) {
    for (size_t i = 0; i < n; i++) {
        FAIL_IF(p[i]->n_ctx != p[0]->n_ctx || p[i]->n_vocab != p[0]->n_vocab, PARE_EUSAGE,
                "part %zu: context %d / vocabulary %d differ from %d / %d", i, p[i]->n_ctx, p[i]->n_vocab,
                p[0]->n_ctx, p[0]->n_vocab);
        FAIL_IF(p[i]->has_kld != p[0]->has_kld, PARE_EUSAGE, "parts mix runs with and without KL divergence");
        FAIL_IF(p[i]->n_chunks_total != p[0]->n_chunks_total, PARE_EUSAGE,
                "parts come from texts of %d and %d chunks", p[i]->n_chunks_total, p[0]->n_chunks_total);
        FAIL_IF(p[i]->n_chunks_done < 1, PARE_EUSAGE, "part %zu has no chunk", i);
        if (i > 0) {
            int end = p[i - 1]->first_chunk + p[i - 1]->n_chunks_done;
            FAIL_IF(p[i]->first_chunk < end, PARE_EUSAGE, "chunk ranges overlap: chunk %d is in two parts",
                    p[i]->first_chunk + 1);
            FAIL_IF(p[i]->first_chunk > end, PARE_EUSAGE, "chunks %d..%d are in no part", end + 1, p[i]->first_chunk);
        }
    }
    return PARE_OK;
}

pare_status pare_ppl_merge(const pare_ppl_result *parts, size_t n_parts, pare_ppl_result *out, pare_err *err) {
    memset(out, 0, sizeof *out);
    FAIL_IF(n_parts < 1, PARE_EUSAGE, "nothing to merge");
    const pare_ppl_result **p = malloc(n_parts * sizeof *p);
    FAIL_IF(!p, PARE_ENOMEM, "out of memory");
    for (size_t i = 0; i < n_parts; i++) p[i] = &parts[i];
    qsort(p, n_parts, sizeof *p, cmp_first);
    pare_status st = merge_check(p, n_parts, err);
    int n_chunks = 0;
    for (size_t i = 0; i < n_parts && !st; i++) n_chunks += p[i]->n_chunks_done;
    const int n_score = st ? 0 : (int)(p[0]->n_scored / p[0]->n_chunks_done);
    if (!st) st = result_alloc(out, n_chunks, n_score, p[0]->has_kld, err);
    if (st) {
        free(p);
        pare_ppl_result_free(out);
        return st;
    }
    out->n_ctx = p[0]->n_ctx, out->n_vocab = p[0]->n_vocab, out->first_chunk = p[0]->first_chunk;
    out->n_chunks_total = p[0]->n_chunks_total, out->has_kld = p[0]->has_kld;
    for (size_t i = 0; i < n_parts; i++) {
        const pare_ppl_result *r = p[i];
        memcpy(out->chunk_nll + out->n_chunks_done, r->chunk_nll, (size_t)r->n_chunks_done * sizeof(double));
        if (r->has_kld) {
            memcpy(out->kld_values + out->n_scored, r->kld_values, (size_t)r->n_scored * sizeof(float));
            memcpy(out->p_diff_values + out->n_scored, r->p_diff_values, (size_t)r->n_scored * sizeof(float));
        }
        out->n_chunks_done += r->n_chunks_done;
        out->n_scored += r->n_scored;
        out->nll_sum += r->nll_sum, out->nll2_sum += r->nll2_sum;
        out->sum_nll_base += r->sum_nll_base, out->sum_nll_base2 += r->sum_nll_base2;
        out->sum_nll_base_exact += r->sum_nll_base_exact;
        out->sum_nll_nll_base += r->sum_nll_nll_base;
        out->sum_kld += r->sum_kld, out->sum_kld2 += r->sum_kld2;
        out->sum_p_diff += r->sum_p_diff, out->sum_p_diff2 += r->sum_p_diff2, out->sum_p_diff4 += r->sum_p_diff4;
        if (r->max_p_diff > out->max_p_diff) out->max_p_diff = r->max_p_diff;
        out->n_same_top += r->n_same_top;
    }
    free(p);
    pare_ppl_finish(out);
    return PARE_OK;
}
