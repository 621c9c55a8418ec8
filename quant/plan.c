/*
 * quant/plan.c - llama-quantize's per-tensor type choice (src/llama-quant.cpp, February
 * 2025: llama_tensor_get_type and the filters of llama_model_quantize_impl).
 *
 * The rules depend on counters that advance as tensors are visited (how many attn_v /
 * ffn_down tensors came before), so tensors are visited in llama-quantize's order
 * (pare_quant_plan_order) and the counters are kept exactly as it keeps them, including
 * where they advance in one branch and not in another.
 */
#include "quant/plan.h"

#include <ctype.h>
#include <fnmatch.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ ftypes */

static const struct {
    const char *name;
    int ftype;
    pare_type base;
} FTYPES[] = {
    {"F32", PARE_FTYPE_ALL_F32, PARE_TYPE_F32},      {"F16", PARE_FTYPE_F16, PARE_TYPE_F16},
    {"BF16", PARE_FTYPE_BF16, PARE_TYPE_BF16},       {"Q4_0", PARE_FTYPE_Q4_0, PARE_TYPE_Q4_0},
    {"Q4_1", PARE_FTYPE_Q4_1, PARE_TYPE_Q4_1},       {"Q5_0", PARE_FTYPE_Q5_0, PARE_TYPE_Q5_0},
    {"Q5_1", PARE_FTYPE_Q5_1, PARE_TYPE_Q5_1},       {"Q8_0", PARE_FTYPE_Q8_0, PARE_TYPE_Q8_0},
    {"Q2_K", PARE_FTYPE_Q2_K, PARE_TYPE_Q2_K},       {"Q2_K_S", PARE_FTYPE_Q2_K_S, PARE_TYPE_Q2_K},
    {"Q3_K_S", PARE_FTYPE_Q3_K_S, PARE_TYPE_Q3_K},   {"Q3_K_M", PARE_FTYPE_Q3_K_M, PARE_TYPE_Q3_K},
    {"Q3_K_L", PARE_FTYPE_Q3_K_L, PARE_TYPE_Q3_K},   {"Q4_K_S", PARE_FTYPE_Q4_K_S, PARE_TYPE_Q4_K},
    {"Q4_K_M", PARE_FTYPE_Q4_K_M, PARE_TYPE_Q4_K},   {"Q5_K_S", PARE_FTYPE_Q5_K_S, PARE_TYPE_Q5_K},
    {"Q5_K_M", PARE_FTYPE_Q5_K_M, PARE_TYPE_Q5_K},   {"Q6_K", PARE_FTYPE_Q6_K, PARE_TYPE_Q6_K},
    {"IQ2_XXS", PARE_FTYPE_IQ2_XXS, PARE_TYPE_IQ2_XXS}, {"IQ2_XS", PARE_FTYPE_IQ2_XS, PARE_TYPE_IQ2_XS},
    {"IQ2_S", PARE_FTYPE_IQ2_S, PARE_TYPE_IQ2_XS},   {"IQ2_M", PARE_FTYPE_IQ2_M, PARE_TYPE_IQ2_S},
    {"IQ3_XS", PARE_FTYPE_IQ3_XS, PARE_TYPE_IQ3_S},  {"IQ3_XXS", PARE_FTYPE_IQ3_XXS, PARE_TYPE_IQ3_XXS},
    {"IQ3_S", PARE_FTYPE_IQ3_S, PARE_TYPE_IQ3_S},    {"IQ3_M", PARE_FTYPE_IQ3_M, PARE_TYPE_IQ3_S},
    {"IQ1_S", PARE_FTYPE_IQ1_S, PARE_TYPE_IQ1_S},    {"IQ1_M", PARE_FTYPE_IQ1_M, PARE_TYPE_IQ1_M},
    {"IQ4_NL", PARE_FTYPE_IQ4_NL, PARE_TYPE_IQ4_NL}, {"IQ4_XS", PARE_FTYPE_IQ4_XS, PARE_TYPE_IQ4_XS},
    {"TQ1_0", PARE_FTYPE_TQ1_0, PARE_TYPE_TQ1_0},    {"TQ2_0", PARE_FTYPE_TQ2_0, PARE_TYPE_TQ2_0},
    /* llama-quantize's aliases */
    {"Q3_K", PARE_FTYPE_Q3_K_M, PARE_TYPE_Q3_K},     {"Q4_K", PARE_FTYPE_Q4_K_M, PARE_TYPE_Q4_K},
    {"Q5_K", PARE_FTYPE_Q5_K_M, PARE_TYPE_Q5_K},
};
#define N_FTYPES (sizeof FTYPES / sizeof FTYPES[0])

static bool str_ieq(const char *a, const char *b) {
    for (; *a && *b; a++, b++)
        if (tolower((unsigned char)*a) != tolower((unsigned char)*b)) return false;
    return *a == *b;
}

bool pare_ftype_from_name(const char *name, int *ftype) {
    if (!name || !*name) return false;
    for (size_t i = 0; i < N_FTYPES; i++) {
        if (str_ieq(name, FTYPES[i].name)) {
            *ftype = FTYPES[i].ftype;
            return true;
        }
    }
    char *end = NULL;
    long v = strtol(name, &end, 10);
    if (isdigit((unsigned char)name[0]) && *end == '\0' && v >= 0 && v < 64 && pare_ftype_name((int)v)) {
        *ftype = (int)v;
        return true;
    }
    return false;
}

const char *pare_ftype_name(int ftype) {
    for (size_t i = 0; i < N_FTYPES; i++)
        if (FTYPES[i].ftype == ftype) return FTYPES[i].name; /* canonical names come first */
    return NULL;
}

pare_type pare_ftype_base_type(int ftype) {
    for (size_t i = 0; i < N_FTYPES; i++)
        if (FTYPES[i].ftype == ftype) return FTYPES[i].base;
    return PARE_TYPE_INVALID;
}

/* ------------------------------------------------------------------ model facts */

/* What llama_tensor_get_type reads from the model and the counters it keeps. */
typedef struct plan_state {
    const pare_quant_plan_opts *o;
    int ftype;
    bool falcon, is_70b, has_output, has_imatrix;
    int n_expert;     /* hparams.n_expert (0 when absent) */
    int n_gqa;        /* n_head / n_head_kv of layer 0 (0 when n_head_kv is 0) */
    int n_attention_wv, n_ffn_down, n_ffn_gate, n_ffn_up;
    int i_attention_wv, i_ffn_down, i_ffn_gate, i_ffn_up;
} plan_state;

/* An arch key as an integer: a scalar, or element 0 of a per-layer array. */
static bool arch_key(const pare_model *m, const char *arch, const char *suffix, int64_t *out) {
    char key[256];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    const pare_kv *kv = pare_meta_get(&m->meta, key);
    if (!kv) return false;
    if (kv->type == PARE_META_ARRAY) return pare_kv_arr_i64(kv, 0, out);
    return pare_meta_get_i64(&m->meta, key, out);
}

static bool has_text(const char *name, const char *part) { return strstr(name, part) != NULL; }

static pare_status read_hparams(const pare_model *m, plan_state *st, int *n_layer, pare_err *err) {
    const char *arch = m->arch ? m->arch : pare_meta_get_str(&m->meta, "general.architecture");
    FAIL_IF(!arch, PARE_EINPUT, "%s: no general.architecture", m->path ? m->path : "model");
    int64_t nl = 0, nh = 0, nkv = 0, ne = 0;
    FAIL_IF(!arch_key(m, arch, "block_count", &nl) || nl < 0 || nl > (1 << 20), PARE_EINPUT,
            "%s: no usable %s.block_count", m->path ? m->path : "model", arch);
    arch_key(m, arch, "attention.head_count", &nh);
    if (!arch_key(m, arch, "attention.head_count_kv", &nkv)) nkv = nh; /* default, as llama.cpp */
    arch_key(m, arch, "expert_count", &ne);
    *n_layer = (int)nl;
    st->n_expert = ne > 0 && ne < (1 << 20) ? (int)ne : 0;
    st->n_gqa = nkv > 0 ? (int)(nh / nkv) : 0;
    st->falcon = strcmp(arch, "falcon") == 0;
    /* llama.cpp's model type LLM_TYPE_70B (attn_v gets Q5_K instead of Q3_K / Q4_K): 80
     * layers of llama (with GQA; not the 8-expert type), deci or qwen2. */
    st->is_70b = nl == 80 && ((strcmp(arch, "llama") == 0 && nh != nkv && st->n_expert != 8) ||
                              strcmp(arch, "deci") == 0 || strcmp(arch, "qwen2") == 0);
    return PARE_OK;
}

/* ------------------------------------------------------------------ order */

/* The layer of "blk.N.xxx" (sscanf "blk.%d." semantics), or -1. */
static int name_layer(const char *name) {
    int layer = -1;
    if (sscanf(name, "blk.%d.", &layer) != 1) return -1;
    return layer;
}

static int order_cmp(const pare_model *m, size_t a, size_t b) {
    const char *na = m->tensors[a].name, *nb = m->tensors[b].name;
    int la = name_layer(na), lb = name_layer(nb);
    if (la != lb) return la < lb ? -1 : 1;
    return strcmp(na, nb);
}

void pare_quant_plan_order(const pare_model *m, size_t *order) {
    /* insertion sort: tensor lists are short and mostly in order already */
    for (size_t i = 0; i < m->n_tensors; i++) {
        size_t j = i;
        while (j > 0 && order_cmp(m, order[j - 1], i) > 0) {
            order[j] = order[j - 1];
            j--;
        }
        order[j] = i;
    }
}

/* ------------------------------------------------------------------ filters */

/* ggml_n_dims: dimensions up to the last one that is not 1. */
static int ggml_dims(const pare_tensor *t) {
    int n = 1;
    for (int i = 1; i < PARE_MAX_DIMS; i++)
        if (t->ne[i] > 1) n = i + 1;
    return n;
}

void pare_quant_plan_dims(pare_model *m) {
    for (size_t i = 0; i < m->n_tensors; i++) m->tensors[i].n_dims = ggml_dims(&m->tensors[i]);
}

/* Whether llama-quantize would quantize this tensor at all. */
static bool quantizable(const pare_tensor *t, const pare_quant_plan_opts *o) {
    static const char *const never_in[] = {
        "_norm.weight",           "ffn_gate_inp.weight",     /* norms; MoE router */
        "ssm_conv1d.weight",                                 /* Mamba */
        "time_mix_first.weight",  "time_mix_w1.weight",      /* RWKV */
        "time_mix_w2.weight",     "time_mix_decay_w1.weight",
        "time_mix_decay_w2.weight", "time_mix_lerp_fused.weight",
        "attn_rel_b.weight",                                 /* T5 relative position bias */
    };
    const char *n = t->name;
    if (!pare_str_ends_with(n, "weight") || ggml_dims(t) < 2) return false;
    for (size_t i = 0; i < sizeof never_in / sizeof never_in[0]; i++)
        if (has_text(n, never_in[i])) return false;
    if (strcmp(n, "position_embd.weight") == 0 || strcmp(n, "token_types.weight") == 0) return false;
    if (o->leave_output && strcmp(n, "output.weight") == 0) return false;
    return true;
}

static int64_t blck(pare_type t) { return pare_type_get(t)->block_size; }
static bool is_quant(pare_type t) { return pare_type_get(t)->is_quantized; }

/* ------------------------------------------------------------------ llama_tensor_get_type */

#define FT(x) (ft == PARE_FTYPE_##x)

static bool use_more_bits(int i_layer, int n_layers) {
    return i_layer < n_layers / 8 || i_layer >= 7 * n_layers / 8 || (i_layer - n_layers / 8) % 3 == 2;
}

/* The layer of an ffn tensor: the running counter, or for MoE models (experts are not
 * stored consecutively) the number in the name. */
static pare_status layer_info(const plan_state *st, int counter, int n_layer, const char *name, int *i_layer,
                              pare_err *err) {
    *i_layer = counter;
    if ((st->n_expert > 1 ? st->n_expert : 1) > 1) {
        int l = -1;
        FAIL_IF(sscanf(name, "blk.%d.", &l) != 1, PARE_EINPUT, "tensor '%s': cannot determine its layer", name);
        FAIL_IF(l < 0 || l >= n_layer, PARE_EINPUT, "tensor '%s': layer %d not in [0, %d)", name, l, n_layer);
        *i_layer = l;
    }
    return PARE_OK;
}

/* output.weight, or token_embd.weight when the embeddings are tied. */
static pare_type type_output(const plan_state *st, pare_type nt, const pare_tensor *t) {
    const int ft = st->ftype;
    if (st->o->output_type != PARE_TYPE_INVALID) return st->o->output_type;
    if (st->falcon || t->ne[0] % blck(nt) != 0) return PARE_TYPE_Q8_0;
    if (FT(IQ2_XXS) || FT(IQ2_XS) || FT(IQ3_XXS) || FT(IQ1_S) || FT(IQ2_S) || FT(IQ2_M) || FT(IQ1_M))
        return PARE_TYPE_Q5_K;
    return nt != PARE_TYPE_Q8_0 ? PARE_TYPE_Q6_K : nt;
}

static pare_type type_token_embd(const plan_state *st, pare_type nt) {
    const int ft = st->ftype;
    if (st->o->token_embd_type != PARE_TYPE_INVALID) return st->o->token_embd_type;
    if (FT(IQ2_XXS) || FT(IQ2_XS) || FT(IQ1_S) || FT(IQ1_M)) return PARE_TYPE_Q2_K;
    if (FT(IQ2_S) || FT(IQ2_M) || FT(IQ3_XXS)) return PARE_TYPE_IQ3_S;
    if (FT(TQ1_0) || FT(TQ2_0)) return PARE_TYPE_Q4_K;
    return nt;
}

/* The 1- and 2-bit mixes (IQ1_S, IQ1_M, IQ2_XXS, IQ2_XS, IQ2_S, IQ2_M). */
static pare_type type_lowbit(plan_state *st, pare_type nt, const char *name) {
    const int ft = st->ftype;
    const bool iq2sm = FT(IQ2_S) || FT(IQ2_M);
    if (has_text(name, "attn_v.weight")) {
        if (st->n_gqa >= 4 || st->n_expert >= 4) nt = PARE_TYPE_Q4_K;
        else nt = iq2sm ? PARE_TYPE_IQ3_S : PARE_TYPE_Q2_K;
        st->i_attention_wv++;
    } else if (st->n_expert == 8 && has_text(name, "attn_k.weight")) {
        nt = PARE_TYPE_Q4_K;
    } else if (has_text(name, "ffn_down")) {
        if (st->i_ffn_down < st->n_ffn_down / 8) nt = iq2sm ? PARE_TYPE_IQ3_S : PARE_TYPE_Q2_K;
        st->i_ffn_down++;
    } else if (has_text(name, "attn_output.weight")) {
        if (st->n_expert == 8) nt = PARE_TYPE_Q5_K;
        else if (FT(IQ1_S) || FT(IQ1_M)) nt = PARE_TYPE_IQ2_XXS;
        else if (iq2sm) nt = PARE_TYPE_IQ3_S;
    }
    return nt;
}

static pare_type type_attn_v(plan_state *st, pare_type nt) {
    const int ft = st->ftype, gqa4 = st->n_gqa >= 4;
    if (FT(Q2_K)) nt = gqa4 ? PARE_TYPE_Q4_K : PARE_TYPE_Q3_K;
    else if (FT(Q2_K_S) && gqa4) nt = PARE_TYPE_Q4_K;
    else if (FT(IQ3_XXS)) nt = gqa4 ? PARE_TYPE_Q4_K : !st->has_imatrix ? PARE_TYPE_IQ3_S : PARE_TYPE_IQ3_XXS;
    else if ((FT(IQ3_XS) || FT(IQ3_S)) && gqa4) nt = PARE_TYPE_Q4_K;
    else if (FT(IQ3_M)) nt = PARE_TYPE_Q4_K;
    else if (FT(Q3_K_M)) nt = st->i_attention_wv < 2 ? PARE_TYPE_Q5_K : PARE_TYPE_Q4_K;
    else if (FT(Q3_K_L)) nt = PARE_TYPE_Q5_K;
    else if ((FT(IQ4_NL) || FT(IQ4_XS)) && gqa4) nt = PARE_TYPE_Q5_K;
    else if ((FT(Q4_K_M) || FT(Q5_K_M)) && use_more_bits(st->i_attention_wv, st->n_attention_wv)) nt = PARE_TYPE_Q6_K;
    else if (FT(Q4_K_S) && st->i_attention_wv < 4) nt = PARE_TYPE_Q5_K;
    /* 70B: 8 query heads share each attn_v row, so it is small and worth more bits */
    if (st->is_70b && (nt == PARE_TYPE_Q3_K || nt == PARE_TYPE_Q4_K)) nt = PARE_TYPE_Q5_K;
    if (st->n_expert == 8) nt = PARE_TYPE_Q8_0;
    st->i_attention_wv++;
    return nt;
}

static pare_status type_ffn_down(plan_state *st, pare_type *ntp, const char *name, pare_err *err) {
    const int ft = st->ftype;
    int i = 0;
    const int n = st->n_ffn_down;
    TRY(layer_info(st, st->i_ffn_down, n, name, &i, err));
    pare_type nt = *ntp;
    const bool more = use_more_bits(i, n);
    if (FT(Q2_K)) nt = PARE_TYPE_Q3_K;
    else if (FT(Q2_K_S)) { if (i < n / 8) nt = PARE_TYPE_Q4_K; }
    else if (FT(IQ3_XXS) && !st->has_imatrix) nt = i < n / 8 ? PARE_TYPE_Q4_K : PARE_TYPE_Q3_K;
    else if (FT(Q3_K_M)) nt = i < n / 16 ? PARE_TYPE_Q5_K : !st->falcon || more ? PARE_TYPE_Q4_K : PARE_TYPE_Q3_K;
    else if (FT(IQ3_M) && (i < n / 8 || (st->n_expert == 8 && more))) nt = PARE_TYPE_Q4_K;
    else if (FT(Q3_K_L)) nt = st->falcon ? PARE_TYPE_Q4_K : PARE_TYPE_Q5_K;
    else if (FT(Q4_K_M)) {
        if (st->falcon) nt = i < n / 16 ? PARE_TYPE_Q6_K : more ? PARE_TYPE_Q5_K : PARE_TYPE_Q4_K;
        else if (more) nt = PARE_TYPE_Q6_K;
    } else if (i < n / 8 && (FT(IQ4_NL) || FT(IQ4_XS)) && !st->has_imatrix) nt = PARE_TYPE_Q5_K;
    else if (FT(Q5_K_M) && more) nt = PARE_TYPE_Q6_K;
    else if (FT(Q4_K_S) && !st->falcon && i < n / 8) nt = PARE_TYPE_Q5_K;
    else if ((FT(Q4_0) || FT(Q5_0)) && st->has_imatrix && i < n / 8)
        nt = FT(Q4_0) ? PARE_TYPE_Q4_1 : PARE_TYPE_Q5_1; /* guard the first layers' outliers */
    st->i_ffn_down++;
    *ntp = nt;
    return PARE_OK;
}

static pare_type type_attn_output(const plan_state *st, pare_type nt) {
    const int ft = st->ftype;
    if (st->falcon) return FT(Q3_K_L) ? PARE_TYPE_Q4_K : nt;
    if (st->n_expert == 8) {
        if (FT(Q2_K) || FT(IQ3_XS) || FT(IQ3_XXS) || FT(Q3_K_S) || FT(Q3_K_M) || FT(IQ4_NL) || FT(Q4_K_S) ||
            FT(Q4_K_M) || FT(IQ3_S) || FT(IQ3_M) || FT(IQ4_XS))
            nt = PARE_TYPE_Q5_K;
        return nt;
    }
    if (FT(Q2_K)) nt = PARE_TYPE_Q3_K;
    else if (FT(IQ3_XXS)) nt = PARE_TYPE_IQ3_S;
    else if (FT(Q3_K_M)) nt = PARE_TYPE_Q4_K;
    else if (FT(Q3_K_L)) nt = PARE_TYPE_Q5_K;
    else if (FT(IQ3_M)) nt = PARE_TYPE_Q4_K;
    return nt;
}

/* ffn_gate / ffn_up: IQ3_XS takes the middle layers down to IQ3_XXS. */
static pare_status type_ffn_gate_up(plan_state *st, int *counter, int n, pare_type *nt, const char *name,
                                    pare_err *err) {
    int i = 0;
    TRY(layer_info(st, *counter, n, name, &i, err));
    if (st->ftype == PARE_FTYPE_IQ3_XS && i >= n / 8 && i < 7 * n / 8) *nt = PARE_TYPE_IQ3_XXS;
    (*counter)++;
    return PARE_OK;
}

pare_type pare_quant_fallback_type(pare_type t) {
    switch (t) {
    case PARE_TYPE_TQ1_0: case PARE_TYPE_TQ2_0: return PARE_TYPE_Q4_0;
    case PARE_TYPE_IQ2_XXS: case PARE_TYPE_IQ2_XS: case PARE_TYPE_IQ2_S: case PARE_TYPE_IQ3_XXS:
    case PARE_TYPE_IQ3_S: case PARE_TYPE_IQ1_S: case PARE_TYPE_IQ1_M: case PARE_TYPE_Q2_K:
    case PARE_TYPE_Q3_K: case PARE_TYPE_IQ4_XS: return PARE_TYPE_IQ4_NL;
    case PARE_TYPE_Q4_K: return PARE_TYPE_Q5_0;
    case PARE_TYPE_Q5_K: return PARE_TYPE_Q5_1;
    case PARE_TYPE_Q6_K: return PARE_TYPE_Q8_0;
    default: return PARE_TYPE_INVALID;
    }
}

/* When ne[0] is not a multiple of the chosen type's block: a type with smaller blocks. */
static pare_status fallback(pare_type *ntp, const pare_tensor *t, pare_err *err) {
    pare_type nt = *ntp;
    if (t->ne[0] % blck(nt) == 0) return PARE_OK;
    nt = pare_quant_fallback_type(nt);
    if (nt == PARE_TYPE_INVALID)
        return pare_err_set(err, PARE_EUNSUPPORTED,
                            "tensor '%s': %" PRId64 " columns are not a multiple of %s's block of %" PRId64
                            " and llama-quantize has no fallback type for it",
                            t->name, t->ne[0], pare_type_name(*ntp), blck(*ntp));
    if (t->ne[0] % blck(nt) != 0) nt = PARE_TYPE_F16;
    *ntp = nt;
    return PARE_OK;
}

/* llama_tensor_get_type: the mix's choice for one quantizable tensor, starting at the base. */
static pare_status get_type(plan_state *st, const pare_tensor *t, pare_type *ntp, pare_err *err) {
    const char *name = t->name;
    const int ft = st->ftype;
    pare_type nt = *ntp;
    if (strcmp(name, "output.weight") == 0 || (!st->has_output && strcmp(name, "token_embd.weight") == 0)) {
        nt = type_output(st, nt, t);
    } else if (strcmp(name, "token_embd.weight") == 0) {
        nt = type_token_embd(st, nt);
    } else if (FT(IQ2_XXS) || FT(IQ2_XS) || FT(IQ1_S) || FT(IQ2_S) || FT(IQ2_M) || FT(IQ1_M)) {
        nt = type_lowbit(st, nt, name);
    } else if (has_text(name, "attn_v.weight")) {
        nt = type_attn_v(st, nt);
    } else if (has_text(name, "attn_k.weight")) {
        if (st->n_expert == 8) nt = PARE_TYPE_Q8_0;
        else if (FT(IQ3_XS)) nt = PARE_TYPE_IQ3_XXS;
        else if (FT(IQ3_XXS)) nt = PARE_TYPE_IQ2_S;
    } else if (has_text(name, "attn_q.weight")) {
        if (FT(IQ3_XS)) nt = PARE_TYPE_IQ3_XXS;
        else if (FT(IQ3_XXS)) nt = PARE_TYPE_IQ2_S;
    } else if (has_text(name, "ffn_down")) {
        TRY(type_ffn_down(st, &nt, name, err));
    } else if (has_text(name, "attn_output.weight")) {
        nt = type_attn_output(st, nt);
    } else if (has_text(name, "attn_qkv.weight")) {
        if (FT(Q3_K_M) || FT(Q3_K_L) || FT(IQ3_M)) nt = PARE_TYPE_Q4_K;
        else if (FT(Q4_K_M)) nt = PARE_TYPE_Q5_K;
        else if (FT(Q5_K_M)) nt = PARE_TYPE_Q6_K;
    } else if (has_text(name, "ffn_gate")) {
        TRY(type_ffn_gate_up(st, &st->i_ffn_gate, st->n_ffn_gate, &nt, name, err));
    } else if (has_text(name, "ffn_up")) {
        TRY(type_ffn_gate_up(st, &st->i_ffn_up, st->n_ffn_up, &nt, name, err));
    }
    TRY(fallback(&nt, t, err));
    *ntp = nt;
    return PARE_OK;
}

#undef FT

/* ------------------------------------------------------------------ the plan */

/* Types llama-quantize refuses to produce without importance values for the tensor. */
static bool needs_imatrix(pare_type nt, int ftype, const char *name) {
    const bool embd = strcmp(name, "token_embd.weight") == 0, out = strcmp(name, "output.weight") == 0;
    return nt == PARE_TYPE_IQ2_XXS || nt == PARE_TYPE_IQ2_XS || nt == PARE_TYPE_IQ2_S || nt == PARE_TYPE_IQ1_S ||
           (nt == PARE_TYPE_IQ1_M && !embd && !out) || (nt == PARE_TYPE_Q2_K && ftype == PARE_FTYPE_Q2_K_S && !embd);
}

/* The user's explicit choices, applied after the mix's: --tensor-type globs (first match),
 * then --token-embedding-type and --output-tensor-type. Sets *user when one applied. */
static pare_type user_overrides(const pare_quant_plan_opts *o, const char *name, pare_type nt, bool *user) {
    for (size_t j = 0; j < o->n_overrides; j++) {
        if (fnmatch(o->override_globs[j], name, 0) == 0) {
            nt = o->override_types[j];
            *user = true;
            break;
        }
    }
    if (o->token_embd_type != PARE_TYPE_INVALID && strcmp(name, "token_embd.weight") == 0) {
        nt = o->token_embd_type;
        *user = true;
    }
    if (o->output_type != PARE_TYPE_INVALID && strcmp(name, "output.weight") == 0) {
        nt = o->output_type;
        *user = true;
    }
    return nt;
}

static pare_status check_opts(const pare_quant_plan_opts *o, pare_type base, pare_err *err) {
    FAIL_IF(base == PARE_TYPE_INVALID, PARE_EUSAGE, "unknown quantization ftype %d", o->ftype);
    const pare_type user[2] = {o->output_type, o->token_embd_type};
    for (int k = 0; k < 2; k++)
        FAIL_IF(user[k] != PARE_TYPE_INVALID && (!pare_type_valid(user[k]) || user[k] >= PARE_TYPE_GGML_COUNT),
                PARE_EUSAGE, "type %d is not a GGUF tensor type", (int)user[k]);
    for (size_t j = 0; j < o->n_overrides; j++)
        FAIL_IF(!pare_type_valid(o->override_types[j]) || o->override_types[j] >= PARE_TYPE_GGML_COUNT, PARE_EUSAGE,
                "--tensor-type %s: type %d is not a GGUF tensor type", o->override_globs[j],
                (int)o->override_types[j]);
    return PARE_OK;
}

/* The type of one quantizable tensor. */
static pare_status plan_one(plan_state *st, pare_type base, const pare_tensor *t, pare_type *out, pare_err *err) {
    const pare_quant_plan_opts *o = st->o;
    pare_type nt = base;
    if (!o->pure && is_quant(base)) TRY(get_type(st, t, &nt, err));
    bool user = false;
    nt = user_overrides(o, t->name, nt, &user);
    if (t->ne[0] % blck(nt) != 0) {
        /* the mix's own choices went through the fallback already; --pure's base has not */
        FAIL_IF(user, PARE_EUSAGE, "tensor '%s': %" PRId64 " columns are not a multiple of %s's block of %" PRId64,
                t->name, t->ne[0], pare_type_name(nt), blck(nt));
        TRY(fallback(&nt, t, err));
    }
    *out = nt;
    if (nt == t->type) return PARE_OK; /* nothing to do: llama-quantize copies it */
    const float *imx = NULL;
    if (o->imatrix) TRY(pare_imatrix_for_tensor(o->imatrix, t, &imx, err));
    FAIL_IF(!imx && needs_imatrix(nt, st->ftype, t->name), PARE_EUSAGE,
            "tensor '%s': %s needs an importance matrix (an imatrix entry for this tensor); "
            "llama-quantize refuses to quantize to it without one",
            t->name, pare_type_name(nt));
    return PARE_OK;
}

pare_status pare_quant_plan(const pare_model *m, const pare_quant_plan_opts *o, pare_type *types, pare_err *err) {
    const pare_type base = pare_ftype_base_type(o->ftype);
    TRY(check_opts(o, base, err));
    FAIL_IF(!m->gguf_names, PARE_EUNSUPPORTED, "%s: tensor names are not GGUF names; convert the model first",
            m->path ? m->path : "model");
    plan_state st = {.o = o, .ftype = o->ftype, .has_imatrix = o->imatrix != NULL};
    int n_layer = 0;
    TRY(read_hparams(m, &st, &n_layer, err));
    st.n_ffn_down = st.n_ffn_gate = st.n_ffn_up = n_layer;
    for (size_t i = 0; i < m->n_tensors; i++) {
        const char *n = m->tensors[i].name;
        if (has_text(n, "attn_v.weight") || has_text(n, "attn_qkv.weight") || has_text(n, "attn_kv_b.weight"))
            st.n_attention_wv++;
        else if (strcmp(n, "output.weight") == 0)
            st.has_output = true;
    }
    size_t *order = malloc((m->n_tensors ? m->n_tensors : 1) * sizeof *order);
    FAIL_IF(!order, PARE_ENOMEM, "out of memory planning %zu tensors", m->n_tensors);
    pare_quant_plan_order(m, order);
    pare_status s = PARE_OK;
    for (size_t k = 0; k < m->n_tensors && s == PARE_OK; k++) {
        const pare_tensor *t = &m->tensors[order[k]];
        types[order[k]] = t->type;
        if (quantizable(t, o)) s = plan_one(&st, base, t, &types[order[k]], err);
    }
    free(order);
    return s;
}

/* llama-quantize stores these through fixed 128-byte override buffers. */
static pare_status set_str127(pare_meta *meta, const char *key, const char *s, pare_err *err) {
    size_t len = strlen(s);
    return pare_meta_set_str(meta, key, s, len > 127 ? 127 : len, err);
}

pare_status pare_quant_plan_set_meta(pare_meta *meta, int ftype, const pare_imatrix *im, pare_err *err) {
    FAIL_IF(!pare_ftype_name(ftype), PARE_EUSAGE, "unknown quantization ftype %d", ftype);
    static const char *const keys[] = {
        "general.quantization_version", "general.file_type", "split.no", "split.count", "split.tensors.count",
        "quantize.imatrix.file", "quantize.imatrix.dataset", "quantize.imatrix.entries_count",
        "quantize.imatrix.chunks_count",
    };
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) pare_meta_remove(meta, keys[i]);
    TRY(pare_meta_set_uint(meta, "general.quantization_version", PARE_META_U32, 2, err));
    TRY(pare_meta_set_uint(meta, "general.file_type", PARE_META_U32, (uint64_t)ftype, err));
    if (!im) return PARE_OK;
    if (im->path && *im->path) TRY(set_str127(meta, "quantize.imatrix.file", im->path, err));
    if (im->dataset && *im->dataset) TRY(set_str127(meta, "quantize.imatrix.dataset", im->dataset, err));
    TRY(pare_meta_set_int(meta, "quantize.imatrix.entries_count", PARE_META_I32, (int64_t)im->n_entries, err));
    if (im->chunks > 0)
        TRY(pare_meta_set_int(meta, "quantize.imatrix.chunks_count", PARE_META_I32, im->chunks, err));
    return PARE_OK;
}
