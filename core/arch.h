/*
 * core/arch.h - the architecture table: what pare knows about one model family, in one entry.
 *
 * An entry names the family as GGUF does (general.architecture), lists the Hugging Face
 * classes that convert to it, and describes it for each part of pare:
 *
 *   conv    Hugging Face <-> GGUF: tensor names both ways, tensors permuted, fused, split or
 *           merged on the way, config.json fields and the GGUF keys they become, the
 *           tokenizer the converter writes (formats/).
 *   fwd     the forward pass: norm kind and placement, activation, rotary kind, parallel
 *           blocks, biases, q/k norms, soft-capping, sliding-window layers, mixture of experts,
 *           embedding and logit scales (verify/). Sizes and constants are read from the
 *           GGUF's metadata; the entry says which features the family has.
 *   quant   llama-quantize's rules for the family (quant/plan.c).
 *
 * Adding an architecture is one entry in core/arch.c plus its tests; README "Adding an
 * architecture" walks through one. The reference for every entry is llama.cpp of February
 * 2025 (convert_hf_to_gguf.py, gguf-py's constants and TensorNameMap, src/llama.cpp) and the
 * Hugging Face modeling code of the family.
 */
#ifndef PARE_CORE_ARCH_H
#define PARE_CORE_ARCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ------------------------------------------------------------------------ conversion */

/* One tensor name both ways, without the ".weight"/".bias" suffix. In a block table, hf is
 * relative to the block prefix ("self_attn.q_proj") and gguf to "blk.N." ("attn_q"). */
typedef struct {
    const char *hf;
    const char *gguf;
} pare_arch_name;

/* How tensors change between Hugging Face and GGUF. */
enum {
    PARE_CONV_PERMUTE_QK = 1u << 0,  /* q/k rows from rotate_half order to interleaved pairs */
    PARE_CONV_NORM_PLUS1 = 1u << 1,  /* RMSNorm weights stored as w in HF, as 1 + w in GGUF */
    PARE_CONV_CONV1D = 1u << 2,      /* HF stores linear weights transposed (GPT-2's Conv1D) */
    PARE_CONV_MERGE_EXPERTS = 1u << 3, /* per-expert 2-D HF tensors -> one 3-D ffn_*_exps */
    PARE_CONV_NEOX_QKV = 1u << 4,    /* fused query_key_value, per-head interleaved (GPT-NeoX) */
};

typedef struct {
    const pare_arch_name *global; /* non-block tensors */
    size_t n_global;
    const pare_arch_name *block; /* per-block tensors */
    size_t n_block;
    const char *const *block_prefixes; /* HF block prefixes, NULL-terminated; [0] is written */
    unsigned flags;                    /* PARE_CONV_* */
} pare_arch_conv;

/* ------------------------------------------------------------------------ forward pass */

typedef enum {
    PARE_NORM_RMS,   /* x / sqrt(mean(x^2) + eps) * w */
    PARE_NORM_LAYER, /* (x - mean) / sqrt(var + eps) * w (+ b when the file has one) */
} pare_norm_kind;

typedef enum {
    PARE_FFN_SWIGLU, /* down(silu(gate x) * up x) */
    PARE_FFN_GEGLU,  /* down(gelu_tanh(gate x) * up x) */
    PARE_FFN_GELU,   /* down(gelu(up x)), no gate */
} pare_ffn_kind;

typedef enum {
    PARE_ROPE_NONE, /* learned absolute positions (position_embd) */
    PARE_ROPE_NORM, /* pairs (2i, 2i+1) */
    PARE_ROPE_NEOX, /* pairs (i, i + n_rot/2) */
} pare_rope_kind;

enum {
    PARE_FWD_PARALLEL = 1u << 0,       /* attention and FFN read the same normed input; one residual add */
    PARE_FWD_PARALLEL_2NORM = 1u << 1, /* parallel, each with its own norm (GPT-NeoX) */
    PARE_FWD_POST_NORM = 1u << 2,      /* attn_post_norm / ffn_post_norm on each sublayer's output */
    PARE_FWD_NO_PRE_NORM = 1u << 3,    /* no norm before the sublayers (OLMo 2) */
    PARE_FWD_QK_NORM = 1u << 4,        /* attn_q_norm / attn_k_norm (full width or per head, by shape) */
    PARE_FWD_EMBD_SCALE = 1u << 5,     /* embeddings times sqrt(n_embd) (Gemma) */
    PARE_FWD_SOFTCAP = 1u << 6,        /* {arch}.attn_logit_softcapping, .final_logit_softcapping */
    PARE_FWD_SWA = 1u << 7,            /* sliding-window attention on some layers */
    PARE_FWD_LOGIT_SCALE = 1u << 8,    /* {arch}.logit_scale multiplies the logits */
    PARE_FWD_MOE = 1u << 9,            /* mixture of experts when {arch}.expert_count > 0 */
    PARE_FWD_SHARED_EXPERT = 1u << 10, /* a shared expert with a sigmoid gate (Qwen2-MoE) */
    PARE_FWD_FUSED_QKV = 1u << 11,     /* attn_qkv instead of attn_q/k/v */
    PARE_FWD_FUSED_GATE_UP = 1u << 12, /* ffn_up holds gate and up (Phi-3) */
    PARE_FWD_Q_PRESCALE = 1u << 13,    /* q times the attention scale after RoPE, softmax scale 1
                                          (gemma, gemma2, phi2, phi3: the f16 cache then holds the
                                          scaled q) */
    PARE_FWD_Q_SCALE_BY_TYPE = 1u << 14, /* gemma2: 1/sqrt(n_embd/n_head) for 46 layers (27B),
                                            else 1/sqrt(head_dim), as llama.cpp picks it */
    PARE_FWD_PAR_ATTN_FFN = 1u << 15,  /* parallel sum as (attn + ffn) + x (phi2), not (ffn + x) + attn */
};

/* Fields after flags default to 0 in the entries. Sizes and constants come from metadata; the
 * keys read are {arch}.attention.layer_norm_epsilon (LayerNorm) or .layer_norm_rms_epsilon,
 * .attention.sliding_window (SWA), .attn_logit_softcapping / .final_logit_softcapping
 * (SOFTCAP, defaults 50 and 30), .logit_scale (LOGIT_SCALE), .use_parallel_residual
 * (PARALLEL_2NORM, default true). Biases, q/k norms and output.bias are used when present. */
typedef struct {
    pare_norm_kind norm;
    pare_ffn_kind ffn;
    pare_rope_kind rope;
    unsigned flags; /* PARE_FWD_* */
    int swa_period; /* SWA: 0 = every layer, p = layers with il % p == 0 (gemma2: 2) */
    int swa_window; /* SWA: the window when the file has no sliding_window key (0: no SWA) */
} pare_arch_fwd;

/* ------------------------------------------------------------------------ quantization */

enum {
    PARE_QUANT_FALCON_RULES = 1u << 0, /* llama-quantize's falcon special cases (none of ours yet) */
};

typedef struct {
    unsigned flags; /* PARE_QUANT_* */
} pare_arch_quant;

/* ------------------------------------------------------------------------ the entry */

typedef struct pare_arch {
    const char *name;               /* general.architecture */
    const char *const *hf_classes;  /* config.json "architectures"[0] values, NULL-terminated */
    const char *const *model_types; /* config.json "model_type" values used when "architectures" is absent */
    pare_arch_conv conv;
    pare_arch_fwd fwd;
    pare_arch_quant quant;
} pare_arch;

/* The entry of a GGUF architecture name, or NULL. */
const pare_arch *pare_arch_find(const char *name);
/* The entry a Hugging Face class (or, with is_model_type, a model_type value) converts to. */
const pare_arch *pare_arch_for_hf(const char *cls, bool is_model_type);
/* Every entry, in table order: *n gets the count. */
const pare_arch *pare_arch_all(size_t *n);
/* "llama, qwen2, ..." (all names) for messages; a static string. */
const char *pare_arch_names(void);

#endif
