/*
 * verify/llm.h - the reference evaluator (pare_llm: forward.c, model_llm.c, perplexity.c and
 * the products of gemm.c, qgemm.c, kgemm.c): a forward pass for models with GGUF names and
 * metadata, and perplexity / KL divergence exactly as llama.cpp's llama-perplexity computes
 * them (February 2025).
 *
 * Architectures (general.architecture): every entry of the architecture table (core/arch.h)
 * whose forward-pass part says what the family needs: norm kind (RMSNorm, LayerNorm with or
 * without bias), FFN kind (SwiGLU, GEGLU, GELU; gate and up fused or not), RoPE kind (adjacent
 * pairs, NeoX halves, partial rotary from rope.dimension_count, none with position_embd),
 * parallel blocks (one or two norms), post-sublayer norms, q/k norms (per head or full width),
 * q scaled before the f16 cache, attention and final logit soft-capping, sliding-window layers,
 * embedding and logit scales, biases and output.bias when present, tied output, mixture of
 * experts (verify/moe.c), per-layer RoPE bases (gemma3's local layers). llama (Mistral,
 * Mixtral), qwen2, gpt2, gemma, gemma2, phi3, qwen2moe, starcoder2, olmo2, gptneox, command-r,
 * phi2, qwen3, qwen3moe, gemma3. {arch}.attention.head_count and .head_count_kv
 * may be per-layer arrays (as llama.cpp reads them; pruned models), and the FFN width is each
 * layer's ffn_up. Any other architecture (a vision projector, an embedding model...) is
 * PARE_EUNSUPPORTED, naming it.
 *
 * Numerics follow llama.cpp's CPU backend: activations are rounded to the type ggml
 * multiplies each weight type with (f16 for F16, bf16 for BF16, Q8_0 blocks for Q4_0..Q8_0
 * and IQ4_NL, Q8_K blocks for k-quants and the other i-quants), the KV cache holds f16,
 * attention probabilities are rounded to f16, GELU goes through ggml's f16 table. Models with
 * at most 64 MiB of f32 matrices also multiply those in ggml's order (tinyBLAS's lanes). Matrix
 * products run over all tokens at once (verify/gemm.c: an AVX-512 kernel, else OpenBLAS);
 * weights stay in their file type and are dequantized a matrix (or a block of rows of the
 * output matrix) at a time into a reusable f32 buffer, F32 weights being used in place, so
 * memory stays near file size + a layer's largest matrix in f32 + activations.
 *
 * A pare_llm is not safe for concurrent use; it borrows the pare_model, which must outlive it.
 * It keeps OpenBLAS single-threaded (openblas_set_num_threads(1)) and runs its own threads.
 */
#ifndef PARE_VERIFY_LLM_H
#define PARE_VERIFY_LLM_H

#include "core/core.h"

typedef struct pare_llm pare_llm;

/* Builds an evaluator from a model with GGUF tensor names and GGUF metadata. Checks every
 * tensor the architecture needs for presence, type and shape. n_threads <= 0: all CPUs. */
pare_status pare_llm_new(const pare_model *m, int n_threads, pare_llm **out, pare_err *err);
void pare_llm_free(pare_llm *llm);
/* Gives back the working memory of its evaluations (activations, workspaces, logits: about
 * 400 MB for a 1.1B model at 4 x 512 tokens); the next evaluation allocates it again. For a
 * reference that waits while other models are evaluated beside it. */
void pare_llm_trim(pare_llm *llm);
int pare_llm_n_vocab(const pare_llm *llm);
int pare_llm_n_ctx_train(const pare_llm *llm); /* ARCH.context_length (0 when absent) */
/* Whether llama.cpp adds BOS (tokenizer.ggml.add_bos_token, default true for a
 * sentencepiece vocabulary) and the BOS id (-1 when none). */
bool pare_llm_add_bos(const pare_llm *llm);
int32_t pare_llm_bos(const pare_llm *llm);

/* Allocates and touches the working memory of a pass over n_tokens (and of the chunks of
 * n_tokens that pare_perplexity evaluates together) and starts the threads, so that the first
 * pass does not pay for it (llama.cpp reserves its compute buffers when the context is made,
 * before anything is timed). Optional: passes grow what they need.
 * n_passes: how many passes will follow (0 if not known); from PARE_LLM_PACK_PASSES on, f32
 * weights mapped from a file are also laid out ahead for the products, a copy of them that
 * takes a while to make and is repaid only by long evaluations. */
#define PARE_LLM_PACK_PASSES 32
pare_status pare_llm_prepare(pare_llm *llm, int n_tokens, int n_passes, pare_err *err);

/* logits[n_tokens][n_vocab] for one sequence of tokens starting at position 0 (causal).
 * Token ids are checked against the vocabulary; gpt2 also limits n_tokens to the
 * position table. */
pare_status pare_llm_forward(pare_llm *llm, const int32_t *tokens, int n_tokens, float *logits, pare_err *err);
/* As pare_llm_forward, but only rows [first_out, n_tokens) of the logits are computed and
 * stored (logits then holds n_tokens - first_out rows). As in llama.cpp, the last layer
 * past its keys and values works on those rows only, unless an activation hook is set (the
 * hook always sees all n_tokens rows of every layer). */
pare_status pare_llm_forward_tail(pare_llm *llm, const int32_t *tokens, int n_tokens, int first_out,
                                  float *logits, pare_err *err);

/* Called during forward with the input activations (n_tokens x n_in, row-major, before
 * any rounding) of every linear layer, by the GGUF name of its weight (the tied output
 * layer is reported as "output.weight" and sees only the rows whose logits are computed).
 * fn NULL removes the hook. */
typedef void (*pare_llm_act_fn)(void *user, const char *weight_name, const float *x, int n_tokens, int n_in);
void pare_llm_set_act_hook(pare_llm *llm, pare_llm_act_fn fn, void *user);
/* The same for the 3-D expert tensors of mixture-of-experts models (ffn_gate_exps, ffn_up_exps,
 * ffn_down_exps): called once per expert that received rows in a step, with the n_rows input
 * rows routed to it (llama.cpp's imatrix collects the same). The plain hook is not called for
 * expert tensors. fn NULL removes the hook. */
typedef void (*pare_llm_expert_fn)(void *user, const char *weight_name, int expert, int n_expert, const float *x,
                                   int n_rows, int n_in);
void pare_llm_set_expert_hook(pare_llm *llm, pare_llm_expert_fn fn, void *user);
/* true (the default): reproduce llama.cpp's roundings listed above; false: plain f32. */
void pare_llm_set_ggml_rounding(pare_llm *llm, bool on);
/* true (the default, llama.cpp's -ctk f16 -ctv f16): the KV cache holds f16; false: K and V
 * stay in f32 (llama.cpp's -ctk f32 -ctv f32: q, k, v and the attention probabilities are not
 * rounded), the other roundings as set above. */
void pare_llm_set_kv_f16(pare_llm *llm, bool on);

/* ------------------------------------------------------------------------ perplexity */

/* Tokens per chunk when none is given (llama-perplexity's -c default), and the fewest that
 * can be scored: tokens n_ctx/2 .. n_ctx-2 of each chunk are. */
#define PARE_PPL_DEFAULT_CTX 512
#define PARE_PPL_MIN_CTX 4

typedef struct {
    int n_ctx;                /* tokens per chunk (llama-perplexity -c); 0 -> PARE_PPL_DEFAULT_CTX */
    int first_chunk;          /* first chunk to evaluate (0-based) */
    int n_chunks;             /* how many; -1 = all up to tokens / n_ctx */
    int n_threads;            /* > 0: becomes the thread count of llm (and base); 0 keeps theirs */
} pare_ppl_opts;

/* Per chunk i (0-based within this run) and over the whole run. Sums are kept so that
 * partial runs (--chunk-range) can be merged with pare_ppl_merge. */
typedef struct {
    int n_ctx, n_vocab;
    int first_chunk;          /* of this run */
    int n_chunks_done;
    int n_chunks_total;       /* tokens / n_ctx of the text */
    int64_t n_scored;         /* tokens scored: n_chunks_done * (n_ctx - 1 - n_ctx/2) */
    double nll_sum, nll2_sum; /* sums over scored tokens of -log p and its square */
    double *chunk_nll;        /* [n_chunks_done]: the nll sum of each chunk */
    double *chunk_ppl;        /* [n_chunks_done]: running PPL after each chunk ([i] in llama.cpp) */
    double ppl, ppl_err;      /* exp(mean nll), ppl * sd(nll) / sqrt(N - 1) */

    /* KL divergence vs a base model (has_kld), the sums llama.cpp keeps ... */
    bool has_kld;
    double sum_nll_base, sum_nll_base2, sum_nll_nll_base;
    double sum_nll_base_exact; /* the base's -log p from its full logits (not the 16-bit copy) */
    double sum_kld, sum_kld2, sum_p_diff, sum_p_diff2, sum_p_diff4;
    double max_p_diff;
    int64_t n_same_top;
    float *kld_values;        /* [n_scored] per-token KLD, in token order */
    float *p_diff_values;     /* [n_scored] per-token p(model) - p(base) of the right token */
    /* ... and what llama-perplexity --kl-divergence reports from them
     * (pare_ppl_finish fills these; percentiles of sorted values as llama.cpp interpolates). */
    double ppl_base, ppl_base_err;
    double ppl_base_exact;             /* the base's own perplexity (llama.cpp's ppl_base comes
                                          from log-probabilities floored at max - 16) */
    double ln_ppl_cor;                 /* correlation of ln PPL(Q) and ln PPL(base) */
    double ln_ppl_ratio, ln_ppl_ratio_err;
    double ppl_ratio, ppl_ratio_err;
    double ppl_diff, ppl_diff_err;
    double kld_mean, kld_err, kld_max, kld_p999, kld_p99, kld_median, kld_p10, kld_p5, kld_p1, kld_min;
    double dp_mean, dp_err, dp_max, dp_p999, dp_p99, dp_p95, dp_p90, dp_p75, dp_median, dp_p25, dp_p10,
        dp_p5, dp_p1, dp_p01, dp_min;
    double dp_rms, dp_rms_err;
    double same_top, same_top_err;     /* fractions (llama.cpp prints them x 100) */
} pare_ppl_result;

/* How many chunks pare_perplexity would evaluate (0: none, it would refuse the options). */
int pare_ppl_n_chunks(size_t n_tokens, const pare_ppl_opts *o);

/* Perplexity as llama-perplexity (examples/perplexity/perplexity.cpp, perplexity()):
 * chunks of n_ctx tokens from tokens[first_chunk * n_ctx]; the first token of each chunk
 * becomes BOS when the vocabulary adds BOS; logits of the second half are scored
 * (n_ctx - 1 - n_ctx/2 tokens per chunk), log-softmax with a double sum of expf.
 * Needs n_tokens >= 2 * n_ctx, as llama.cpp does.
 * With base != NULL also the KL divergence KLD(base || llm) etc. as --kl-divergence computes
 * it, including its storage of the base log-probabilities as 16-bit values. progress gets
 * ("perplexity", chunks done, chunks). res is filled (zeroed first); free with
 * pare_ppl_result_free. */
pare_status pare_perplexity(pare_llm *llm, pare_llm *base, const int32_t *tokens, size_t n_tokens,
                            const pare_ppl_opts *o, pare_progress_fn progress, void *user,
                            pare_ppl_result *res, pare_err *err);
/* The base model's side of the KL divergence, kept: its 16-bit log-probabilities of every
 * scored token (2 bytes x vocabulary per token: 16 MB per chunk of 512 with 32,000 tokens),
 * computed once for a text and options, so that many models are compared with it without
 * running the base model again (the budget search's probes and calibration).
 * pare_perplexity_kept(llm, kept, ...) gives exactly what pare_perplexity(llm, base, ...)
 * gives with the same tokens and options (it refuses others). */
typedef struct pare_ppl_base pare_ppl_base;
pare_status pare_ppl_base_new(pare_llm *base, const int32_t *tokens, size_t n_tokens, const pare_ppl_opts *o,
                              pare_progress_fn progress, void *user, pare_ppl_base **out, pare_err *err);
void pare_ppl_base_free(pare_ppl_base *b);
pare_status pare_perplexity_kept(pare_llm *llm, const pare_ppl_base *kept, const int32_t *tokens, size_t n_tokens,
                                 const pare_ppl_opts *o, pare_progress_fn progress, void *user,
                                 pare_ppl_result *res, pare_err *err);
/* Recomputes the derived figures (ppl, ppl_err, KLD statistics) from the sums and arrays. */
void pare_ppl_finish(pare_ppl_result *r);
/* Merges partial runs of the same text and n_ctx into *out (as if run in one go): parts are
 * ordered by first_chunk and must not overlap; all must have KLD or none. */
pare_status pare_ppl_merge(const pare_ppl_result *parts, size_t n_parts, pare_ppl_result *out, pare_err *err);
void pare_ppl_result_free(pare_ppl_result *r); /* frees the arrays; r itself is the caller's */

#endif
