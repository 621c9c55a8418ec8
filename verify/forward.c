/*
 * verify/forward.c - the forward pass, computed the way llama.cpp's CPU backend computes it
 * (src/llama.cpp's build_* functions on ggml-cpu), over a whole sequence at once, for the
 * features the architecture table lists (core/arch.h, pare_arch_fwd):
 *
 *   x = token_embd[tokens] (* sqrt(n_embd): EMBD_SCALE) (+ position_embd: ROPE_NONE)
 *   per layer:  h = norm(x) * attn_norm (+ b)                          (none: NO_PRE_NORM)
 *               q, k, v = h Wq^T (+bq), ...  or split from h Wqkv^T (+bqkv)
 *               q, k = qk_norm(q), qk_norm(k)                          (when the file has them)
 *               rope(q), rope(k) on the first n_rot values of each head (NORM or NEOX pairs)
 *               q *= 1/sqrt(head) (Q_PRESCALE; then the softmax scale is 1)
 *               s = q k^T (f16 cache); s = cap tanh(s / cap) (SOFTCAP); window mask (SWA)
 *               a = softmax(s * kq_scale + causal mask) v Wo^T (+bo) (post norm: POST_NORM)
 *     sequential:  x += a;  x += post(ffn(norm(x) * ffn_norm (+ b)))
 *     parallel:    x = (ffn(n) + x) + a  with n the attention's norm (PARALLEL) or its own
 *                  (PARALLEL_2NORM); phi2 (PAR_ATTN_FFN): x = (a + ffn(n)) + x
 *     ffn:  SWIGLU down(silu(gate) * up), GEGLU down(gelu(gate) * up), GELU down(gelu(up)),
 *           gate and up from one ffn_up (FUSED_GATE_UP), or the experts (verify/moe.c)
 *   logits = norm(x) * output_norm (+ b) Wout^T (+ output.bias) (* logit_scale) (soft-capped)
 *
 * Buffers are row-major [token][feature]; matrix products run over all tokens at once
 * (verify/gemm.c in f32, qgemm.c / kgemm.c in integers). With ggml rounding on (the default)
 * the inputs of each product are rounded as ggml does before its dot products (see llm.h),
 * which brings the logits within float noise of llama.cpp's; for weights that round
 * activations to 8 bits, the float steps also follow ggml-cpu's order for the instruction set
 * of the build (AVX-512, or AVX2 with FMA and F16C), which gives llama.cpp's logits exactly.
 */
#include "verify/llm_impl.h"

#include "core/arch.h"
#include "quant/quant.h"

#include <cblas.h>
#include <math.h>
#if defined(__AVX512F__) || defined(__F16C__)
#include <immintrin.h>
#endif
/* The AVX2 twins of the AVX-512 paths below follow what ggml-cpu does on a machine with AVX2,
 * FMA and F16C but no AVX-512 (8 lanes where it has 16, its other expf). */
#if !defined(__AVX512F__) && defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#define FWD_AVX2 1
#endif
#include <stdlib.h>
#include <string.h>

/* Rows of attention scores computed at once per head: bounds the score buffer to
 * ATT_BLOCK x T floats per thread and lets causal blocks skip the keys after them. */
#define ATT_BLOCK 128

/* ------------------------------------------------------------------------ activation rounding */

/* The type ggml converts activations to before multiplying with a weight of type w
 * (ggml-cpu's type_traits_cpu[w].vec_dot_type). */
static pare_type act_type(pare_type w) {
    const pare_quant_traits *q = pare_quant_get(w);
    const pare_type t = q ? q->vec_dot_type : PARE_TYPE_F32;
    return t == PARE_TYPE_Q8_1 ? PARE_TYPE_Q8_0 : t; /* Q8_1 rounds as Q8_0 (it adds a sum) */
}

static float round_f16(float x) { return pare_fp16_to_fp32(pare_fp32_to_fp16(x)); }

/* y = x rounded to f16 (nearest even), n values; vectorized where F16C is there. */
static void round_f16_n(const float *x, float *y, int64_t n) {
    int64_t i = 0;
#if defined(__AVX512F__)
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(y + i, _mm512_cvtph_ps(_mm512_cvtps_ph(_mm512_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT)));
#elif defined(__F16C__)
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_cvtph_ps(_mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT)));
#endif
    for (; i < n; i++) y[i] = round_f16(x[i]);
}

static void round_row(pare_type at, const float *x, float *y, int64_t n) {
    switch (at) {
    case PARE_TYPE_F16: round_f16_n(x, y, n); break;
    case PARE_TYPE_BF16:
        for (int64_t i = 0; i < n; i++) y[i] = pare_bf16_to_fp32(pare_fp32_to_bf16(x[i]));
        break;
    case PARE_TYPE_Q8_0: llm_round_q8_0(x, y, n); break;
    case PARE_TYPE_Q8_K: llm_round_q8_K(x, y, n); break;
    default: memcpy(y, x, (size_t)n * sizeof *y); break;
    }
}

/* ------------------------------------------------------------------------ row jobs */

/* One parallel job over the token rows of the activations; `op` says what to do. */
typedef enum {
    OP_RMS_NORM,
    OP_LAYER_NORM,
    OP_ROUND,
    OP_BIAS,
    OP_ADD,
    OP_SWIGLU, /* dst = silu(dst) * src */
    OP_GELU,   /* dst = gelu(dst) */
    OP_GEGLU,  /* dst = gelu(dst) * src */
    OP_ROPE,
    OP_SCALE,   /* dst *= scale */
    OP_SOFTCAP, /* dst = tanh(dst / scale) * scale */
    OP_COPY,    /* dst = src */
} row_op;

typedef struct {
    const pare_llm *llm;
    row_op op;
    int64_t n;        /* elements per row */
    const float *src; /* row r at src + r * ld_src */
    float *dst;       /* row r at dst + r * ld_dst */
    int64_t ld_src, ld_dst;
    const float *w, *b; /* norm weight / bias, or the bias / second operand */
    pare_type at;       /* OP_ROUND */
    int n_heads;        /* OP_ROPE: heads of n_embd_head in the row */
    int pos0;           /* OP_ROPE: position of row 0 */
    int period;         /* OP_ROPE: rows of one sequence when several follow each other, else 0 */
    const float *cache; /* OP_ROPE: cos, sin per position (llm->rope, or rope_swa for a sliding-window layer) */
    float scale;        /* OP_SCALE, OP_SOFTCAP */
} row_job;

static void rms_norm_row(const float *x, float *y, int64_t n, float eps, const float *w) {
    /* ggml sums the float squares in double, then works in float. The double sum is kept in
     * eight lanes here: its order moves it by about 1e-16, which the float mean cannot show
     * except by a coincidence of about 2^-29 per row. */
    double sum = 0;
    int64_t i = 0;
#if defined(__AVX512F__)
    __m512d acc = _mm512_setzero_pd();
    for (; i + 8 <= n; i += 8) {
        const __m256 v = _mm256_loadu_ps(x + i);
        acc = _mm512_add_pd(acc, _mm512_cvtps_pd(_mm256_mul_ps(v, v)));
    }
    sum = _mm512_reduce_add_pd(acc);
#elif defined(FWD_AVX2)
    __m256d a0 = _mm256_setzero_pd(), a1 = a0;
    for (; i + 8 <= n; i += 8) {
        const __m256 v = _mm256_loadu_ps(x + i), v2 = _mm256_mul_ps(v, v);
        a0 = _mm256_add_pd(a0, _mm256_cvtps_pd(_mm256_castps256_ps128(v2)));
        a1 = _mm256_add_pd(a1, _mm256_cvtps_pd(_mm256_extractf128_ps(v2, 1)));
    }
    a0 = _mm256_add_pd(a0, a1);
    const __m128d h = _mm_add_pd(_mm256_castpd256_pd128(a0), _mm256_extractf128_pd(a0, 1));
    sum = _mm_cvtsd_f64(_mm_add_sd(h, _mm_unpackhi_pd(h, h)));
#endif
    for (; i < n; i++) sum += (double)(x[i] * x[i]);
    const float mean = (float)(sum / (double)n), scale = 1.0f / sqrtf(mean + eps);
    i = 0;
#if defined(__AVX512F__)
    const __m512 vs = _mm512_set1_ps(scale);
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(y + i, _mm512_mul_ps(_mm512_mul_ps(_mm512_loadu_ps(x + i), vs), _mm512_loadu_ps(w + i)));
#elif defined(FWD_AVX2)
    const __m256 vs = _mm256_set1_ps(scale);
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(x + i), vs), _mm256_loadu_ps(w + i)));
#endif
    for (; i < n; i++) y[i] = (x[i] * scale) * w[i];
}

/* d[i] += s[i] */
static void add_row(float *d, const float *s, int64_t n) {
    int64_t i = 0;
#if defined(__AVX512F__)
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(d + i, _mm512_add_ps(_mm512_loadu_ps(d + i), _mm512_loadu_ps(s + i)));
#elif defined(FWD_AVX2)
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(d + i, _mm256_add_ps(_mm256_loadu_ps(d + i), _mm256_loadu_ps(s + i)));
#endif
    for (; i < n; i++) d[i] += s[i];
}

static void layer_norm_row(const float *x, float *y, int64_t n, float eps, const float *w, const float *b) {
    double sum = 0;
    for (int64_t i = 0; i < n; i++) sum += (double)x[i];
    const float mean = (float)(sum / (double)n);
    double sum2 = 0;
    for (int64_t i = 0; i < n; i++) {
        float v = x[i] - mean;
        y[i] = v;
        sum2 += (double)(v * v);
    }
    const float scale = 1.0f / sqrtf((float)(sum2 / (double)n) + eps);
    /* ggml_norm, then ggml_mul by w and ggml_add of b: three roundings, in that order */
    if (b)
        for (int64_t i = 0; i < n; i++) y[i] = y[i] * scale * w[i] + b[i];
    else
        for (int64_t i = 0; i < n; i++) y[i] = y[i] * scale * w[i];
}

static float silu(float x) { return x / (1.0f + expf(-x)); }

#if defined(__AVX512F__)
/* The sum of 16 lanes in the tree _mm512_reduce_add_ps uses (halves, then quarters, then
 * pairs): ggml's and tinyBLAS's final sums. */
static inline float sum16(__m512 a) {
    const __m256 h = _mm256_add_ps(_mm512_castps512_ps256(a), _mm512_extractf32x8_ps(a, 1));
    const __m128 q = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
    const __m128 p = _mm_add_ps(q, _mm_movehl_ps(q, q));
    return _mm_cvtss_f32(_mm_add_ss(p, _mm_movehdup_ps(p)));
}
#endif

/* d[i] = silu(d[i]) * s[i] */
static void swiglu_row(float *d, const float *s, int64_t n) {
    int64_t i = 0;
#if defined(__AVX512F__)
    const __m512 one = _mm512_set1_ps(1.0f);
    for (; i + 16 <= n; i += 16) {
        const __m512 x = _mm512_loadu_ps(d + i);
        const __m512 sx = _mm512_div_ps(x, _mm512_add_ps(one, llm_exp16(_mm512_sub_ps(_mm512_setzero_ps(), x))));
        _mm512_storeu_ps(d + i, _mm512_mul_ps(sx, _mm512_loadu_ps(s + i)));
    }
#elif defined(FWD_AVX2)
    /* ggml_vec_silu_f32's AVX2 loop (ggml_v_silu: x / (1 + e^-x) with the __m256 expf), 8 at
     * a time, then libm's expf for the last n % 8 */
    const __m256 one = _mm256_set1_ps(1.0f);
    for (; i + 8 <= n; i += 8) {
        const __m256 x = _mm256_loadu_ps(d + i);
        const __m256 sx = _mm256_div_ps(x, _mm256_add_ps(one, llm_exp8(_mm256_sub_ps(_mm256_setzero_ps(), x))));
        _mm256_storeu_ps(d + i, _mm256_mul_ps(sx, _mm256_loadu_ps(s + i)));
    }
#endif
    for (; i < n; i++) d[i] = silu(d[i]) * s[i];
}

/* SwiGLU over M rows of F values (verify/moe.c's experts): the dense FFN's vector loops, so
 * that expert activations round to 8-bit blocks next exactly as llama.cpp's do. */
void llm_swiglu_rows(float *d, const float *s, int M, int64_t F) {
    for (int m = 0; m < M; m++) swiglu_row(d + (size_t)m * F, s + (size_t)m * F, F);
}

/* ggml_gelu (tanh approximation); with rounding, through ggml's f16 table: the input is
 * rounded to f16 and so is the result. */
static float gelu(float x, bool f16_table) {
    const float c = 0.79788456080286535587989211986876f, a = 0.044715f;
    if (!f16_table) return 0.5f * x * (1.0f + tanhf(c * x * (1.0f + a * x * x)));
    if (x <= -10.0f) return 0.0f;
    if (x >= 10.0f) return x;
    float h = round_f16(x);
    return round_f16(0.5f * h * (1.0f + tanhf(c * h * (1.0f + a * h * h))));
}

/* d[i] = gelu(d[i]) (* s[i] when s is not NULL) as ggml_vec_gelu_f32 with GGML_GELU_FP16:
 * 0 at or below -10, x at or above 10, else the table at x rounded to f16 (tab); tab NULL:
 * the plain formula in f32. */
static void gelu_row(float *d, const float *s, int64_t n, const float *tab) {
    int64_t i = 0;
    if (!tab) {
        for (; i < n; i++) d[i] = gelu(d[i], false) * (s ? s[i] : 1.0f);
        return;
    }
#if defined(__AVX512F__)
    const __m512 lo = _mm512_set1_ps(-10.0f), hi = _mm512_set1_ps(10.0f);
    for (; i + 16 <= n; i += 16) {
        const __m512 x = _mm512_loadu_ps(d + i);
        const __m512i h = _mm512_cvtepu16_epi32(_mm512_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT));
        __m512 g = _mm512_i32gather_ps(h, tab, 4);
        g = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x, hi, _CMP_GE_OQ), g, x);
        g = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(x, lo, _CMP_NLE_UQ), g);
        if (s) g = _mm512_mul_ps(g, _mm512_loadu_ps(s + i));
        _mm512_storeu_ps(d + i, g);
    }
#elif defined(FWD_AVX2)
    const __m256 lo = _mm256_set1_ps(-10.0f), hi = _mm256_set1_ps(10.0f);
    for (; i + 8 <= n; i += 8) {
        const __m256 x = _mm256_loadu_ps(d + i);
        const __m256i h = _mm256_cvtepu16_epi32(_mm256_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT));
        __m256 g = _mm256_i32gather_ps(tab, h, 4);
        g = _mm256_blendv_ps(g, x, _mm256_cmp_ps(x, hi, _CMP_GE_OQ));
        g = _mm256_and_ps(g, _mm256_cmp_ps(x, lo, _CMP_NLE_UQ));
        if (s) g = _mm256_mul_ps(g, _mm256_loadu_ps(s + i));
        _mm256_storeu_ps(d + i, g);
    }
#endif
    for (; i < n; i++) {
        const float x = d[i];
        const float g = x <= -10.0f ? 0.0f : x >= 10.0f ? x : tab[pare_fp32_to_fp16(x)];
        d[i] = s ? g * s[i] : g;
    }
}

/* Rotates the pairs of every head of one row at position pos (cache: cos, sin per pair). */
static void rope_row(const pare_llm *llm, float *x, int n_heads, const float *cache) {
    const int hd = llm->n_embd_head, nr = llm->n_rot;
    for (int h = 0; h < n_heads; h++) {
        float *v = x + (size_t)h * hd;
        int i0 = 0;
#if defined(__AVX512F__)
        /* adjacent pairs, eight at a time: lanes (x0, x1) against the cache's (cos, sin);
         * the same fma and products as the loop below, lane by lane */
        const __m512 neg_even = _mm512_castsi512_ps(_mm512_set1_epi64((int64_t)0x80000000));
        for (; !llm->rope_neox && i0 + 16 <= nr; i0 += 16) {
            const __m512 xv = _mm512_loadu_ps(v + i0), cs = _mm512_loadu_ps(cache + i0);
            const __m512 sc = _mm512_permute_ps(cs, 0xB1); /* (sin, cos) */
            const __m512 t = _mm512_xor_ps(_mm512_mul_ps(_mm512_movehdup_ps(xv), sc), neg_even);
            _mm512_storeu_ps(v + i0, _mm512_fmadd_ps(_mm512_moveldup_ps(xv), cs, t));
        }
#elif defined(FWD_AVX2)
        const __m256 neg_even = _mm256_castsi256_ps(_mm256_set1_epi64x((int64_t)0x80000000));
        for (; !llm->rope_neox && i0 + 8 <= nr; i0 += 8) {
            const __m256 xv = _mm256_loadu_ps(v + i0), cs = _mm256_loadu_ps(cache + i0);
            const __m256 sc = _mm256_permute_ps(cs, 0xB1); /* (sin, cos) */
            const __m256 t = _mm256_xor_ps(_mm256_mul_ps(_mm256_movehdup_ps(xv), sc), neg_even);
            _mm256_storeu_ps(v + i0, _mm256_fmadd_ps(_mm256_moveldup_ps(xv), cs, t));
        }
#endif
        for (; i0 < nr; i0 += 2) {
            const float c = cache[i0], s = cache[i0 + 1];
            float *a = llm->rope_neox ? v + i0 / 2 : v + i0;
            float *b = llm->rope_neox ? v + i0 / 2 + nr / 2 : v + i0 + 1;
            const float x0 = *a, x1 = *b;
            /* ggml's rope is C compiled by GCC with its default -ffp-contract=fast, which
             * fuses the first product of each line into an fma; the same here, because one
             * ulp in q or k can survive their rounding to f16 and then an 8-bit block. */
            *a = fmaf(x0, c, -(x1 * s));
            *b = fmaf(x0, s, x1 * c);
        }
    }
}

static void row_run(void *ctx, int64_t r, int thread) {
    (void)thread;
    const row_job *j = ctx;
    const float *s = j->src ? j->src + r * j->ld_src : NULL;
    float *d = j->dst + r * j->ld_dst;
    const int64_t n = j->n;
    switch (j->op) {
    case OP_RMS_NORM: rms_norm_row(s, d, n, j->llm->norm_eps, j->w); break;
    case OP_LAYER_NORM: layer_norm_row(s, d, n, j->llm->norm_eps, j->w, j->b); break;
    case OP_ROUND: round_row(j->at, s, d, n); break;
    case OP_BIAS: add_row(d, j->b, n); break;
    case OP_ADD: add_row(d, s, n); break;
    case OP_SWIGLU: swiglu_row(d, s, n); break;
    case OP_GELU: gelu_row(d, NULL, n, j->llm->ggml_round ? j->llm->gelu_tab : NULL); break;
    case OP_GEGLU: gelu_row(d, s, n, j->llm->ggml_round ? j->llm->gelu_tab : NULL); break;
    case OP_SCALE:
        for (int64_t i = 0; i < n; i++) d[i] *= j->scale;
        break;
    case OP_SOFTCAP: {
        const float inv = 1.0f / j->scale;
        for (int64_t i = 0; i < n; i++) d[i] = tanhf(d[i] * inv) * j->scale;
        break;
    }
    case OP_COPY: memcpy(d, s, (size_t)n * sizeof *d); break;
    case OP_ROPE: {
        const int64_t pos = j->period ? (r + j->pos0) % j->period : r + j->pos0;
        rope_row(j->llm, d, j->n_heads, j->cache + pos * j->llm->n_rot);
        break;
    }
    }
}

static void rows(const pare_llm *llm, row_op op, int T, int64_t n, const float *src, int64_t ld_src, float *dst,
                 int64_t ld_dst, const float *w, const float *b) {
    row_job j = {.llm = llm, .op = op, .n = n, .src = src, .dst = dst, .ld_src = ld_src, .ld_dst = ld_dst, .w = w, .b = b};
    pare_pool_for(llm->pool, T, row_run, &j);
}

/* ------------------------------------------------------------------------ products */

/* Weights with an integer product (llm_qgemm_handles, llm_kgemm_handles, llm_iqgemm_handles) in memory, with
 * ggml's roundings: integer products straight from the codes, in llama.cpp's order.
 * PARE_EUNSUPPORTED: not possible here (no memory for the K-quant tiles); the caller takes
 * the f32 path. */
static pare_status linear_int(pare_llm *llm, const llm_mat *w, const float *x, int T, float *y, const float *bias,
                              pare_err *err) {
    const bool q8 = llm_qgemm_handles(w->t->type), iq = llm_iqgemm_handles(w->t->type);
    const size_t ws = q8   ? llm_qgemm_ws(T, (int)w->n_in)
                      : iq ? llm_iqgemm_ws(T, (int)w->n_in)
                           : llm_kgemm_ws(T, (int)w->n_in);
    FAIL_IF(!llm_ws_reserve(&llm->qws, &llm->qws_cap, ws), PARE_ENOMEM, "%s: out of memory for quantized activations",
            llm->name);
    const size_t ldw = pare_type_row_size(w->t->type, w->n_in);
    const bool done = q8 ? llm_qgemm(llm->pool, w->t->type, T, (int)w->n_out, (int)w->n_in, x, (int)w->n_in,
                                     w->t->data, ldw, y, (int)w->n_out, llm->qws)
                         : iq ? llm_iqgemm(llm->pool, w->t->type, T, (int)w->n_out, (int)w->n_in, x, (int)w->n_in,
                                           w->t->data, y, (int)w->n_out, llm->qws)
                              : llm_kgemm(llm->pool, w->t->type, T, (int)w->n_out, (int)w->n_in, x, (int)w->n_in,
                                          w->t->data, y, (int)w->n_out, llm->qws);
    if (!done) return PARE_EUNSUPPORTED;
    if (bias) rows(llm, OP_BIAS, T, w->n_out, NULL, 0, y, w->n_out, NULL, bias);
    return PARE_OK;
}

/* Whether a weight goes through the integer products: in memory, rows of whole blocks. */
static bool has_int_product(const llm_mat *w) {
    const pare_type t = w->t->type;
    if (!w->t->data) return false;
    if (llm_qgemm_handles(t)) return w->n_in % 32 == 0;
    return (llm_kgemm_handles(t) || llm_iqgemm_handles(t)) && w->n_in % 256 == 0;
}

static bool linear_f32_ggml(pare_llm *llm, const llm_mat *w, const float *x, int T, float *y);

/* y[T][n_out] = x[T][n_in] W^T (+ bias). name: the weight's GGUF name for the hook. A weight
 * that needs converting is converted in blocks of at most llm->wblock values. */
static pare_status linear(pare_llm *llm, const char *name, const llm_mat *w, const float *x, int T, float *y,
                          const float *bias, pare_err *err) {
    if (llm->hook) llm->hook(llm->hook_user, name, x, T, (int)w->n_in);
    if (llm->ggml_round && has_int_product(w)) {
        pare_status st = linear_int(llm, w, x, T, y, bias, err);
        if (st != PARE_EUNSUPPORTED) return st; /* else: no memory for it; the f32 way below */
    }
    if (llm->ggml_round && llm->f32_exact && w->t->type == PARE_TYPE_F32 && linear_f32_ggml(llm, w, x, T, y)) {
        if (bias) rows(llm, OP_BIAS, T, w->n_out, NULL, 0, y, w->n_out, NULL, bias);
        return PARE_OK;
    }
    const pare_type at = act_type(w->t->type);
    const float *xin = x;
    if (llm->ggml_round && at != PARE_TYPE_F32) {
        row_job j = {.llm = llm, .op = OP_ROUND, .n = w->n_in, .src = x, .dst = llm->tmp, .ld_src = w->n_in,
                     .ld_dst = w->n_in, .at = at};
        pare_pool_for(llm->pool, T, row_run, &j);
        xin = llm->tmp;
    }
    const int n_in = (int)w->n_in, n_out = (int)w->n_out;
    const bool in_place = w->t->type == PARE_TYPE_F32 && w->t->data;
    int64_t block = in_place ? n_out : (int64_t)(llm->wblock / (size_t)n_in);
    if (block < 1) block = 1;
    /* without it (no memory) llm_gemm_nt allocates its own */
    llm_ws_reserve((void **)&llm->gws, &llm->gws_cap, llm_gemm_ws(T, n_in) * sizeof(float));
    if (w->packed) llm_gemm_nt_packed(llm->pool, T, n_out, n_in, xin, n_in, w->packed, y, n_out, llm->gws);
    for (int64_t r0 = 0; !w->packed && r0 < n_out; r0 += block) {
        const int64_t r1 = r0 + block < n_out ? r0 + block : n_out;
        const float *W;
        TRY(llm_weight_f32(llm, w, r0, r1, &W, err));
        llm_gemm_nt(llm->pool, T, (int)(r1 - r0), n_in, xin, n_in, W, n_in, y + r0, n_out, llm->gws);
    }
    if (bias) rows(llm, OP_BIAS, T, n_out, NULL, 0, y, n_out, NULL, bias);
    return PARE_OK;
}

/* cos/sin of every rotated pair at positions 0..T-1, as ggml_rope_cache_init computes them:
 * theta multiplied by freq_base^(-2/n_rot) from pair to pair, in float. */
static void rope_cache_fill(const pare_llm *llm, float *cache, float base, float scale, int T) {
    const int nr = llm->n_rot;
    const float theta_scale = powf(base, -2.0f / (float)nr);
    for (int p = 0; p < T; p++) {
        float theta = (float)p, *c = cache + (size_t)p * nr;
        for (int i0 = 0; i0 < nr; i0 += 2) {
            const float ff = llm->rope_freqs ? llm->rope_freqs[i0 / 2] : 1.0f;
            const float t = scale * (theta / ff);
            c[i0] = cosf(t);
            c[i0 + 1] = sinf(t);
            theta *= theta_scale;
        }
    }
}

/* Whether sliding-window layers rotate with a base or scale of their own (gemma3). */
static bool rope_swa_own(const pare_llm *llm) {
    return llm->rope_freq_base_swa != llm->rope_freq_base || llm->rope_freq_scale_swa != llm->rope_freq_scale;
}

static void rope_cache(pare_llm *llm, int T) {
    rope_cache_fill(llm, llm->rope, llm->rope_freq_base, llm->rope_freq_scale, T);
    if (rope_swa_own(llm)) rope_cache_fill(llm, llm->rope_swa, llm->rope_freq_base_swa, llm->rope_freq_scale_swa, T);
}

/* ------------------------------------------------------------------------ attention */

typedef struct {
    pare_llm *llm;
    int T, r0;      /* per sequence: keys 0..T-1, queries r0..T-1 */
    const float *q; /* head h at q + h * n_embd_head, row stride ldq */
    int64_t ldq;
    int bl;         /* rows per block: min(T, ATT_BLOCK) */
    float *buf;     /* per thread: scores [bl][T], v transposed [n_embd_head][T], gemm workspace */
    size_t per_thread;
    int n_head, n_head_kv; /* the layer's */
    int n_swa;             /* > 0: query p sees keys p - n_swa < t <= p only */
} att_job;

/* What ggml does to a row of scores before its softmax (query at pos): soft-capping
 * cap * tanh(s / cap) (ggml_scale, ggml_tanh, ggml_scale), then the sliding window's mask,
 * whose -inf keys become 0 in the softmax (e^-inf; their lanes then add nothing to ggml's
 * sums either). */
static void score_fix(const att_job *j, float *s, int pos) {
    const float cap = j->llm->attn_softcap;
    /* keys outside a sliding window are masked whatever their score: no tanh for them */
    int t0 = 0;
    if (j->n_swa > 0)
        for (; t0 <= pos - j->n_swa; t0++) s[t0] = -INFINITY;
    if (cap > 0) {
        const float inv = 1.0f / cap;
        for (int t = t0; t <= pos; t++) s[t] = tanhf(s[t] * inv) * cap;
    }
}

/* Causal softmax of one score row (position pos sees keys 0..pos), as ggml's soft_max_ext:
 * scale, max, e^(x - max) 16 keys at a time from key 0 (the masked keys after pos are 0),
 * each group's sum (sum16) added in double, then a float scale. Masked keys get 0. */
static void softmax_row(float *s, int pos, int n_cols, float scale, bool f16) {
    float max = -INFINITY;
    double sum = 0;
#if defined(__AVX512F__)
    __m512 vm = _mm512_set1_ps(-INFINITY);
    const __m512 vscale = _mm512_set1_ps(scale);
    for (int i = 0; i <= pos; i += 16) {
        const __mmask16 m = llm_lanes16(pos + 1 - i);
        const __m512 x = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, s + i), vscale);
        _mm512_mask_storeu_ps(s + i, m, x);
        vm = _mm512_mask_max_ps(vm, m, vm, x);
    }
    max = _mm512_reduce_max_ps(vm);
    const __m512 vmax = _mm512_set1_ps(max);
    for (int i = 0; i <= pos; i += 16) {
        const __mmask16 m = llm_lanes16(pos + 1 - i);
        const __m512 e = _mm512_maskz_mov_ps(m, llm_exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, s + i), vmax)));
        _mm512_mask_storeu_ps(s + i, m, e);
        sum += (double)sum16(e);
    }
    const float inv = (float)(1.0 / sum);
    const __m512 vinv = _mm512_set1_ps(inv);
    for (int i = 0; i <= pos; i += 16) {
        const __mmask16 m = llm_lanes16(pos + 1 - i);
        _mm512_mask_storeu_ps(s + i, m, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, s + i), vinv));
    }
#elif defined(FWD_AVX2)
    /* ggml_vec_soft_max_f32's AVX2 loop: 8 keys at a time, each group's sum (llm_hsum8v) added
     * in double; llama.cpp's row of keys is a multiple of 32 long, so no key takes its scalar
     * tail. Lanes past pos are masked (they are e^-inf = 0 in ggml's row). */
    const __m256i iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256 ninf = _mm256_set1_ps(-INFINITY), vscale = _mm256_set1_ps(scale);
    __m256 vm = ninf;
    for (int i = 0; i <= pos; i += 8) {
        const __m256i m = _mm256_cmpgt_epi32(_mm256_set1_epi32(pos + 1 - i), iota);
        const __m256 x = _mm256_mul_ps(_mm256_maskload_ps(s + i, m), vscale);
        _mm256_maskstore_ps(s + i, m, x);
        vm = _mm256_max_ps(vm, _mm256_blendv_ps(ninf, x, _mm256_castsi256_ps(m)));
    }
    __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(vm), _mm256_extractf128_ps(vm, 1));
    m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    max = _mm_cvtss_f32(_mm_max_ss(m4, _mm_movehdup_ps(m4)));
    const __m256 vmax = _mm256_set1_ps(max);
    for (int i = 0; i <= pos; i += 8) {
        const __m256i m = _mm256_cmpgt_epi32(_mm256_set1_epi32(pos + 1 - i), iota);
        const __m256 e = _mm256_and_ps(llm_exp8(_mm256_sub_ps(_mm256_maskload_ps(s + i, m), vmax)),
                                       _mm256_castsi256_ps(m));
        _mm256_maskstore_ps(s + i, m, e);
        sum += (double)llm_hsum8v(e);
    }
    const float inv = (float)(1.0 / sum);
    const __m256 vinv = _mm256_set1_ps(inv);
    for (int i = 0; i <= pos; i += 8) {
        const __m256i m = _mm256_cmpgt_epi32(_mm256_set1_epi32(pos + 1 - i), iota);
        _mm256_maskstore_ps(s + i, m, _mm256_mul_ps(_mm256_maskload_ps(s + i, m), vinv));
    }
#else
    for (int i = 0; i <= pos; i++) {
        s[i] *= scale;
        if (s[i] > max) max = s[i];
    }
    for (int i = 0; i <= pos; i++) {
        s[i] = expf(s[i] - max);
        sum += (double)s[i];
    }
    const float inv = (float)(1.0 / sum);
    for (int i = 0; i <= pos; i++) s[i] *= inv;
#endif
    if (f16) round_f16_n(s, s, pos + 1);
    for (int i = pos + 1; i < n_cols; i++) s[i] = 0;
}

#if defined(__AVX512F__)
/* The attention products as llamafile's tinyBLAS computes them for f16 operands on AVX-512:
 * each output is 16 lanes, lane l accumulating the products of elements l, l + 16, ... with
 * fma, then sum16. q, k, v and the probabilities already hold f16 values, so the products
 * are exact and only this order decides the rounding. n and the strides are multiples of 16;
 * padding holds zeros. */
static inline float dot16(const float *a, const float *b, int n) {
    __m512 acc = _mm512_mul_ps(_mm512_loadu_ps(a), _mm512_loadu_ps(b));
    for (int l = 16; l < n; l += 16) acc = _mm512_fmadd_ps(_mm512_loadu_ps(a + l), _mm512_loadu_ps(b + l), acc);
    return sum16(acc);
}

/* sum16 of 16 registers at once, into one register in order: the same pairs at each level
 * (lane i + i+8, then + i+4, then + i+2, then + i+1), gathered across registers by shuffles
 * so that every add does 16 useful sums. The last level leaves sum k in lane 4 (k % 4) + k / 4. */
static inline __m512 sum16x16(const __m512 a[16]) {
    __m512 c[8], d[4], e[2];
    for (int p = 0; p < 8; p++)
        c[p] = _mm512_add_ps(_mm512_shuffle_f32x4(a[2 * p], a[2 * p + 1], 0x44),
                             _mm512_shuffle_f32x4(a[2 * p], a[2 * p + 1], 0xEE));
    for (int q = 0; q < 4; q++)
        d[q] = _mm512_add_ps(_mm512_shuffle_f32x4(c[2 * q], c[2 * q + 1], 0x88),
                             _mm512_shuffle_f32x4(c[2 * q], c[2 * q + 1], 0xDD));
    for (int r = 0; r < 2; r++)
        e[r] = _mm512_add_ps(_mm512_shuffle_ps(d[2 * r], d[2 * r + 1], 0x44), _mm512_shuffle_ps(d[2 * r], d[2 * r + 1], 0xEE));
    const __m512 f = _mm512_add_ps(_mm512_shuffle_ps(e[0], e[1], 0x88), _mm512_shuffle_ps(e[0], e[1], 0xDD));
    return _mm512_permutexvar_ps(_mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15), f);
}

/* s[t] = dot16(q, k_t) for 16 keys t0.. (rows ldk apart), n <= 64. */
static inline void kq16(const float *q, const float *k, int64_t ldk, int n, float *s) {
    __m512 acc[16];
    const int nc = n / 16;
    __m512 qv[4];
    for (int c = 0; c < nc; c++) qv[c] = _mm512_loadu_ps(q + 16 * c);
    for (int t = 0; t < 16; t++) {
        const float *kt = k + (int64_t)t * ldk;
        acc[t] = _mm512_mul_ps(qv[0], _mm512_loadu_ps(kt));
        for (int c = 1; c < nc; c++) acc[t] = _mm512_fmadd_ps(qv[c], _mm512_loadu_ps(kt + 16 * c), acc[t]);
    }
    _mm512_storeu_ps(s, sum16x16(acc));
}

/* out[d] = dot16(p, vt_d, n) for 16 rows d of vt (ldv apart). */
static inline void pv16(const float *p, const float *vt, int64_t ldv, int n, float *out) {
    __m512 acc[16];
    const __m512 p0 = _mm512_loadu_ps(p);
    for (int d = 0; d < 16; d++) acc[d] = _mm512_mul_ps(p0, _mm512_loadu_ps(vt + (int64_t)d * ldv));
    for (int l = 16; l < n; l += 16) {
        const __m512 pl = _mm512_loadu_ps(p + l);
        for (int d = 0; d < 16; d++) acc[d] = _mm512_fmadd_ps(pl, _mm512_loadu_ps(vt + (int64_t)d * ldv + l), acc[d]);
    }
    _mm512_storeu_ps(out, sum16x16(acc));
}
#define ATT_LANES 16
#define ATT_KQ_MAX_HD 64 /* kq16 keeps q in four registers */
#define att_dot dot16
#define att_kq kq16
#define att_pv pv16
#elif defined(FWD_AVX2)
/* The attention products as tinyBLAS computes them for f16 operands on AVX2 (KN = 8): each
 * output is 8 lanes, lane l accumulating with fma the products of elements l, l + 8, ...,
 * then llm_hsum8v. As in dot16, the products of f16 values are exact and n, the strides and
 * the zero padding are multiples of 8. */
static inline float dot8(const float *a, const float *b, int n) {
    __m256 acc = _mm256_mul_ps(_mm256_loadu_ps(a), _mm256_loadu_ps(b));
    for (int l = 8; l < n; l += 8) acc = _mm256_fmadd_ps(_mm256_loadu_ps(a + l), _mm256_loadu_ps(b + l), acc);
    return llm_hsum8v(acc);
}

/* llm_hsum8v of 8 registers at once, into one register in order: the same pairs at each
 * level (lane i + i+4, then + i+2, then + i+1), gathered across registers by shuffles. */
static inline __m256 sum8x8(const __m256 a[8]) {
    __m256 c[4], d[2];
    for (int p = 0; p < 4; p++) /* halves: [lo(a2p) + hi(a2p), lo(a2p+1) + hi(a2p+1)] */
        c[p] = _mm256_add_ps(_mm256_permute2f128_ps(a[2 * p], a[2 * p + 1], 0x20),
                             _mm256_permute2f128_ps(a[2 * p], a[2 * p + 1], 0x31));
    for (int q = 0; q < 2; q++)
        d[q] = _mm256_add_ps(_mm256_shuffle_ps(c[2 * q], c[2 * q + 1], 0x44), _mm256_shuffle_ps(c[2 * q], c[2 * q + 1], 0xEE));
    /* sums of a0, a2, a4, a6 in the low half, a1, a3, a5, a7 in the high half */
    const __m256 e = _mm256_add_ps(_mm256_shuffle_ps(d[0], d[1], 0x88), _mm256_shuffle_ps(d[0], d[1], 0xDD));
    return _mm256_permutevar8x32_ps(e, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

/* out[t] = dot8(x, r_t, n) for 8 rows r_t (ld apart): q against 8 keys, or p against 8 rows
 * of v^T. One register of x at a time, the 8 rows' accumulators in registers. */
static inline void dot8x8(const float *x, const float *r, int64_t ld, int n, float *out) {
    __m256 acc[8];
    const __m256 x0 = _mm256_loadu_ps(x);
    for (int t = 0; t < 8; t++) acc[t] = _mm256_mul_ps(x0, _mm256_loadu_ps(r + (int64_t)t * ld));
    for (int l = 8; l < n; l += 8) {
        const __m256 xl = _mm256_loadu_ps(x + l);
        for (int t = 0; t < 8; t++) acc[t] = _mm256_fmadd_ps(xl, _mm256_loadu_ps(r + (int64_t)t * ld + l), acc[t]);
    }
    _mm256_storeu_ps(out, sum8x8(acc));
}
#define ATT_LANES 8
#define ATT_KQ_MAX_HD (1 << 30) /* dot8x8 reads q one register at a time */
#define att_dot dot8
#define att_kq dot8x8
#define att_pv dot8x8
#endif

/* F32 weights times f32 activations as ggml-cpu's tinyBLAS computes them (llamafile_sgemm,
 * taken when n_in is a multiple of the vector width): each output one vector accumulator
 * along k, fma by fma, then the same final sum as the attention products above. Slower
 * than the blocked GEMM, so used only where the model amplifies the last bits
 * (llm->f32_exact). */
#if defined(ATT_LANES)
typedef struct {
    const float *x, *W;
    float *y;
    int N, K;
} f32x_job;

static void f32x_row(void *ctx, int64_t t, int thread) {
    (void)thread;
    const f32x_job *j = ctx;
    const float *xt = j->x + t * j->K;
    float *yt = j->y + t * j->N;
    int o = 0;
    for (; o + ATT_LANES <= j->N; o += ATT_LANES) att_pv(xt, j->W + (int64_t)o * j->K, j->K, j->K, yt + o);
    for (; o < j->N; o++) yt[o] = att_dot(xt, j->W + (int64_t)o * j->K, j->K);
}
#endif

static bool linear_f32_ggml(pare_llm *llm, const llm_mat *w, const float *x, int T, float *y) {
#if defined(ATT_LANES)
    if (w->n_in % ATT_LANES || !w->t->data || (uintptr_t)w->t->data % sizeof(float)) return false;
    f32x_job j = {.x = x, .W = w->t->data, .y = y, .N = (int)w->n_out, .K = (int)w->n_in};
    pare_pool_for(llm->pool, T, f32x_row, &j);
    return true;
#else
    (void)llm, (void)w, (void)x, (void)T, (void)y;
    return false;
#endif
}

/* One head of one sequence (item = sequence * n_head + head; sequence s's rows start at row
 * s * T of q, k, v and att): att[:, h] = softmax(q_h k_g^T) v_g, by blocks of ATT_BLOCK query
 * rows that only look at the keys up to their last row. */
static void att_head(void *ctx, int64_t item, int thread) {
    att_job *j = ctx;
    pare_llm *llm = j->llm;
    const int64_t h = item % j->n_head, s0 = item / j->n_head * j->T;
    const int hd = llm->n_embd_head, T = j->T, g = (int)h / (j->n_head / j->n_head_kv);
    const int64_t ldkv = (int64_t)j->n_head_kv * hd, ldo = (int64_t)j->n_head * hd;
    const float *qh = j->q + s0 * j->ldq + h * hd, *kg = llm->k + s0 * ldkv + (int64_t)g * hd,
                *vg = llm->v + s0 * ldkv + (int64_t)g * hd;
    const int Tp = (T + 15) / 16 * 16; /* rows padded for 16-lane products */
    float *S = j->buf + (size_t)thread * j->per_thread, *vt = S + (size_t)j->bl * Tp, *ws = vt + (size_t)hd * Tp;
    float *out = llm->att + s0 * ldo + h * hd;
    for (int d = 0; d < hd; d++) { /* v_g^T, so that p v is a product with rows contiguous along k */
        for (int t = 0; t < T; t++) vt[(size_t)d * Tp + t] = vg[t * ldkv + d];
        for (int t = T; t < Tp; t++) vt[(size_t)d * Tp + t] = 0;
    }
#if defined(ATT_LANES)
    if (llm->ggml_round && llm->kv_f16 && llm->att_exact && hd % ATT_LANES == 0) { /* llama.cpp's order, output by output */
        enum { L = ATT_LANES };
        /* Blocks of ATT_BLOCK queries; keys 64 at a time (16 KiB for a head of 64, kept in
         * L1 while every query of the block uses them), then v^T 16 rows at a time (all
         * queries again), so that neither is streamed from L2 once per query. */
        for (int r0 = j->r0; r0 < T; r0 += ATT_BLOCK) {
            const int nr = T - r0 < ATT_BLOCK ? T - r0 : ATT_BLOCK, nc = r0 + nr, ncp = (nc + L - 1) / L * L;
            for (int t0 = 0; t0 < nc; t0 += 64) {
                const int t1 = t0 + 64 < nc ? t0 + 64 : nc;
                for (int i = t0 > r0 ? t0 - r0 : 0; i < nr; i++) {
                    const int p = r0 + i, te = t1 < p + 1 ? t1 : p + 1;
                    const float *qp = qh + (int64_t)p * j->ldq;
                    float *Si = S + (size_t)i * ncp;
                    int t = t0;
                    if (hd <= ATT_KQ_MAX_HD)
                        for (; t + L <= te; t += L) att_kq(qp, kg + (int64_t)t * ldkv, ldkv, hd, Si + t);
                    for (; t < te; t++) Si[t] = att_dot(qp, kg + (int64_t)t * ldkv, hd);
                }
            }
            for (int i = 0; i < nr; i++) {
                score_fix(j, S + (size_t)i * ncp, r0 + i);
                softmax_row(S + (size_t)i * ncp, r0 + i, (r0 + i + L) / L * L, llm->kq_scale, true);
            }
            for (int d = 0; d < hd; d += L)
                for (int i = 0; i < nr; i++)
                    att_pv(S + (size_t)i * ncp, vt + (size_t)d * Tp, Tp, (r0 + i + L) / L * L, out + (int64_t)(r0 + i) * ldo + d);
        }
        return;
    }
#endif
    for (int r0 = j->r0; r0 < T; r0 += ATT_BLOCK) {
        const int nr = T - r0 < ATT_BLOCK ? T - r0 : ATT_BLOCK, nc = r0 + nr;
        llm_gemm_nt(NULL, nr, nc, hd, qh + r0 * j->ldq, (int)j->ldq, kg, (int)ldkv, S, nc, ws);
        for (int i = 0; i < nr; i++) {
            score_fix(j, S + (size_t)i * nc, r0 + i);
            softmax_row(S + (size_t)i * nc, r0 + i, nc, llm->kq_scale, llm->ggml_round && llm->kv_f16);
        }
        llm_gemm_nt(NULL, nr, hd, nc, S, nc, vt, Tp, out + r0 * ldo, (int)ldo, ws);
    }
}

/* Heads of each sequence run in parallel, each with single-threaded products (OpenBLAS's own
 * threads stay unused: they would spin against ours on a small machine). */
static pare_status attention(pare_llm *llm, const llm_layer *L, int n_seq, int T, int r0, const float *q, int64_t ldq,
                             pare_err *err) {
    const int nt = pare_pool_threads(llm->pool);
    const int bl = T < ATT_BLOCK ? T : ATT_BLOCK;
    const size_t ws1 = llm_gemm_ws(bl, llm->n_embd_head), ws2 = llm_gemm_ws(bl, T);
    const size_t Tp = (size_t)(T + 15) / 16 * 16;
    const size_t per = (size_t)bl * Tp + (size_t)llm->n_embd_head * Tp + (ws1 > ws2 ? ws1 : ws2);
    float *buf = malloc((size_t)nt * per * sizeof *buf);
    FAIL_IF(!buf, PARE_ENOMEM, "%s: out of memory for attention scores", llm->name);
    att_job j = {.llm = llm, .T = T, .r0 = r0, .q = q, .ldq = ldq, .bl = bl, .buf = buf, .per_thread = per,
                 .n_head = L->n_head, .n_head_kv = L->n_head_kv, .n_swa = L->swa ? llm->n_swa : 0};
    pare_pool_for(llm->pool, (int64_t)n_seq * L->n_head, att_head, &j);
    free(buf);
    return PARE_OK;
}

/* ------------------------------------------------------------------------ blocks */

/* y = norm(x) * w (+ b) over rows of n values (the architecture's norm kind). */
static void norm_n(pare_llm *llm, int rows_, int64_t n, const float *x, float *y, const float *w, const float *b) {
    rows(llm, llm->ad->fwd.norm == PARE_NORM_LAYER ? OP_LAYER_NORM : OP_RMS_NORM, rows_, n, x, n, y, n, w, b);
}

static void norm(pare_llm *llm, int T, const float *x, float *y, const float *w, const float *b) {
    norm_n(llm, T, llm->n_embd, x, y, w, b);
}

static void scale_rows(pare_llm *llm, row_op op, int T, int64_t n, float *y, int64_t ld, float scale) {
    row_job j = {.llm = llm, .op = op, .n = n, .dst = y, .ld_dst = ld, .scale = scale};
    pare_pool_for(llm->pool, T, row_run, &j);
}

/* Moves rows [r0, T) of each of n_seq sequences of T rows (row stride w) to the front, in
 * order: what is left of them after the last layer's attention. */
static void keep_tail_rows(float *a, int64_t w, int n_seq, int T, int r0) {
    const size_t bytes = (size_t)(T - r0) * (size_t)w * sizeof(float);
    for (int s = 0; s < n_seq; s++) memmove(a + (int64_t)s * (T - r0) * w, a + ((int64_t)s * T + r0) * w, bytes);
}

/* q/k norm of R rows of n values in place, by vectors of len (a head or the whole row). */
static void qk_norm(pare_llm *llm, int R, int64_t n, float *y, const float *w, const float *b, int64_t len) {
    if (w) norm_n(llm, (int)(R * (n / len)), len, y, y, w, b);
}

/* The attention sublayer on `in` (n_seq sequences of T rows; sequence s from row s * T) into
 * llm->ao. In the last layer of forward_tail only rows r0.. of each sequence are needed past
 * the keys and values (as llama.cpp skips the rows it outputs no logits for): ao then holds
 * those, packed, and so do x and (parallel blocks) xn; *n_rows says how many. */
static pare_status attn_block(pare_llm *llm, int il, const float *in, int n_seq, int T, int r0, int *n_rows,
                              pare_err *err) {
    const llm_layer *L = &llm->layers[il];
    const int64_t D = llm->n_embd, hd = llm->n_embd_head, hq = (int64_t)L->n_head * hd,
                  hkv = (int64_t)L->n_head_kv * hd;
    const int R = n_seq * T;
    /* rows whose queries are needed: one sequence skips the ones before r0 */
    int qr0 = n_seq == 1 ? r0 : 0;
    if (L->wqkv.t) {
        const int64_t w = hq + 2 * hkv;
        TRY(linear(llm, L->wqkv.t->name, &L->wqkv, in, R, llm->qkv, L->bqkv, err));
        for (int t = 0; t < R; t++) {
            memcpy(llm->q + t * hq, llm->qkv + t * w, (size_t)hq * sizeof(float));
            memcpy(llm->k + t * hkv, llm->qkv + t * w + hq, (size_t)hkv * sizeof(float));
            memcpy(llm->v + t * hkv, llm->qkv + t * w + hq + hkv, (size_t)hkv * sizeof(float));
        }
        qr0 = 0;
    } else {
        TRY(linear(llm, L->wq.t->name, &L->wq, in + qr0 * D, R - qr0, llm->q + qr0 * hq, L->bq, err));
        TRY(linear(llm, L->wk.t->name, &L->wk, in, R, llm->k, L->bk, err));
        TRY(linear(llm, L->wv.t->name, &L->wv, in, R, llm->v, L->bv, err));
    }
    const int nq = R - qr0;
    float *q = llm->q;
    qk_norm(llm, nq, hq, q + qr0 * hq, L->q_norm, L->q_norm_b, L->q_norm_n);
    qk_norm(llm, R, hkv, llm->k, L->k_norm, L->k_norm_b, L->k_norm_n);
    if (llm->ad->fwd.rope != PARE_ROPE_NONE) {
        row_job j = {.llm = llm, .op = OP_ROPE, .dst = q + qr0 * hq, .ld_dst = hq, .n_heads = L->n_head,
                     .pos0 = qr0, .period = T, .cache = L->swa && rope_swa_own(llm) ? llm->rope_swa : llm->rope};
        pare_pool_for(llm->pool, nq, row_run, &j);
        j.dst = llm->k, j.ld_dst = hkv, j.n_heads = L->n_head_kv, j.pos0 = 0;
        pare_pool_for(llm->pool, R, row_run, &j);
    }
    if (llm->q_scale != 1.0f) scale_rows(llm, OP_SCALE, nq, hq, q + qr0 * hq, hq, llm->q_scale);
    if (llm->ggml_round && llm->kv_f16) { /* the f16 KV cache, and q converted for the f16 k */
        row_job j = {.llm = llm, .op = OP_ROUND, .n = hq, .src = q + qr0 * hq, .dst = q + qr0 * hq, .ld_src = hq,
                     .ld_dst = hq, .at = PARE_TYPE_F16};
        pare_pool_for(llm->pool, nq, row_run, &j);
        j.n = hkv, j.src = j.dst = llm->k, j.ld_src = j.ld_dst = hkv;
        pare_pool_for(llm->pool, R, row_run, &j);
        j.src = j.dst = llm->v;
        pare_pool_for(llm->pool, R, row_run, &j);
    }
    TRY(attention(llm, L, n_seq, T, r0, q, hq, err));
    if (r0 > 0) {
        keep_tail_rows(llm->att, hq, n_seq, T, r0);
        keep_tail_rows(llm->x, D, n_seq, T, r0);
        if (in == llm->xn) keep_tail_rows(llm->xn, D, n_seq, T, r0);
    }
    const int n = n_seq * (T - r0);
    TRY(linear(llm, L->wo.t->name, &L->wo, llm->att, n, llm->ao, L->bo, err));
    if (L->attn_post_norm) norm(llm, n, llm->ao, llm->ao, L->attn_post_norm, NULL);
    *n_rows = n;
    return PARE_OK;
}

/* The FFN sublayer on the first n rows of `in` into llm->fo. */
static pare_status ffn_block(pare_llm *llm, int il, const float *in, int n, pare_err *err) {
    const llm_layer *L = &llm->layers[il];
    if (L->moe) {
        TRY(llm_moe_ffn(llm, il, n, in, llm->fo, err));
    } else {
        const int64_t F = L->n_ff, U = L->ffn_up.n_out;
        const pare_ffn_kind kind = llm->ad->fwd.ffn;
        TRY(linear(llm, L->ffn_up.t->name, &L->ffn_up, in, n, llm->h2, L->ffn_up_b, err));
        const float *up = llm->h2;
        int64_t ld_up = U;
        if (L->ffn_gate.t) {
            TRY(linear(llm, L->ffn_gate.t->name, &L->ffn_gate, in, n, llm->h1, L->ffn_gate_b, err));
        } else if (U == 2 * F) { /* fused gate and up (Phi-3): the gate is the first half */
            rows(llm, OP_COPY, n, F, llm->h2, U, llm->h1, F, NULL, NULL);
            up = llm->h2 + F;
        } else {
            rows(llm, OP_COPY, n, F, llm->h2, U, llm->h1, F, NULL, NULL);
            up = NULL;
        }
        const row_op op = !up ? OP_GELU : kind == PARE_FFN_SWIGLU ? OP_SWIGLU : OP_GEGLU;
        rows(llm, op, n, F, up, ld_up, llm->h1, F, NULL, NULL);
        TRY(linear(llm, L->ffn_down.t->name, &L->ffn_down, llm->h1, n, llm->fo, L->ffn_down_b, err));
    }
    if (L->ffn_post_norm) norm(llm, n, llm->fo, llm->fo, L->ffn_post_norm, NULL);
    return PARE_OK;
}

/* One block, in llama.cpp's order of additions (which round differently):
 *   sequential   x = x + attn(norm(x));  x = x + ffn(norm(x))
 *   parallel     x = (ffn(n) + x) + attn(n'), n and n' = norm(x) with one or two norms
 *                (phi2: (attn + ffn) + x) */
static pare_status block(pare_llm *llm, int il, int n_seq, int T, int r0, int *n_rows, pare_err *err) {
    const llm_layer *L = &llm->layers[il];
    const int64_t D = llm->n_embd;
    const int R = n_seq * T;
    const float *in = llm->x;
    if (L->attn_norm) {
        norm(llm, R, llm->x, llm->xn, L->attn_norm, L->attn_norm_b);
        in = llm->xn;
    }
    int n;
    TRY(attn_block(llm, il, in, n_seq, T, r0, &n, err));
    if (llm->parallel) {
        if (L->ffn_norm) { /* GPT-NeoX: a norm of its own */
            norm(llm, n, llm->x, llm->xn, L->ffn_norm, L->ffn_norm_b);
            in = llm->xn;
        }
        TRY(ffn_block(llm, il, in, n, err));
        if (llm->ad->fwd.flags & PARE_FWD_PAR_ATTN_FFN) {
            rows(llm, OP_ADD, n, D, llm->fo, D, llm->ao, D, NULL, NULL);
            rows(llm, OP_ADD, n, D, llm->ao, D, llm->x, D, NULL, NULL);
        } else {
            rows(llm, OP_ADD, n, D, llm->fo, D, llm->x, D, NULL, NULL);
            rows(llm, OP_ADD, n, D, llm->ao, D, llm->x, D, NULL, NULL);
        }
    } else {
        rows(llm, OP_ADD, n, D, llm->ao, D, llm->x, D, NULL, NULL);
        in = llm->x;
        if (L->ffn_norm) {
            norm(llm, n, llm->x, llm->xn, L->ffn_norm, L->ffn_norm_b);
            in = llm->xn;
        }
        TRY(ffn_block(llm, il, in, n, err));
        rows(llm, OP_ADD, n, D, llm->fo, D, llm->x, D, NULL, NULL);
    }
    *n_rows = n;
    return PARE_OK;
}

/* x[t] = token_embd[tokens[t]] (* sqrt(n_embd) for Gemma) (+ position_embd[t % period]) for t < T. */
static pare_status embed(pare_llm *llm, const int32_t *tokens, int T, int period, pare_err *err) {
    const int64_t D = llm->n_embd;
    const pare_tensor *te = llm->tok_embd.t;
    const void *bytes;
    void *tmp;
    TRY(pare_tensor_bytes(te, &bytes, &tmp, err));
    pare_status st = PARE_OK;
    for (int t = 0; t < T && !st; t++) st = llm_row_f32(te, bytes, tokens[t], llm->x + t * D, err);
    free(tmp);
    if (!st && llm->embd_scale != 1.0f) scale_rows(llm, OP_SCALE, T, D, llm->x, D, llm->embd_scale);
    if (st || !llm->pos_embd.t) return st;
    const pare_tensor *pe = llm->pos_embd.t;
    TRY(pare_tensor_bytes(pe, &bytes, &tmp, err));
    for (int t = 0; t < T && !st; t++) {
        st = llm_row_f32(pe, bytes, t % period, llm->xn, err);
        for (int64_t i = 0; i < D && !st; i++) llm->x[t * D + i] += llm->xn[i];
    }
    free(tmp);
    return st;
}

pare_status llm_run_layers(pare_llm *llm, const int32_t *tokens, int n_seq, int T, int first, pare_err *err) {
    FAIL_IF(T < 1 || n_seq < 1, PARE_EUSAGE, "%s: nothing to evaluate (%d tokens)", llm->name, T);
    FAIL_IF(first < 0 || first >= T, PARE_EUSAGE, "%s: first output row %d outside [0, %d)", llm->name, first, T);
    FAIL_IF((int64_t)n_seq * T > INT32_MAX / 2, PARE_EUSAGE, "%s: %d sequences of %d tokens are too many", llm->name,
            n_seq, T);
    const int R = n_seq * T;
    for (int t = 0; t < R; t++)
        FAIL_IF(tokens[t] < 0 || tokens[t] >= llm->n_vocab, PARE_EINPUT,
                "%s: token %d at position %d is outside the vocabulary (%d)", llm->name, tokens[t], t % T, llm->n_vocab);
    FAIL_IF(llm->pos_embd.t && T > llm->pos_embd.n_out, PARE_EUSAGE,
            "%s: %d tokens exceed the %lld positions of position_embd", llm->name, T, (long long)llm->pos_embd.n_out);
    TRY(llm_reserve(llm, R, err));
    TRY(llm_sync_pool(llm, err));
    /* pare's threads call OpenBLAS, which must not start its own (set here, once per pass,
     * from one thread: the setting is OpenBLAS's process-wide state) */
    openblas_set_num_threads(1);
    TRY(embed(llm, tokens, R, T, err));
    if (llm->ad->fwd.rope != PARE_ROPE_NONE) rope_cache(llm, T);
    for (int il = 0; il < llm->n_layer; il++) {
        /* the hook wants every row of every layer, as llama-imatrix evaluates them */
        const int r0 = il == llm->n_layer - 1 && !llm->hook ? first : 0;
        int n;
        TRY(block(llm, il, n_seq, T, r0, &n, err));
        if (r0 == 0 && first > 0 && il == llm->n_layer - 1) keep_tail_rows(llm->x, llm->n_embd, n_seq, T, first);
    }
    return PARE_OK;
}

pare_status llm_tail_logits(pare_llm *llm, int seq, int n_out, float *logits, pare_err *err) {
    const int64_t D = llm->n_embd, V = llm->n_vocab;
    norm(llm, n_out, llm->x + (int64_t)seq * n_out * D, llm->xn, llm->out_norm, llm->out_norm_b);
    TRY(linear(llm, llm->output_name, &llm->output, llm->xn, n_out, logits, llm->output_b, err));
    if (llm->logit_scale != 1.0f) scale_rows(llm, OP_SCALE, n_out, V, logits, V, llm->logit_scale);
    if (llm->final_softcap > 0) scale_rows(llm, OP_SOFTCAP, n_out, V, logits, V, llm->final_softcap);
    return PARE_OK;
}

pare_status pare_llm_forward_tail(pare_llm *llm, const int32_t *tokens, int n_tokens, int first_out, float *logits,
                                  pare_err *err) {
    TRY(llm_run_layers(llm, tokens, 1, n_tokens, first_out, err));
    return llm_tail_logits(llm, 0, n_tokens - first_out, logits, err);
}

pare_status pare_llm_forward(pare_llm *llm, const int32_t *tokens, int n_tokens, float *logits, pare_err *err) {
    return pare_llm_forward_tail(llm, tokens, n_tokens, 0, logits, err);
}
