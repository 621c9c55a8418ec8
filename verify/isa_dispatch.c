/* verify/isa_dispatch.c - the evaluator's entry points, forwarded to the kernels' level
 * (core/isa_impl.h). forward.c, gemm.c, qgemm.c, kgemm.c and perplexity.c are compiled once
 * per level; everything else in pare reaches them through these. */
#if defined(PARE_DISPATCH)
#include "core/isa_impl.h"
#include "verify/llm_impl.h"

PARE_ISA_FN(pare_status, pare_llm_forward, (pare_llm * llm, const int32_t *tokens, int n_tokens, float *logits, pare_err *err),
            (llm, tokens, n_tokens, logits, err))
PARE_ISA_FN(pare_status, pare_llm_forward_tail,
            (pare_llm * llm, const int32_t *tokens, int n_tokens, int first_out, float *logits, pare_err *err),
            (llm, tokens, n_tokens, first_out, logits, err))
PARE_ISA_FN(pare_status, llm_run_layers, (pare_llm * llm, const int32_t *tokens, int n_seq, int T, int first, pare_err *err),
            (llm, tokens, n_seq, T, first, err))
PARE_ISA_FN(pare_status, llm_tail_logits, (pare_llm * llm, int seq, int n_out, float *logits, pare_err *err),
            (llm, seq, n_out, logits, err))
PARE_ISA_FN(pare_status, pare_perplexity,
            (pare_llm * llm, pare_llm *base, const int32_t *tokens, size_t n_tokens, const pare_ppl_opts *o,
             pare_progress_fn progress, void *user, pare_ppl_result *res, pare_err *err),
            (llm, base, tokens, n_tokens, o, progress, user, res, err))
PARE_ISA_FN(pare_status, pare_perplexity_kept,
            (pare_llm * llm, const pare_ppl_base *kept, const int32_t *tokens, size_t n_tokens, const pare_ppl_opts *o,
             pare_progress_fn progress, void *user, pare_ppl_result *res, pare_err *err),
            (llm, kept, tokens, n_tokens, o, progress, user, res, err))
PARE_ISA_FN(pare_status, pare_ppl_base_new,
            (pare_llm * base, const int32_t *tokens, size_t n_tokens, const pare_ppl_opts *o, pare_progress_fn progress,
             void *user, pare_ppl_base **out, pare_err *err),
            (base, tokens, n_tokens, o, progress, user, out, err))
PARE_ISA_VOID_FN(pare_ppl_base_free, (pare_ppl_base * b), (b))
PARE_ISA_VOID_FN(pare_ppl_finish, (pare_ppl_result * r), (r))
PARE_ISA_FN(pare_status, pare_ppl_merge, (const pare_ppl_result *parts, size_t n_parts, pare_ppl_result *out, pare_err *err),
            (parts, n_parts, out, err))
PARE_ISA_VOID_FN(llm_swiglu_rows, (float *d, const float *s, int M, int64_t F), (d, s, M, F))
PARE_ISA_FN(int, llm_batch_seqs, (int n_ctx, int n_chunks), (n_ctx, n_chunks))
PARE_ISA_FN(int, pare_ppl_n_chunks, (size_t n_tokens, const pare_ppl_opts *o), (n_tokens, o))
PARE_ISA_VOID_FN(pare_ppl_result_free, (pare_ppl_result * r), (r))

PARE_ISA_VOID_FN(llm_gemm_nt,
                 (pare_pool * pool, int M, int N, int K, const float *A, int lda, const float *B, int ldb, float *C,
                  int ldc, float *ws),
                 (pool, M, N, K, A, lda, B, ldb, C, ldc, ws))
PARE_ISA_FN(size_t, llm_gemm_ws, (int M, int K), (M, K))
PARE_ISA_FN(size_t, llm_gemm_packed_len, (int N, int K), (N, K))
PARE_ISA_VOID_FN(llm_gemm_pack, (pare_pool * pool, int N, int K, const float *B, int ldb, float *dst),
                 (pool, N, K, B, ldb, dst))
PARE_ISA_VOID_FN(llm_gemm_nt_packed,
                 (pare_pool * pool, int M, int N, int K, const float *A, int lda, const float *Bp, float *C, int ldc,
                  float *ws),
                 (pool, M, N, K, A, lda, Bp, C, ldc, ws))

PARE_ISA_FN(bool, llm_qgemm_handles, (pare_type wtype), (wtype))
PARE_ISA_FN(bool, llm_qgemm,
            (pare_pool * pool, pare_type wtype, int M, int N, int K, const float *x, int ldx, const void *W, size_t ldw,
             float *y, int ldy, void *ws),
            (pool, wtype, M, N, K, x, ldx, W, ldw, y, ldy, ws))
PARE_ISA_FN(size_t, llm_qgemm_ws, (int M, int K), (M, K))
PARE_ISA_FN(bool, llm_kgemm_handles, (pare_type wtype), (wtype))
PARE_ISA_FN(bool, llm_kgemm,
            (pare_pool * pool, pare_type wtype, int M, int N, int K, const float *x, int ldx, const void *W, float *y,
             int ldy, void *ws),
            (pool, wtype, M, N, K, x, ldx, W, y, ldy, ws))
PARE_ISA_FN(size_t, llm_kgemm_ws, (int M, int K), (M, K))
PARE_ISA_FN(bool, llm_iqgemm_handles, (pare_type wtype), (wtype))
PARE_ISA_FN(bool, llm_iqgemm,
            (pare_pool * pool, pare_type wtype, int M, int N, int K, const float *x, int ldx, const void *W, float *y,
             int ldy, void *ws),
            (pool, wtype, M, N, K, x, ldx, W, y, ldy, ws))
PARE_ISA_FN(size_t, llm_iqgemm_ws, (int M, int K), (M, K))
#else
typedef int pare_verify_isa_dispatch_unused; /* a one-level build calls the kernels directly */
#endif
