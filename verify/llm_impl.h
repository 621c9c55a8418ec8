/*
 * verify/llm_impl.h - the inside of a pare_llm, shared by model_llm.c (building it from a
 * GGUF-named model), forward.c (the forward pass) and perplexity.c. Not a public header.
 */
#ifndef PARE_VERIFY_LLM_IMPL_H
#define PARE_VERIFY_LLM_IMPL_H

#include "verify/llm.h"

/* A weight matrix y = W x: ggml dims ne[0] = n_in (contiguous), ne[1] = n_out. */
typedef struct {
    const pare_tensor *t; /* NULL when the model has none */
    int64_t n_in, n_out;
    float *packed; /* owned: f32 weights laid out by llm_gemm_pack (pare_llm_prepare), or NULL */
} llm_mat;

/* One transformer block. 1-D tensors (norms, biases) are converted to f32 once, at
 * pare_llm_new, since they are small; NULL when absent. */
typedef struct {
    int n_head, n_head_kv; /* this layer's ({arch}.attention.head_count[_kv] may be per-layer arrays) */
    bool swa;              /* sliding-window attention (llm->n_swa) on this layer */
    float *attn_norm, *attn_norm_b;
    llm_mat wq, wk, wv, wqkv, wo; /* wqkv: fused q|k|v rows when the file has attn_qkv */
    float *bq, *bk, *bv, *bqkv, *bo;
    float *q_norm, *q_norm_b, *k_norm, *k_norm_b; /* attn_q_norm / attn_k_norm: per head or full width */
    int64_t q_norm_n, k_norm_n;                   /* their widths */
    float *attn_post_norm, *ffn_post_norm;
    float *ffn_norm, *ffn_norm_b;
    llm_mat ffn_gate, ffn_up, ffn_down; /* fused gate_up: ffn_up has 2 n_ff rows, gate first */
    int64_t n_ff;
    float *ffn_gate_b, *ffn_up_b, *ffn_down_b;
    struct llm_moe *moe; /* owned (verify/moe.c); NULL for a dense FFN */
} llm_layer;

struct pare_llm {
    const pare_model *m;
    char name[64]; /* the model's path, for messages */

    /* hyper-parameters (names as llama.cpp's llama_hparams); n_head and n_head_kv are the
     * largest of the layers' (buffers are sized by them) */
    int n_embd, n_layer, n_head, n_head_kv, n_embd_head, n_ff_max, n_vocab, n_rot, n_ctx_train;
    float norm_eps;       /* RMSNorm or LayerNorm epsilon */
    float rope_freq_base; /* theta */
    float rope_freq_scale; /* 1 / linear scaling factor */
    float rope_freq_base_swa, rope_freq_scale_swa; /* the same for sliding-window layers (gemma3: their own) */
    bool rope_neox;       /* pairs (i, i + n_rot/2) instead of (2i, 2i+1) */
    float kq_scale;       /* the softmax's scale: 1 / sqrt(n_embd_head), or 1 when q is prescaled */
    float q_scale;        /* PARE_FWD_Q_PRESCALE: q's scale after RoPE, else 1 */
    bool parallel;        /* attention and FFN side by side (PARE_FWD_PARALLEL*, use_parallel_residual) */
    int n_swa;            /* sliding window (keys p - n_swa < k <= p) on layers with swa; 0: none */
    float attn_softcap, final_softcap; /* 0: none */
    float logit_scale;    /* 1: none */
    float embd_scale;     /* 1: none */
    float *gelu_tab;      /* [65536] ggml's f16 GELU table (f16 bits -> f32), for GELU/GEGLU FFNs */
    bool add_bos;
    int32_t bos;

    llm_mat tok_embd, pos_embd, output; /* output.t == tok_embd.t when tied */
    const char *output_name;            /* for the activation hook */
    float *out_norm, *out_norm_b, *output_b;
    float *rope_freqs;                  /* [n_rot/2] llama3 frequency factors, or NULL */
    llm_layer *layers;
    const struct pare_arch *ad; /* the architecture's entry (core/arch.h) */
    int n_expert, n_expert_used; /* {arch}.expert_count, .expert_used_count; 0 for dense models */
    pare_llm_expert_fn expert_hook;
    void *expert_hook_user;

    int n_threads;
    pare_pool *pool; /* n_threads threads, kept across products (llm_sync_pool) */
    bool ggml_round;
    bool kv_f16;    /* with ggml_round: K and V rounded to f16 as llama.cpp's default cache (and q and the
                       probabilities for the f16 products); false keeps them in f32 (pare_llm_set_kv_f16) */
    bool f32_exact; /* f32 weights' products in ggml's (tinyBLAS's) order too */
    bool att_exact; /* some weight rounds activations to 8 bits: attention in ggml's exact order */
    pare_llm_act_fn hook;
    void *hook_user;

    /* Scratch, grown on demand. wbuf holds one dequantized matrix (the largest); the
     * activation buffers are sized for cap_tokens tokens. */
    float *wbuf;
    size_t wbuf_cap; /* floats */
    size_t wblock;   /* floats of the largest matrix of a layer: the most dequantized at once */
    int cap_tokens;
    float *x;    /* [T][n_embd] residual stream */
    float *xn;   /* [T][n_embd] normed input of a block */
    float *q;    /* [T][n_head * n_embd_head] */
    float *qkv;  /* [T][(n_head + 2 n_head_kv) n_embd_head]: a fused qkv product, NULL without one */
    float *ao;   /* [T][n_embd] attention block output */
    float *fo;   /* [T][n_embd] FFN block output */
    float *k;    /* [T][n_head_kv * n_embd_head] */
    float *v;    /* [T][n_head_kv * n_embd_head] */
    float *att;  /* [T][n_head * n_embd_head] attention output */
    float *h1;   /* [T][n_ff_max] */
    float *h2;   /* [T][n_ff_max] */
    float *tmp;  /* [T][max(n_embd, n_ff_max, q|k|v)]: a matmul's rounded input */
    float *rope; /* [T][n_rot] cos, sin pairs per position */
    float *rope_swa; /* the same with the sliding-window layers' base and scale */
    float *gws;  /* workspace of the matrix products */
    size_t gws_cap; /* bytes */
    void *qws;   /* workspace of the integer products (quantized activations) */
    size_t qws_cap; /* bytes */
    void *lbuf;     /* the logits of a perplexity chunk (perplexity.c), reserved by pare_llm_prepare */
    size_t lbuf_cap; /* bytes */
};

/* ------------------------------------------------------------------------ mixture of experts
 * verify/moe.c. model_llm.c calls llm_moe_hparams once (it reads {arch}.expert_count and
 * .expert_used_count into n_expert, n_expert_used; 0 when the file has none) and, when
 * n_expert > 0, llm_moe_load for every layer instead of loading a dense FFN (L->moe gets the
 * router, the 3-D expert tensors and the shared expert's tensors, checked for shape and type);
 * llm_moe_free at pare_llm_free. forward.c's FFN step calls llm_moe_ffn when L->moe is set:
 * out[T][n_embd] = the routed experts' outputs (and the shared expert's) for the normed
 * rows xn[T][n_embd], as llama.cpp's build_moe_ffn computes them. */
struct llm_moe;
/* Activations rounded to 8-bit blocks as ggml does before its integer dot products
 * (model_llm.c): Q8_0 blocks of 32 (n a multiple of 32), Q8_K blocks of 256. */
void llm_round_q8_0(const float *x, float *y, int64_t n);
/* d = silu(d) * s over M rows of F, with ggml's vector e^x of the kernel level (forward.c). */
void llm_swiglu_rows(float *d, const float *s, int M, int64_t F);
void llm_round_q8_K(const float *x, float *y, int64_t n);

pare_status llm_moe_hparams(pare_llm *llm, pare_err *err);
pare_status llm_moe_load(pare_llm *llm, int il, llm_layer *L, pare_err *err);
void llm_moe_free(struct llm_moe *moe);
pare_status llm_moe_ffn(pare_llm *llm, int il, int T, const float *xn, float *out, pare_err *err);

/* Memory for big scratch buffers (activations, logits, workspaces): 2 MiB aligned and
 * marked for transparent huge pages, so that touching them costs a fault per 2 MiB, not per
 * 4 KiB, and the products miss the TLB less. Freed with free(). NULL when out of memory. */
void *llm_big_alloc(size_t bytes);

/* The final sum of eight float lanes as ggml's hsum_float_8 and tinyBLAS's hsum of a
 * 256-bit register add them: ((a0+a4)+(a2+a6)) + ((a1+a5)+(a3+a7)). */
static inline float llm_hsum8(const float a[8]) {
    return ((a[0] + a[4]) + (a[2] + a[6])) + ((a[1] + a[5]) + (a[3] + a[7]));
}

/* Makes *buf (llm_big_alloc'ed, *cap bytes) hold at least `bytes`; false when out of memory
 * (then *buf is NULL and *cap 0). */
bool llm_ws_reserve(void **buf, size_t *cap, size_t bytes);

/* Grows the scratch buffers to hold n_tokens tokens. */
pare_status llm_reserve(pare_llm *llm, int n_tokens, pare_err *err);
/* The layers on n_seq sequences of T tokens each (tokens[s * T + t]), in one pass through
 * the weights, as llama-perplexity evaluates several chunks per batch: every sequence's rows
 * give the same values as evaluating it alone. Afterwards x holds, packed, the final rows
 * [first, T) of every sequence, which llm_tail_logits turns into logits, one sequence at a
 * time (n_out = T - first). */
pare_status llm_run_layers(pare_llm *llm, const int32_t *tokens, int n_seq, int T, int first, pare_err *err);
pare_status llm_tail_logits(pare_llm *llm, int seq, int n_out, float *logits, pare_err *err);
/* How many chunks of n_ctx tokens go through the layers together: llama-perplexity's default
 * batch of 2048 tokens (n_seq = n_batch / n_ctx), at most n_chunks, at least 1. Only where
 * pare's own f32 kernel does the products (AVX-512, AVX2 + FMA + F16C; verify/gemm.c):
 * OpenBLAS's sgemm, used elsewhere, can round a row differently depending on how many rows
 * come with it, and a chunk's perplexity must not depend on its neighbours (--chunk-range
 * parts must merge to the whole run). */
#define LLM_BATCH_TOKENS 2048
int llm_batch_seqs(int n_ctx, int n_chunks); /* verify/perplexity.c, per kernel level */
/* Returns the f32 values of rows [r0, r1) of a weight matrix: the tensor's own bytes when
 * they are aligned F32 in memory, else dequantized into llm->wbuf (valid until the next call). */
pare_status llm_weight_f32(pare_llm *llm, const llm_mat *w, int64_t r0, int64_t r1, const float **out,
                           pare_err *err);
/* Makes llm->pool match llm->n_threads (which pare_perplexity may change). */
pare_status llm_sync_pool(pare_llm *llm, pare_err *err);
/* C[M][N] = A[M][K] B[N][K]^T (row-major, leading dimensions lda, ldb, ldc) on the pool's
 * threads, NULL: the caller's only (verify/gemm.c). ws: llm_gemm_ws(M, K) floats of workspace,
 * or NULL to allocate. */
void llm_gemm_nt(pare_pool *pool, int M, int N, int K, const float *A, int lda, const float *B, int ldb, float *C,
                 int ldc, float *ws);
size_t llm_gemm_ws(int M, int K);
/* The same product with B laid out ahead by llm_gemm_pack, in llm_gemm_packed_len(N, K)
 * floats (0: this build does not pack; use llm_gemm_nt). The arithmetic is the same, in the
 * same order: packing ahead saves the per-product copy of B, whose scattered reads waited
 * on memory. */
size_t llm_gemm_packed_len(int N, int K);
void llm_gemm_pack(pare_pool *pool, int N, int K, const float *B, int ldb, float *dst);
void llm_gemm_nt_packed(pare_pool *pool, int M, int N, int K, const float *A, int lda, const float *Bp, float *C,
                        int ldc, float *ws);
/* y[M][N] = x[M][K] W^T for weights whose products take 8-bit activations (Q8_0, Q4_0, Q5_0,
 * IQ4_NL with Q8_0; Q4_1, Q5_1 with Q8_1; see llm_qgemm_handles), N rows of ldw bytes, as
 * llama.cpp computes it on x86 (AVX2 or AVX-512): integer block dots in ggml's float order for
 * that type (tinyBLAS's lanes; Q4_0 with N % 8 == 0: the repacked Q4_0x8 kernels' one float
 * per output), and on aarch64 in ggml's Arm orders (NEON, dotprod) (verify/qgemm.c). ws: llm_qgemm_ws(M, K) bytes. False (nothing done) for a type
 * it does not do or K not a multiple of 32. */
bool llm_qgemm_handles(pare_type wtype);
bool llm_qgemm(pare_pool *pool, pare_type wtype, int M, int N, int K, const float *x, int ldx, const void *W,
               size_t ldw, float *y, int ldy, void *ws);
size_t llm_qgemm_ws(int M, int K);
/* The same for K-quant weights (Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_XS; see llm_kgemm_handles; rows of K / 256
 * super-blocks), x quantized to Q8_K, in ggml_vec_dot_*_q8_K's float order (verify/kgemm.c).
 * ws: llm_kgemm_ws(M, K) bytes. False (nothing done) for other types, K not a multiple of
 * 256, or no memory. */
bool llm_kgemm_handles(pare_type wtype);
bool llm_kgemm(pare_pool *pool, pare_type wtype, int M, int N, int K, const float *x, int ldx, const void *W,
               float *y, int ldy, void *ws);
size_t llm_kgemm_ws(int M, int K);
/* The same for the codebook i-quants (IQ1_S, IQ1_M, IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S; see
 * llm_iqgemm_handles), x quantized to Q8_K, in ggml_vec_dot_*_q8_K's float order (verify/iqgemm.c).
 * ws: llm_iqgemm_ws(M, K) bytes. False (nothing done) for other types, K not a multiple of
 * 256, or no memory. */
bool llm_iqgemm_handles(pare_type wtype);
bool llm_iqgemm(pare_pool *pool, pare_type wtype, int M, int N, int K, const float *x, int ldx, const void *W,
                float *y, int ldy, void *ws);
size_t llm_iqgemm_ws(int M, int K);
/* Converts row `row` of a tensor of any readable type, whose bytes are at `bytes`, to f32. */
pare_status llm_row_f32(const pare_tensor *t, const void *bytes, int64_t row, float *dst, pare_err *err);

#if defined(__AVX512F__)
#include <immintrin.h>
#include <math.h>
/* The first n of 16 lanes (none for n <= 0, all for n >= 16): masks for row tails. */
static inline __mmask16 llm_lanes16(int n) {
    return n >= 16 ? (__mmask16)0xFFFF : n <= 0 ? (__mmask16)0 : (__mmask16)((1u << n) - 1);
}

/* e^x for 16 floats as ggml-cpu computes it for softmax and SiLU on AVX-512 machines
 * (ggml_v_expf, after Arm's optimized routines): x = n ln2 + b with n rounded through the
 * 1.5 * 2^23 trick and ln2 split in two, e^b by a degree-5 polynomial in Estrin form, scaled
 * by 2^n; |n| > 192 gives 0 or infinity. The same constants and operation order give
 * ggml's bits, which matter: the probabilities are then rounded to f16 and the activations
 * to 8-bit blocks, where one ulp can move a value to the next step. */
static inline __m512 llm_exp16(__m512 x) {
    const __m512 r = _mm512_set1_ps(0x1.8p23f);
    const __m512 z = _mm512_fmadd_ps(x, _mm512_set1_ps(0x1.715476p+0f), r);
    const __m512 n = _mm512_sub_ps(z, r);
    const __m512 b = _mm512_fnmadd_ps(n, _mm512_set1_ps(0x1.7f7d1cp-20f),
                                      _mm512_fnmadd_ps(n, _mm512_set1_ps(0x1.62e4p-1f), x));
    const __mmask16 big = _mm512_cmp_ps_mask(_mm512_abs_ps(n), _mm512_set1_ps(192), _CMP_GT_OQ);
    const __m512 u = _mm512_mul_ps(b, b);
    const __m512 hi = _mm512_fmadd_ps(_mm512_fmadd_ps(_mm512_set1_ps(0x1.0e4020p-7f), b, _mm512_set1_ps(0x1.573e2ep-5f)),
                                      u, _mm512_fmadd_ps(_mm512_set1_ps(0x1.555e66p-3f), b, _mm512_set1_ps(0x1.fffdb6p-2f)));
    const __m512 j = _mm512_fmadd_ps(hi, u, _mm512_fmadd_ps(_mm512_set1_ps(0x1.ffffecp-1f), b, _mm512_set1_ps(1.0f)));
    const __m512 res = _mm512_scalef_ps(j, n);
    if (!big) return res;
    const __m512 zero = _mm512_setzero_ps();
    const __m512 alt = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(n, zero, _CMP_LE_OQ), _mm512_set1_ps(INFINITY), zero);
    return _mm512_mask_blend_ps(big, res, alt);
}

#elif defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#include <immintrin.h>
/* e^x for 8 floats as ggml-cpu computes it for softmax and SiLU on AVX2 machines (ggml_v_expf's
 * __m256 form): the same reduction and polynomial as llm_exp16 above but a different last
 * step, so other bits: the polynomial leaves out the 1 (j = e^b - 1), 2^n is built in the
 * exponent field (k) and the result is k + k j by one fma. Where |n| > 126, 2^n is split in
 * two factors s1 s2 so that the product can reach the subnormals; |n| > 192 gives 0 or
 * infinity (s1 squared). */
static inline __m256 llm_exp8(__m256 x) {
    const __m256 r = _mm256_set1_ps(0x1.8p23f);
    const __m256 z = _mm256_fmadd_ps(x, _mm256_set1_ps(0x1.715476p+0f), r);
    const __m256 n = _mm256_sub_ps(z, r);
    const __m256 b = _mm256_fnmadd_ps(n, _mm256_set1_ps(0x1.7f7d1cp-20f),
                                      _mm256_fnmadd_ps(n, _mm256_set1_ps(0x1.62e4p-1f), x));
    const __m256i e = _mm256_slli_epi32(_mm256_castps_si256(z), 23);
    const __m256 k = _mm256_castsi256_ps(_mm256_add_epi32(e, _mm256_castps_si256(_mm256_set1_ps(1))));
    const __m256 an = _mm256_andnot_ps(_mm256_set1_ps(-0.f), n); /* |n| */
    const __m256 c = _mm256_cmp_ps(an, _mm256_set1_ps(126), _CMP_GT_OQ);
    const __m256 u = _mm256_mul_ps(b, b);
    const __m256 j = _mm256_fmadd_ps(
        _mm256_fmadd_ps(_mm256_fmadd_ps(_mm256_set1_ps(0x1.0e4020p-7f), b, _mm256_set1_ps(0x1.573e2ep-5f)), u,
                        _mm256_fmadd_ps(_mm256_set1_ps(0x1.555e66p-3f), b, _mm256_set1_ps(0x1.fffdb6p-2f))),
        u, _mm256_mul_ps(_mm256_set1_ps(0x1.ffffecp-1f), b));
    if (!_mm256_movemask_ps(c)) return _mm256_fmadd_ps(j, k, k);
    const __m256i g = _mm256_and_si256(_mm256_castps_si256(_mm256_cmp_ps(n, _mm256_setzero_ps(), _CMP_LE_OQ)),
                                       _mm256_set1_epi32((int)0x82000000u));
    const __m256 s1 = _mm256_castsi256_ps(_mm256_add_epi32(g, _mm256_set1_epi32(0x7f000000)));
    const __m256 s2 = _mm256_castsi256_ps(_mm256_sub_epi32(e, g));
    const __m256 d = _mm256_cmp_ps(an, _mm256_set1_ps(192), _CMP_GT_OQ);
    const __m256 scaled = _mm256_blendv_ps(_mm256_fmadd_ps(k, j, k), _mm256_mul_ps(_mm256_fmadd_ps(s2, j, s2), s1), c);
    return _mm256_blendv_ps(scaled, _mm256_mul_ps(s1, s1), d);
}

/* The sum of 8 lanes in ggml's and tinyBLAS's order (llm_hsum8), on a register: the upper
 * half added to the lower, then lanes 2-3 to 0-1, then lane 1 to lane 0. */
static inline float llm_hsum8v(__m256 a) {
    __m128 x = _mm_add_ps(_mm256_extractf128_ps(a, 1), _mm256_castps256_ps128(a));
    x = _mm_add_ps(x, _mm_movehl_ps(x, x));
    return _mm_cvtss_f32(_mm_add_ss(x, _mm_movehdup_ps(x)));
}
#endif

#endif
