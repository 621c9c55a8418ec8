/*
 * verify/moe.c - mixture-of-experts FFN layers (see llm_impl.h), as llama.cpp's build_moe_ffn
 * (src/llama.cpp, February 2025) computes them on ggml-cpu:
 *
 *   logits = x ffn_gate_inp^T                     [n_expert] per token (f32 router)
 *   probs  = softmax(logits)
 *   sel    = the n_expert_used largest probs (ggml_top_k: ggml_argsort descending, its
 *            selection sort, ties keep the lower index)
 *   w      = probs[sel], divided by their sum when the family renormalises (norm_w: llama /
 *            Mixtral; not Qwen2-MoE)
 *   out    = sum over slots s in order of w_s * down_e(silu(gate_e x) * up_e x)
 *   (+ shexp(x) * sigmoid(x ffn_gate_inp_shexp^T), the shared expert of Qwen2-MoE, where
 *    llama.cpp writes sigmoid(g) as silu(g) / g)
 *
 * The expert tensors are 3-D, [n_in, n_out, n_expert]: expert e is the 2-D slice of n_out
 * rows at e * n_out. As ggml's mul_mat_id, each expert's product runs once over the rows
 * routed to it (grouped per expert), activations quantized per row as in mul_mat, through
 * the same integer products (qgemm.c, kgemm.c, iqgemm.c) as dense weights, so quantized
 * experts stay on the fast paths. Plain C: the few element-wise steps use libm's expf.
 */
#include "verify/llm_impl.h"

#include "core/isa.h"
#include "quant/quant.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Whether a family renormalises the selected experts' weights (build_moe_ffn's norm_w):
 * llama (Mixtral) does, Qwen2-MoE does not. Families not listed do. */
static const struct {
    const char *arch;
    bool norm_w;
} MOE_FAMILIES[] = {
    {"llama", true},
    {"qwen2moe", false},
    {"qwen3moe", true}, /* llama.cpp's build_qwen3moe renormalises (the checkpoints' norm_topk_prob) */
};

/* One 3-D expert tensor [n_in, n_out, n_expert]. */
typedef struct {
    const pare_tensor *t;
    int64_t n_in, n_out;
} moe_exps;

struct llm_moe {
    llm_mat gate_inp;                   /* router [n_embd] -> [n_expert] */
    moe_exps up, gate, down;            /* ffn_{up,gate,down}_exps */
    llm_mat up_sh, gate_sh, down_sh;    /* the shared expert, .t NULL when none */
    float *gate_inp_sh;                 /* [n_embd] owned f32: the shared expert's gate, or NULL */
    bool norm_w;
};

/* ------------------------------------------------------------------------ loading */

static pare_status meta_count(const pare_llm *llm, const char *arch, const char *suffix, int *v, pare_err *err) {
    char key[160];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    *v = 0;
    const pare_kv *kv = pare_meta_get(&llm->m->meta, key);
    if (!kv) return PARE_OK;
    int64_t x;
    FAIL_IF(!pare_meta_get_i64(&llm->m->meta, key, &x), PARE_EINPUT, "%s: %s is a %s, not an integer", llm->name, key,
            pare_meta_type_name(kv->type));
    FAIL_IF(x < 0 || x > 4096, PARE_EINPUT, "%s: %s = %lld is outside [0, 4096]", llm->name, key, (long long)x);
    *v = (int)x;
    return PARE_OK;
}

static const char *arch_of(const pare_llm *llm) {
    const char *a = pare_meta_get_str(&llm->m->meta, "general.architecture");
    return a ? a : llm->m->arch ? llm->m->arch : "";
}

pare_status llm_moe_hparams(pare_llm *llm, pare_err *err) {
    const char *a = arch_of(llm);
    TRY(meta_count(llm, a, "expert_count", &llm->n_expert, err));
    TRY(meta_count(llm, a, "expert_used_count", &llm->n_expert_used, err));
    if (llm->n_expert == 0) {
        llm->n_expert_used = 0;
        return PARE_OK;
    }
    FAIL_IF(llm->n_expert_used < 1 || llm->n_expert_used > llm->n_expert, PARE_EINPUT,
            "%s: %s.expert_used_count %d is not in [1, expert_count %d]", llm->name, a, llm->n_expert_used,
            llm->n_expert);
    return PARE_OK;
}

static bool type_readable(pare_type t) {
    const pare_type_info *ti = pare_type_get(t);
    return ti && (ti->is_float || pare_quant_can_dequantize(t));
}

/* blk.il.NAME with shape [ne0, ne1, ne2] (ne1, ne2 of 1 may be absent dimensions). */
static pare_status find(const pare_llm *llm, int il, const char *name, bool required, int64_t ne0, int64_t ne1,
                        int64_t ne2, const pare_tensor **out, pare_err *err) {
    char n[128];
    snprintf(n, sizeof n, "blk.%d.%s", il, name);
    *out = NULL;
    const pare_tensor *t = pare_model_find(llm->m, n);
    if (!t) {
        FAIL_IF(required, PARE_EINPUT, "%s: tensor '%s' is missing", llm->name, n);
        return PARE_OK;
    }
    char sh[96];
    FAIL_IF(t->ne[0] != ne0 || t->ne[1] != ne1 || t->ne[2] != ne2 || t->ne[3] != 1, PARE_EINPUT,
            "%s: tensor '%s' has shape %s, expected [%lld, %lld, %lld]", llm->name, n,
            pare_tensor_shape_str(t, sh, sizeof sh), (long long)ne0, (long long)ne1, (long long)ne2);
    FAIL_IF(!type_readable(t->type), PARE_EUNSUPPORTED, "%s: tensor '%s': pare cannot read type %s", llm->name, n,
            pare_type_name(t->type));
    uint64_t nb;
    TRY(pare_tensor_nbytes(t->type, t->n_dims, t->ne, &nb, err));
    FAIL_IF(nb != t->n_bytes, PARE_EINPUT, "%s: tensor '%s' holds %llu bytes, its shape and type need %llu", llm->name,
            n, (unsigned long long)t->n_bytes, (unsigned long long)nb);
    *out = t;
    return PARE_OK;
}

static pare_status load(pare_llm *llm, int il, struct llm_moe *moe, pare_err *err) {
    const int64_t D = llm->n_embd, E = llm->n_expert;
    TRY(find(llm, il, "ffn_gate_inp.weight", true, D, E, 1, &moe->gate_inp.t, err));
    moe->gate_inp.n_in = D, moe->gate_inp.n_out = E;
    /* the experts' width, from ffn_up_exps (as llama.cpp's n_ff_exp) */
    char n[128];
    snprintf(n, sizeof n, "blk.%d.ffn_up_exps.weight", il);
    const pare_tensor *up = pare_model_find(llm->m, n);
    FAIL_IF(!up, PARE_EINPUT, "%s: tensor '%s' is missing (per-expert 2-D tensors of older files are not supported)",
            llm->name, n);
    const int64_t F = up->ne[1];
    FAIL_IF(F < 1 || F > (1 << 24), PARE_EINPUT, "%s: tensor '%s' has %lld rows", llm->name, n, (long long)F);
    TRY(find(llm, il, "ffn_up_exps.weight", true, D, F, E, &moe->up.t, err));
    TRY(find(llm, il, "ffn_gate_exps.weight", true, D, F, E, &moe->gate.t, err));
    TRY(find(llm, il, "ffn_down_exps.weight", true, F, D, E, &moe->down.t, err));
    moe->up = (moe_exps){moe->up.t, D, F};
    moe->gate = (moe_exps){moe->gate.t, D, F};
    moe->down = (moe_exps){moe->down.t, F, D};
    if (F > llm->n_ff_max) llm->n_ff_max = (int)F;
    /* the shared expert: all four tensors or none */
    snprintf(n, sizeof n, "blk.%d.ffn_up_shexp.weight", il);
    const pare_tensor *ush = pare_model_find(llm->m, n);
    if (ush) {
        const int64_t Fs = ush->ne[1];
        FAIL_IF(Fs < 1 || Fs > (1 << 24), PARE_EINPUT, "%s: tensor '%s' has %lld rows", llm->name, n, (long long)Fs);
        const pare_tensor *g;
        TRY(find(llm, il, "ffn_up_shexp.weight", true, D, Fs, 1, &moe->up_sh.t, err));
        TRY(find(llm, il, "ffn_gate_shexp.weight", true, D, Fs, 1, &moe->gate_sh.t, err));
        TRY(find(llm, il, "ffn_down_shexp.weight", true, Fs, D, 1, &moe->down_sh.t, err));
        TRY(find(llm, il, "ffn_gate_inp_shexp.weight", true, D, 1, 1, &g, err));
        moe->up_sh.n_in = moe->gate_sh.n_in = D, moe->up_sh.n_out = moe->gate_sh.n_out = Fs;
        moe->down_sh.n_in = Fs, moe->down_sh.n_out = D;
        if (Fs > llm->n_ff_max) llm->n_ff_max = (int)Fs;
        FAIL_IF(!(moe->gate_inp_sh = malloc((size_t)D * sizeof(float))), PARE_ENOMEM, "%s: out of memory", llm->name);
        TRY(pare_tensor_to_f32(g, moe->gate_inp_sh, 1, err));
    }
    moe->norm_w = true;
    const char *a = arch_of(llm);
    for (size_t i = 0; i < sizeof MOE_FAMILIES / sizeof MOE_FAMILIES[0]; i++)
        if (strcmp(a, MOE_FAMILIES[i].arch) == 0) moe->norm_w = MOE_FAMILIES[i].norm_w;
    /* the largest expert slice, for llm_weight_f32's buffer when experts are dequantized */
    const size_t big = (size_t)(D * (F > D ? F : D));
    if (big > llm->wblock) llm->wblock = big;
    return PARE_OK;
}

pare_status llm_moe_load(pare_llm *llm, int il, llm_layer *L, pare_err *err) {
    FAIL_IF(llm->n_expert < 1, PARE_EINPUT, "%s: layer %d: experts without an expert_count", llm->name, il);
    struct llm_moe *moe = calloc(1, sizeof *moe);
    FAIL_IF(!moe, PARE_ENOMEM, "%s: out of memory", llm->name);
    pare_status st = load(llm, il, moe, err);
    if (st) {
        llm_moe_free(moe);
        return st;
    }
    L->moe = moe;
    return PARE_OK;
}

void llm_moe_free(struct llm_moe *moe) {
    if (!moe) return;
    free(moe->gate_inp_sh);
    free(moe);
}

/* ------------------------------------------------------------------------ products */

static float round_f16(float x) { return pare_fp16_to_fp32(pare_fp32_to_fp16(x)); }

/* The activation rounding of the f32 way (weights without an integer product here), as
 * forward.c's round_row: what ggml converts activations to before its dot products. */
static void round_act(pare_type wt, const float *x, float *y, int64_t n) {
    const pare_quant_traits *q = pare_quant_get(wt);
    pare_type at = q ? q->vec_dot_type : PARE_TYPE_F32;
    if (at == PARE_TYPE_Q8_1) at = PARE_TYPE_Q8_0;
    switch (at) {
    case PARE_TYPE_F16:
        for (int64_t i = 0; i < n; i++) y[i] = round_f16(x[i]);
        break;
    case PARE_TYPE_BF16:
        for (int64_t i = 0; i < n; i++) y[i] = pare_bf16_to_fp32(pare_fp32_to_bf16(x[i]));
        break;
    case PARE_TYPE_Q8_0: llm_round_q8_0(x, y, n); break;
    case PARE_TYPE_Q8_K: llm_round_q8_K(x, y, n); break;
    default: memcpy(y, x, (size_t)n * sizeof *y); break;
    }
}

/* y[M][n_out] = x[M][n_in] W_e^T, W_e rows [e * n_out, (e + 1) * n_out) of t (e = 0 for 2-D
 * weights). Integer products for quantized weights in memory (ggml's roundings); else the
 * weight in f32 (llm_weight_f32) and the f32 product, activations rounded as ggml does.
 * xr: M * n_in floats of scratch. */
static pare_status mm(pare_llm *llm, const pare_tensor *t, int64_t n_in, int64_t n_out, int e, const float *x, int M,
                      float *y, float *xr, pare_err *err) {
    if (M == 0) return PARE_OK;
    const pare_type wt = t->type;
    const int K = (int)n_in, N = (int)n_out;
    if (llm->ggml_round && t->data) {
        const size_t ldw = pare_type_row_size(wt, n_in);
        const void *W = (const uint8_t *)t->data + (size_t)e * (size_t)n_out * ldw;
        const bool q8 = llm_qgemm_handles(wt) && K % 32 == 0, iq = llm_iqgemm_handles(wt) && K % 256 == 0,
                   kq = llm_kgemm_handles(wt) && K % 256 == 0;
        if (q8 || iq || kq) {
            const size_t ws = q8 ? llm_qgemm_ws(M, K) : iq ? llm_iqgemm_ws(M, K) : llm_kgemm_ws(M, K);
            FAIL_IF(!llm_ws_reserve(&llm->qws, &llm->qws_cap, ws), PARE_ENOMEM,
                    "%s: out of memory for quantized activations", llm->name);
            const bool done = q8   ? llm_qgemm(llm->pool, wt, M, N, K, x, K, W, ldw, y, N, llm->qws)
                              : iq ? llm_iqgemm(llm->pool, wt, M, N, K, x, K, W, y, N, llm->qws)
                                   : llm_kgemm(llm->pool, wt, M, N, K, x, K, W, y, N, llm->qws);
            if (done) return PARE_OK; /* else: the f32 way below */
        }
    }
    const float *xin = x;
    if (llm->ggml_round) {
        for (int r = 0; r < M; r++) round_act(wt, x + (size_t)r * K, xr + (size_t)r * K, K);
        xin = xr;
    }
    const int64_t n_exp = t->ne[2];
    const llm_mat w = {.t = t, .n_in = n_in, .n_out = n_out * n_exp};
    const float *Wf;
    TRY(llm_weight_f32(llm, &w, (int64_t)e * n_out, (int64_t)(e + 1) * n_out, &Wf, err));
    llm_ws_reserve((void **)&llm->gws, &llm->gws_cap, llm_gemm_ws(M, K) * sizeof(float));
    llm_gemm_nt(llm->pool, M, N, K, xin, K, Wf, K, y, N, llm->gws);
    return PARE_OK;
}

/* ggml's silu: x / (1 + e^-x) */
static float silu(float x) { return x / (1.0f + expf(-x)); }

/* One expert (or the shared one) on M rows: y = down(silu(gate x) * up x). */
static pare_status expert_ffn(pare_llm *llm, const pare_tensor *const ts[3], const int64_t io[3][2], int e,
                              const float *x, int M, float *y, float *hu, float *hg, float *xr, int il,
                              const char *const names[3], bool experts, pare_err *err) {
    if (experts && llm->expert_hook) {
        llm->expert_hook(llm->expert_hook_user, names[0], e, llm->n_expert, x, M, (int)io[0][0]);
        llm->expert_hook(llm->expert_hook_user, names[1], e, llm->n_expert, x, M, (int)io[1][0]);
    } else if (!experts && llm->hook) {
        llm->hook(llm->hook_user, names[0], x, M, (int)io[0][0]);
        llm->hook(llm->hook_user, names[1], x, M, (int)io[1][0]);
    }
    TRY(mm(llm, ts[0], io[0][0], io[0][1], e, x, M, hu, xr, err)); /* up */
    TRY(mm(llm, ts[1], io[1][0], io[1][1], e, x, M, hg, xr, err)); /* gate */
    const int64_t F = io[0][1];
    llm_swiglu_rows(hg, hu, M, F); /* the dense FFN's loops (forward.c) */
    if (experts && llm->expert_hook)
        llm->expert_hook(llm->expert_hook_user, names[2], e, llm->n_expert, hg, M, (int)io[2][0]);
    else if (!experts && llm->hook)
        llm->hook(llm->hook_user, names[2], hg, M, (int)io[2][0]);
    (void)il;
    return mm(llm, ts[2], io[2][0], io[2][1], e, hg, M, y, xr, err); /* down */
}

/* ------------------------------------------------------------------------ routing */

/* ggml_soft_max of one row of n (ggml_vec_soft_max_f32's scalar loop: e^(x - max) summed in
 * double, then scaled by the float of 1 / sum). */
static void softmax(const float *x, float *p, int n) {
    float max = -INFINITY;
    for (int i = 0; i < n; i++) max = fmaxf(max, x[i]);
    double sum = 0;
    for (int i = 0; i < n; i++) {
        p[i] = expf(x[i] - max);
        sum += (double)p[i];
    }
    const float inv = (float)(1.0 / sum);
    for (int i = 0; i < n; i++) p[i] *= inv;
}

/* The first k of ggml_argsort (descending) of p: its selection sort, position by position. */
static void top_k(const float *p, int n, int k, int *idx) {
    int ord[4096];
    for (int j = 0; j < n; j++) ord[j] = j;
    for (int j = 0; j < k; j++)
        for (int m = j + 1; m < n; m++)
            if (p[ord[j]] < p[ord[m]]) {
                const int s = ord[j];
                ord[j] = ord[m];
                ord[m] = s;
            }
    memcpy(idx, ord, (size_t)k * sizeof *idx);
}

pare_status llm_moe_ffn(pare_llm *llm, int il, int T, const float *xn, float *out, pare_err *err) {
    const struct llm_moe *moe = llm->layers[il].moe;
    FAIL_IF(!moe, PARE_EINPUT, "%s: layer %d has no experts", llm->name, il);
    const int D = llm->n_embd, E = llm->n_expert, K = llm->n_expert_used;
    const int64_t F = moe->up.n_out, Fs = moe->up_sh.t ? moe->up_sh.n_out : 0;
    const int64_t Fm = F > Fs ? F : Fs, W = D > Fm ? D : Fm;
    char names[6][64];
    static const char *const suffix[6] = {"ffn_up_exps", "ffn_gate_exps", "ffn_down_exps",
                                          "ffn_up_shexp", "ffn_gate_shexp", "ffn_down_shexp"};
    for (int i = 0; i < 6; i++) snprintf(names[i], sizeof names[i], "blk.%d.%s.weight", il, suffix[i]);
    /* scratch: router logits and probabilities, the selection, the rows of one expert (its
     * inputs, two hidden buffers, its outputs), every (token, slot)'s output, a rounding buffer */
    const size_t TK = (size_t)T * (size_t)K;
    float *probs = malloc(((size_t)T * E * 2 + TK) * sizeof(float));
    int *sel = malloc(TK * sizeof(int)), *rows = malloc(TK * sizeof(int));
    float *xe = malloc((size_t)T * (size_t)(D + 2 * Fm + D) * sizeof(float));
    float *eo = malloc(TK * (size_t)D * sizeof(float)), *xr = malloc((size_t)T * (size_t)W * sizeof(float));
    pare_status st = PARE_OK;
    if (!probs || !sel || !rows || !xe || !eo || !xr) {
        st = pare_err_set(err, PARE_ENOMEM, "%s: out of memory for the experts of %d tokens", llm->name, T);
        goto done;
    }
    float *logits = probs + (size_t)T * E, *wts = logits + (size_t)T * E;
    float *hu = xe + (size_t)T * D, *hg = hu + (size_t)T * Fm, *ye = hg + (size_t)T * Fm;
    /* router */
    if (llm->hook) llm->hook(llm->hook_user, moe->gate_inp.t->name, xn, T, D);
    if ((st = mm(llm, moe->gate_inp.t, D, E, 0, xn, T, logits, xr, err))) goto done;
    for (int t = 0; t < T; t++) {
        float *p = probs + (size_t)t * E, *w = wts + (size_t)t * K;
        int *s = sel + (size_t)t * K;
        softmax(logits + (size_t)t * E, p, E);
        top_k(p, E, K, s);
        for (int k = 0; k < K; k++) w[k] = p[s[k]];
        if (moe->norm_w) { /* ggml_sum_rows (a double sum, stored as float), ggml_div */
            double sum = 0;
            for (int k = 0; k < K; k++) sum += (double)w[k];
            const float fs = (float)sum;
            for (int k = 0; k < K; k++) w[k] = w[k] / fs;
        }
    }
    /* each expert on the rows routed to it (mul_mat_id's grouping: tokens in order) */
    const pare_tensor *const ts[3] = {moe->up.t, moe->gate.t, moe->down.t};
    const int64_t io[3][2] = {{D, F}, {D, F}, {F, D}};
    const char *const en[3] = {names[0], names[1], names[2]};
    for (int e = 0; e < E && !st; e++) {
        int M = 0;
        for (size_t r = 0; r < TK; r++)
            if (sel[r] == e) {
                rows[M] = (int)r;
                memcpy(xe + (size_t)M * D, xn + (r / (size_t)K) * D, (size_t)D * sizeof(float));
                M++;
            }
        if (M == 0) continue;
        st = expert_ffn(llm, ts, io, e, xe, M, ye, hu, hg, xr, il, en, true, err);
        for (int m = 0; m < M && !st; m++)
            memcpy(eo + (size_t)rows[m] * D, ye + (size_t)m * D, (size_t)D * sizeof(float));
    }
    if (st) goto done;
    /* weighted (ggml_mul), then the slots added in order */
    for (int t = 0; t < T; t++) {
        float *o = out + (size_t)t * D;
        for (int k = 0; k < K; k++) {
            const float w = wts[(size_t)t * K + k], *v = eo + ((size_t)t * K + k) * D;
            for (int i = 0; i < D; i++) o[i] = k == 0 ? v[i] * w : o[i] + v[i] * w;
        }
    }
    if (moe->up_sh.t) { /* the shared expert, scaled by its sigmoid gate */
        const pare_tensor *const tsh[3] = {moe->up_sh.t, moe->gate_sh.t, moe->down_sh.t};
        const int64_t iosh[3][2] = {{D, Fs}, {D, Fs}, {Fs, D}};
        const char *const sn[3] = {names[3], names[4], names[5]};
        st = expert_ffn(llm, tsh, iosh, 0, xn, T, eo, hu, hg, xr, il, sn, false, err);
        if (st) goto done;
        /* x ffn_gate_inp_shexp^T: an f32 [n_embd] weight, as the f32 product of one row */
        char gname[64];
        snprintf(gname, sizeof gname, "blk.%d.ffn_gate_inp_shexp.weight", il);
        if (llm->hook) llm->hook(llm->hook_user, gname, xn, T, D);
        llm_ws_reserve((void **)&llm->gws, &llm->gws_cap, llm_gemm_ws(T, D) * sizeof(float));
        llm_gemm_nt(llm->pool, T, 1, D, xn, D, moe->gate_inp_sh, D, logits, 1, llm->gws);
        for (int t = 0; t < T; t++) {
            const float g = logits[t], sg = silu(g) / g; /* llama.cpp: ggml_div(ggml_silu(g), g) */
            float *o = out + (size_t)t * D;
            const float *v = eo + (size_t)t * D;
            for (int i = 0; i < D; i++) o[i] = o[i] + v[i] * sg;
        }
    }
done:
    free(probs);
    free(sel);
    free(rows);
    free(xe);
    free(eo);
    free(xr);
    return st;
}

void pare_llm_set_expert_hook(pare_llm *llm, pare_llm_expert_fn fn, void *user) {
    llm->expert_hook = fn;
    llm->expert_hook_user = user;
}
