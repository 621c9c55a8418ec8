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
    PARE_CONV_OUTPUT_COPY = 1u << 5, /* the converter writes token_embd again as output (GPT-2) */
    PARE_CONV_DROP_LM_HEAD = 1u << 6, /* lm_head is never written (Gemma: always tied) */
    PARE_CONV_TIED_DEFAULT = 1u << 7, /* tie_word_embeddings defaults to true (transformers' class default) */
    PARE_CONV_ROPE_FREQS = 1u << 8,  /* Llama 3 rope scaling becomes a generated rope_freqs tensor */
};

/* One step of the converter's set_gguf_parameters: where a GGUF key comes from in config.json.
 * The steps run in order (the key order of the GGUF is the order of the steps), and the same
 * list read backwards writes config.json (formats/hf_config.c). */
typedef enum {
    PARE_HP_END = 0,
    PARE_HP_BASE,          /* Model.set_gguf_parameters: block_count .. file_type (keys: context-length keys, or NULL) */
    PARE_HP_U32,           /* first of keys present -> {arch}.gguf, optional */
    PARE_HP_U32_REQ,       /* the same, required */
    PARE_HP_U32_DEFAULT,   /* the same, ival when absent or null */
    PARE_HP_F32,           /* a number -> {arch}.gguf (f32), optional */
    PARE_HP_F32_REQ,       /* the same, required */
    PARE_HP_BOOL_DEFAULT,  /* a bool -> {arch}.gguf, ival when absent */
    PARE_HP_HEAD_KV,       /* num_key_value_heads, else num_attention_heads -> head_count_kv */
    PARE_HP_FF_4X,         /* 4 * the embedding length -> feed_forward_length */
    PARE_HP_VOCAB_SIZE,    /* vocab_size (required) -> vocab_size */
    PARE_HP_ROPE_DIM,      /* head_dim, else hidden_size / num_attention_heads -> rope.dimension_count */
    PARE_HP_ROPE_DIM_EMBD, /* hidden_size / num_attention_heads (head_dim ignored) */
    PARE_HP_ROPE_PART_HEAD,/* int(keys * (hidden_size // heads)) (GPT-NeoX rotary_pct) */
    PARE_HP_ROPE_PART_EMBD,/* int(keys * hidden_size) // heads (Phi-2 partial_rotary_factor) */
    PARE_HP_ROPE_SCALING,  /* rope_scaling of type str ("linear", "yarn"): type, factor (and the
                            * original context for yarn) */
    PARE_HP_ROPE_SCALING_RT, /* the same, the type read from rope_type (else type): Gemma 3 */
    PARE_HP_F32_DEFAULT,   /* a number -> {arch}.gguf (f32), the decimal str when absent or null */
    PARE_HP_QUERY_SCALAR,  /* export only: keys[0] = the head size, or n_embd / n_head when block_count is
                            * ival (Gemma's query_pre_attn_scalar, which the GGUF does not keep: llama.cpp
                            * derives the q scale so) */
    PARE_HP_STR,           /* the constant str -> {arch}.gguf */
    PARE_HP_FILE_TYPE,     /* general.file_type */
    PARE_HP_ABS_BOOL,      /* the constant ival -> the key gguf as it is (not {arch}.) */
} pare_hp_kind;

typedef struct {
    pare_hp_kind kind;
    const char *const *keys; /* config.json keys, NULL-terminated, first present wins; [0] is written back */
    const char *gguf;        /* key suffix after "{arch}." */
    int64_t ival;            /* the default or constant of the kinds that have one */
    const char *str;         /* PARE_HP_STR, ROPE_SCALING: the string; U32 kinds: a second config key written back */
} pare_arch_hparam;

/* The tokenizer the converter builds (set_vocab). */
enum {
    PARE_TOK_SP = 1u << 0,          /* tokenizer.model first (sentencepiece) */
    PARE_TOK_SP_ONLY = 1u << 1,     /* ... and nothing else */
    PARE_TOK_LLAMA_HF = 1u << 2,    /* a tokenizer.json with byte fallback -> "llama" (LlamaHfVocab) */
    PARE_TOK_LLAMA_EXTRAS = 1u << 3, /* LlamaModel.set_vocab's additions (CodeLlama ids, add_prefix_space, granite) */
    PARE_TOK_NO_SPACE_PREFIX = 1u << 4, /* tokenizer.ggml.add_space_prefix false after the vocabulary */
    PARE_TOK_GEMMA_EOT = 1u << 5,   /* Gemma's fixed eot id 107 (CodeGemma) */
    PARE_TOK_PHI3 = 1u << 6,        /* Phi-3's own sentencepiece reader (added tokens user-defined unless special) */
};

/* Per-expert HF tensors merged into one GGUF tensor: "PREFIX.E.hf.weight" of block N, for E in
 * 0..expert_count-1, -> blk.N.gguf.weight. Listed in the order the converter writes them. */
typedef struct {
    const char *hf;
    const char *gguf;
} pare_arch_expert;

typedef struct {
    const pare_arch_name *global; /* non-block tensors */
    size_t n_global;
    const pare_arch_name *block; /* per-block tensors */
    size_t n_block;
    const char *const *block_prefixes; /* HF block prefixes, NULL-terminated; [0] is written */
    unsigned flags;                    /* PARE_CONV_* */
    const char *const *skip_suffixes;  /* HF names ending so are dropped (besides the converter's own list) */
    const char *const *extra_gguf;     /* GGUF names generated by the converter (no HF name) */
    const char *experts_prefix;        /* block-relative, e.g. "block_sparse_moe.experts." */
    const pare_arch_expert *experts;   /* NULL-terminated by hf == NULL */
    const char *const *expert_count_keys; /* config.json keys of the expert count */
    const pare_arch_hparam *hparams;   /* set_gguf_parameters, PARE_HP_END-terminated */
    unsigned tok;                      /* PARE_TOK_* */
    const char *bpe_pre;               /* tokenizer.ggml.pre for a GPT-2-style BPE (default "gpt-2") */
    const char *hf_class;              /* written back to config.json "architectures" */
    const char *model_type;            /* ... and "model_type" */
    const char *moe_hf_class;          /* ... instead, when {arch}.expert_count is set (Mixtral) */
    const char *moe_model_type;
    const char *hidden_act;            /* ... and "hidden_act" (NULL: not written) */
    const char *tokenizer_class;       /* tokenizer_config.json's class for a tokenizer.json (NULL: PreTrainedTokenizerFast) */
    const pare_arch_name *prefix_map;  /* HF name prefixes rewritten before mapping, .hf -> .gguf (the language
                                          model inside a multimodal checkpoint: "language_model." -> ""),
                                          terminated by hf == NULL */
    const char *const *skip_prefixes;  /* HF names starting so are dropped (its vision tower), NULL-terminated */
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
    int swa_period; /* SWA: 0 = every layer, p = layers with il % p < p - 1, every p-th global (gemma2: 2,
                       the even layers; gemma3: 6, as llama.cpp's loader fixes it) */
    int swa_window; /* SWA: the window when the file has no sliding_window key (0: no SWA) */
    float rope_base_swa;  /* > 0: the sliding-window layers' RoPE base, with no RoPE scaling (gemma3: 10000,
                             fixed by llama.cpp's loader); the others use rope.freq_base and its scaling */
    int q_scale_layers;   /* Q_SCALE_BY_TYPE: the block count of the size whose q scale is
                             1/sqrt(n_embd/n_head) (gemma2 27B: 46, gemma3 27B: 62) */
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
