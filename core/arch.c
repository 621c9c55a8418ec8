/* core/arch.c - the architecture table (see arch.h). One entry per GGUF architecture.
 *
 * The conversion tables follow gguf-py's TensorNameMap; the forward-pass features follow
 * src/llama.cpp's build_* functions and llama_rope_type() (NEOX for gemma, gemma2, phi2, phi3,
 * qwen2, qwen2moe, starcoder2, olmo2, gptneox; NORM for llama and command-r). */
#include "core/arch.h"

#include <string.h>

#define N_OF(a) (sizeof(a) / sizeof((a)[0]))
#define NAMES(a) (a), N_OF(a)

/* ------------------------------------------------------------------------ conversion tables */

/* ------------------------------------------------------------------------ Hugging Face classes */

static const char *const llama_classes[] = {"LlamaForCausalLM", "LLaMAForCausalLM", "MistralForCausalLM",
                                            "MixtralForCausalLM", NULL};
static const char *const llama_types[] = {"llama", "mistral", "mixtral", NULL};
static const char *const qwen2_classes[] = {"Qwen2ForCausalLM", NULL};
static const char *const qwen2_types[] = {"qwen2", NULL};
static const char *const gpt2_classes[] = {"GPT2LMHeadModel", NULL};
static const char *const gpt2_types[] = {"gpt2", NULL};
static const char *const gemma_classes[] = {"GemmaForCausalLM", NULL};
static const char *const gemma_types[] = {"gemma", NULL};
static const char *const gemma2_classes[] = {"Gemma2ForCausalLM", NULL};
static const char *const gemma2_types[] = {"gemma2", NULL};
static const char *const phi3_classes[] = {"Phi3ForCausalLM", NULL};
static const char *const phi3_types[] = {"phi3", NULL};
static const char *const qwen2moe_classes[] = {"Qwen2MoeForCausalLM", NULL};
static const char *const qwen2moe_types[] = {"qwen2_moe", NULL};
static const char *const starcoder2_classes[] = {"Starcoder2ForCausalLM", NULL};
static const char *const starcoder2_types[] = {"starcoder2", NULL};
static const char *const olmo2_classes[] = {"Olmo2ForCausalLM", NULL};
static const char *const olmo2_types[] = {"olmo2", NULL};
static const char *const gptneox_classes[] = {"GPTNeoXForCausalLM", NULL};
static const char *const gptneox_types[] = {"gpt_neox", NULL};
static const char *const commandr_classes[] = {"CohereForCausalLM", NULL};
static const char *const commandr_types[] = {"cohere", NULL};
static const char *const phi2_classes[] = {"PhiForCausalLM", NULL};
static const char *const phi2_types[] = {"phi", NULL};

/* ------------------------------------------------------------------------ the table */

static const pare_arch arch_table[] = {
    {
        .name = "llama", /* also Mistral and Mixtral (experts when llama.expert_count > 0) */
        .hf_classes = llama_classes,
        .model_types = llama_types,
        .conv = {.flags = PARE_CONV_PERMUTE_QK | PARE_CONV_MERGE_EXPERTS},

        .fwd = {PARE_NORM_RMS, PARE_FFN_SWIGLU, PARE_ROPE_NORM, PARE_FWD_MOE},
    },
    {
        .name = "qwen2",
        .hf_classes = qwen2_classes,
        .model_types = qwen2_types,
        .conv = {.flags = 0},

        .fwd = {PARE_NORM_RMS, PARE_FFN_SWIGLU, PARE_ROPE_NEOX, 0},
    },
    {
        .name = "gpt2",
        .hf_classes = gpt2_classes,
        .model_types = gpt2_types,
        .conv = {.flags = PARE_CONV_CONV1D},

        .fwd = {PARE_NORM_LAYER, PARE_FFN_GELU, PARE_ROPE_NONE, PARE_FWD_FUSED_QKV},
    },
    {
        .name = "gemma",
        .hf_classes = gemma_classes,
        .model_types = gemma_types,
        .conv = {.flags = PARE_CONV_NORM_PLUS1},

        .fwd = {PARE_NORM_RMS, PARE_FFN_GEGLU, PARE_ROPE_NEOX, PARE_FWD_EMBD_SCALE | PARE_FWD_Q_PRESCALE},
    },
    {
        .name = "gemma2",
        .hf_classes = gemma2_classes,
        .model_types = gemma2_types,
        .conv = {.flags = PARE_CONV_NORM_PLUS1},

        .fwd = {PARE_NORM_RMS, PARE_FFN_GEGLU, PARE_ROPE_NEOX,
                PARE_FWD_EMBD_SCALE | PARE_FWD_POST_NORM | PARE_FWD_SOFTCAP | PARE_FWD_SWA | PARE_FWD_Q_PRESCALE |
                    PARE_FWD_Q_SCALE_BY_TYPE,
                2, 4096},
    },
    {
        .name = "phi3",
        .hf_classes = phi3_classes,
        .model_types = phi3_types,
        .conv = {.flags = 0},

        .fwd = {PARE_NORM_RMS, PARE_FFN_SWIGLU, PARE_ROPE_NEOX,
                PARE_FWD_FUSED_QKV | PARE_FWD_FUSED_GATE_UP | PARE_FWD_Q_PRESCALE | PARE_FWD_SWA, 0, 0},
    },
    {
        .name = "qwen2moe",
        .hf_classes = qwen2moe_classes,
        .model_types = qwen2moe_types,
        .conv = {.flags = PARE_CONV_MERGE_EXPERTS},

        .fwd = {PARE_NORM_RMS, PARE_FFN_SWIGLU, PARE_ROPE_NEOX, PARE_FWD_MOE | PARE_FWD_SHARED_EXPERT},
    },
    {
        .name = "starcoder2",
        .hf_classes = starcoder2_classes,
        .model_types = starcoder2_types,
        .conv = {.flags = 0},

        .fwd = {PARE_NORM_LAYER, PARE_FFN_GELU, PARE_ROPE_NEOX, 0},
    },
    {
        .name = "olmo2",
        .hf_classes = olmo2_classes,
        .model_types = olmo2_types,
        .conv = {.flags = 0},

        .fwd = {PARE_NORM_RMS, PARE_FFN_SWIGLU, PARE_ROPE_NEOX,
                PARE_FWD_POST_NORM | PARE_FWD_NO_PRE_NORM | PARE_FWD_QK_NORM},
    },
    {
        .name = "gptneox",
        .hf_classes = gptneox_classes,
        .model_types = gptneox_types,
        .conv = {.flags = PARE_CONV_NEOX_QKV},

        .fwd = {PARE_NORM_LAYER, PARE_FFN_GELU, PARE_ROPE_NEOX, PARE_FWD_PARALLEL_2NORM | PARE_FWD_FUSED_QKV},
    },
    {
        .name = "command-r",
        .hf_classes = commandr_classes,
        .model_types = commandr_types,
        .conv = {.flags = 0},

        .fwd = {PARE_NORM_LAYER, PARE_FFN_SWIGLU, PARE_ROPE_NORM,
                PARE_FWD_PARALLEL | PARE_FWD_LOGIT_SCALE | PARE_FWD_QK_NORM},
    },
    {
        .name = "phi2",
        .hf_classes = phi2_classes,
        .model_types = phi2_types,
        .conv = {.flags = 0},

        .fwd = {PARE_NORM_LAYER, PARE_FFN_GELU, PARE_ROPE_NEOX,
                PARE_FWD_PARALLEL | PARE_FWD_PAR_ATTN_FFN | PARE_FWD_Q_PRESCALE},
    },
};

const pare_arch *pare_arch_find(const char *name) {
    if (!name) return NULL;
    for (size_t i = 0; i < N_OF(arch_table); i++)
        if (strcmp(arch_table[i].name, name) == 0) return &arch_table[i];
    return NULL;
}

const pare_arch *pare_arch_for_hf(const char *cls, bool is_model_type) {
    if (!cls) return NULL;
    for (size_t i = 0; i < N_OF(arch_table); i++) {
        const char *const *l = is_model_type ? arch_table[i].model_types : arch_table[i].hf_classes;
        for (; l && *l; l++)
            if (strcmp(*l, cls) == 0) return &arch_table[i];
    }
    return NULL;
}

const pare_arch *pare_arch_all(size_t *n) {
    *n = N_OF(arch_table);
    return arch_table;
}

const char *pare_arch_names(void) {
    return "llama (with Mistral and Mixtral), qwen2, gpt2, gemma, gemma2, phi3, qwen2moe, starcoder2, olmo2, "
           "gptneox, command-r, phi2";
}
