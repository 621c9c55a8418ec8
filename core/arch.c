/* core/arch.c - the architecture table (see arch.h). One entry per GGUF architecture.
 *
 * The conversion tables follow gguf-py's TensorNameMap; the forward-pass features follow
 * src/llama.cpp's build_* functions and llama_rope_type() (NEOX for gemma, gemma2, gemma3, phi2,
 * phi3, qwen2, qwen2moe, qwen3, qwen3moe, starcoder2, olmo2, gptneox; NORM for llama and
 * command-r). The newer families (qwen3, qwen3moe, gemma3) follow llama.cpp of spring 2025,
 * when they were added; tests/fixtures/arch_families.txt records what was relied on. */
#include "core/arch.h"

#include <string.h>

#define N_OF(a) (sizeof(a) / sizeof((a)[0]))
#define NAMES(a) (a), N_OF(a)

/* ------------------------------------------------------------------------ conversion tables */

/* Tensor names follow gguf-py's TensorNameMap (with its per-architecture overrides), hparams
 * each family's set_gguf_parameters in convert_hf_to_gguf.py, in its order. */

#define KEYS(...) ((const char *const[]){__VA_ARGS__, NULL})
#define HP(kind, keys, gguf) {kind, keys, gguf, 0, NULL}

static const char *const llama_prefixes[] = {"model.layers.", NULL};

static const pare_arch_name llama_global[] = {
    {"model.embed_tokens", "token_embd"},
    {"model.norm", "output_norm"},
    {"lm_head", "output"},
};
static const pare_arch_name llama_block[] = {
    {"input_layernorm", "attn_norm"},    {"self_attn.q_proj", "attn_q"},   {"self_attn.k_proj", "attn_k"},
    {"self_attn.v_proj", "attn_v"},      {"self_attn.o_proj", "attn_output"},
    {"post_attention_layernorm", "ffn_norm"}, {"mlp.gate_proj", "ffn_gate"}, {"mlp.up_proj", "ffn_up"},
    {"mlp.down_proj", "ffn_down"},       {"block_sparse_moe.gate", "ffn_gate_inp"},
};
static const pare_arch_expert mixtral_experts[] = {
    {"w1", "ffn_gate_exps"}, {"w2", "ffn_down_exps"}, {"w3", "ffn_up_exps"}, {NULL, NULL}};
static const pare_arch_hparam llama_hparams[] = {
    HP(PARE_HP_BASE, NULL, NULL),
    HP(PARE_HP_VOCAB_SIZE, KEYS("vocab_size"), "vocab_size"),
    HP(PARE_HP_ROPE_DIM, NULL, "rope.dimension_count"),
    {PARE_HP_ROPE_SCALING, NULL, "rope.scaling", 0, "linear"},
    {PARE_HP_END, NULL, NULL, 0, NULL},
};
static const char *const llama_extra[] = {"rope_freqs", NULL};

static const pare_arch_hparam qwen2_hparams[] = {
    HP(PARE_HP_BASE, NULL, NULL),
    {PARE_HP_ROPE_SCALING, NULL, "rope.scaling", 0, "yarn"},
    {PARE_HP_END, NULL, NULL, 0, NULL},
};

/* GPT-2: "transformer." prefixed (GPT2LMHeadModel) or bare (GPT2Model) names. */
static const char *const gpt2_prefixes[] = {"transformer.h.", "h.", NULL};
static const pare_arch_name gpt2_global[] = {
    {"transformer.wte", "token_embd"}, {"wte", "token_embd"},   {"transformer.wpe", "position_embd"},
    {"wpe", "position_embd"},          {"transformer.ln_f", "output_norm"}, {"ln_f", "output_norm"},
    {"lm_head", "output"},
};
static const pare_arch_name gpt2_block[] = {
    {"ln_1", "attn_norm"}, {"attn.c_attn", "attn_qkv"}, {"attn.c_proj", "attn_output"},
    {"ln_2", "ffn_norm"},  {"mlp.c_fc", "ffn_up"},      {"mlp.c_proj", "ffn_down"},
};
static const char *const gpt2_skip[] = {".attn.bias", ".attn.masked_bias", NULL};
static const pare_arch_hparam gpt2_hparams[] = {
    HP(PARE_HP_U32_REQ, KEYS("n_layer"), "block_count"),
    {PARE_HP_U32_REQ, KEYS("n_ctx"), "context_length", 0, "n_positions"},
    HP(PARE_HP_U32_REQ, KEYS("n_embd"), "embedding_length"),
    HP(PARE_HP_FF_4X, KEYS("n_inner"), "feed_forward_length"),
    HP(PARE_HP_U32_REQ, KEYS("n_head"), "attention.head_count"),
    HP(PARE_HP_F32_REQ, KEYS("layer_norm_epsilon"), "attention.layer_norm_epsilon"),
    HP(PARE_HP_FILE_TYPE, NULL, NULL),
    {PARE_HP_END, NULL, NULL, 0, NULL},
};

/* Gemma (GemmaModel.set_gguf_parameters); Gemma 2 adds soft-capping and the window. */
static const pare_arch_hparam gemma_hparams[] = {
    HP(PARE_HP_U32_REQ, KEYS("max_position_embeddings"), "context_length"),
    HP(PARE_HP_U32_REQ, KEYS("hidden_size"), "embedding_length"),
    HP(PARE_HP_U32_REQ, KEYS("num_hidden_layers"), "block_count"),
    HP(PARE_HP_U32_REQ, KEYS("intermediate_size"), "feed_forward_length"),
    HP(PARE_HP_U32_REQ, KEYS("num_attention_heads"), "attention.head_count"),
    HP(PARE_HP_HEAD_KV, KEYS("num_key_value_heads"), "attention.head_count_kv"),
    HP(PARE_HP_F32_REQ, KEYS("rms_norm_eps"), "attention.layer_norm_rms_epsilon"),
    HP(PARE_HP_U32_REQ, KEYS("head_dim"), "attention.key_length"),
    HP(PARE_HP_U32_REQ, KEYS("head_dim"), "attention.value_length"),
    HP(PARE_HP_FILE_TYPE, NULL, NULL),
    {PARE_HP_END, NULL, NULL, 0, NULL},
};
static const pare_arch_hparam gemma2_hparams[] = {
    HP(PARE_HP_U32_REQ, KEYS("max_position_embeddings"), "context_length"),
    HP(PARE_HP_U32_REQ, KEYS("hidden_size"), "embedding_length"),
    HP(PARE_HP_U32_REQ, KEYS("num_hidden_layers"), "block_count"),
    HP(PARE_HP_U32_REQ, KEYS("intermediate_size"), "feed_forward_length"),
    HP(PARE_HP_U32_REQ, KEYS("num_attention_heads"), "attention.head_count"),
    HP(PARE_HP_HEAD_KV, KEYS("num_key_value_heads"), "attention.head_count_kv"),
    HP(PARE_HP_F32_REQ, KEYS("rms_norm_eps"), "attention.layer_norm_rms_epsilon"),
    HP(PARE_HP_U32_REQ, KEYS("head_dim"), "attention.key_length"),
    HP(PARE_HP_U32_REQ, KEYS("head_dim"), "attention.value_length"),
    HP(PARE_HP_FILE_TYPE, NULL, NULL),
    HP(PARE_HP_F32_REQ, KEYS("attn_logit_softcapping"), "attn_logit_softcapping"),
    HP(PARE_HP_F32_REQ, KEYS("final_logit_softcapping"), "final_logit_softcapping"),
    HP(PARE_HP_U32_REQ, KEYS("sliding_window"), "attention.sliding_window"),
    {PARE_HP_END, NULL, NULL, 0, NULL},
};
static const pare_arch_name gemma2_block[] = {
    {"input_layernorm", "attn_norm"},    {"self_attn.q_proj", "attn_q"},   {"self_attn.k_proj", "attn_k"},
    {"self_attn.v_proj", "attn_v"},      {"self_attn.o_proj", "attn_output"},
    {"post_attention_layernorm", "post_attention_norm"}, {"pre_feedforward_layernorm", "ffn_norm"},
    {"post_feedforward_layernorm", "post_ffw_norm"},     {"mlp.gate_proj", "ffn_gate"},
    {"mlp.up_proj", "ffn_up"},           {"mlp.down_proj", "ffn_down"},
};

/* Phi-3: fused qkv_proj and gate_up_proj are kept as they are (llama.cpp splits them). */
static const pare_arch_name phi3_block[] = {
    {"input_layernorm", "attn_norm"}, {"self_attn.qkv_proj", "attn_qkv"}, {"self_attn.o_proj", "attn_output"},
    {"post_attention_layernorm", "ffn_norm"}, {"mlp.gate_up_proj", "ffn_up"}, {"mlp.down_proj", "ffn_down"},
};
static const pare_arch_hparam phi3_hparams[] = {
    {PARE_HP_U32_REQ, KEYS("n_positions", "max_position_embeddings"), "context_length", 0, "max_position_embeddings"},
    HP(PARE_HP_U32_REQ, KEYS("original_max_position_embeddings"), "rope.scaling.original_context_length"),
    HP(PARE_HP_U32_REQ, KEYS("hidden_size", "n_embd"), "embedding_length"),
    HP(PARE_HP_U32_REQ, KEYS("intermediate_size"), "feed_forward_length"),
    HP(PARE_HP_U32_REQ, KEYS("num_hidden_layers", "n_layer"), "block_count"),
    HP(PARE_HP_U32_REQ, KEYS("num_attention_heads", "n_head"), "attention.head_count"),
    HP(PARE_HP_U32_REQ, KEYS("num_key_value_heads", "n_head_kv"), "attention.head_count_kv"),
    HP(PARE_HP_F32_REQ, KEYS("rms_norm_eps"), "attention.layer_norm_rms_epsilon"),
    HP(PARE_HP_ROPE_DIM_EMBD, NULL, "rope.dimension_count"),
    HP(PARE_HP_F32_REQ, KEYS("rope_theta"), "rope.freq_base"),
    HP(PARE_HP_FILE_TYPE, NULL, NULL),
    HP(PARE_HP_U32_DEFAULT, KEYS("sliding_window"), "attention.sliding_window"),
    {PARE_HP_END, NULL, NULL, 0, NULL},
};

/* Qwen2-MoE: experts merged, a shared expert with its sigmoid gate. */
static const pare_arch_name qwen2moe_block[] = {
    {"input_layernorm", "attn_norm"},    {"self_attn.q_proj", "attn_q"},   {"self_attn.k_proj", "attn_k"},
    {"self_attn.v_proj", "attn_v"},      {"self_attn.o_proj", "attn_output"},
    {"post_attention_layernorm", "ffn_norm"}, {"mlp.gate", "ffn_gate_inp"},
    {"mlp.shared_expert.gate_proj", "ffn_gate_shexp"}, {"mlp.shared_expert.up_proj", "ffn_up_shexp"},
    {"mlp.shared_expert.down_proj", "ffn_down_shexp"}, {"mlp.shared_expert_gate", "ffn_gate_inp_shexp"},
};
static const pare_arch_expert qwen2moe_experts[] = {
    {"down_proj", "ffn_down_exps"}, {"gate_proj", "ffn_gate_exps"}, {"up_proj", "ffn_up_exps"}, {NULL, NULL}};
static const pare_arch_hparam qwen2moe_hparams[] = {
    HP(PARE_HP_BASE, NULL, NULL),
    HP(PARE_HP_U32, KEYS("num_experts"), "expert_count"),
    HP(PARE_HP_U32, KEYS("moe_intermediate_size"), "expert_feed_forward_length"),
    HP(PARE_HP_U32, KEYS("shared_expert_intermediate_size"), "expert_shared_feed_forward_length"),
    {PARE_HP_END, NULL, NULL, 0, NULL},
};

/* Qwen3 (Qwen3Model, a Qwen2Model: the same hyperparameters): Qwen2's names without the
 * biases, plus the per-head q/k norms. Qwen3-MoE (Qwen3MoeModel, a Qwen2MoeModel): Qwen2-MoE's
 * hyperparameters and experts, no shared expert. */
static const pare_arch_name qwen3_block[] = {
    {"input_layernorm", "attn_norm"},    {"self_attn.q_proj", "attn_q"},   {"self_attn.k_proj", "attn_k"},
    {"self_attn.v_proj", "attn_v"},      {"self_attn.o_proj", "attn_output"},
    {"self_attn.q_norm", "attn_q_norm"}, {"self_attn.k_norm", "attn_k_norm"},
    {"post_attention_layernorm", "ffn_norm"}, {"mlp.gate_proj", "ffn_gate"}, {"mlp.up_proj", "ffn_up"},
    {"mlp.down_proj", "ffn_down"},
};
static const pare_arch_name qwen3moe_block[] = {
    {"input_layernorm", "attn_norm"},    {"self_attn.q_proj", "attn_q"},   {"self_attn.k_proj", "attn_k"},
    {"self_attn.v_proj", "attn_v"},      {"self_attn.o_proj", "attn_output"},
    {"self_attn.q_norm", "attn_q_norm"}, {"self_attn.k_norm", "attn_k_norm"},
    {"post_attention_layernorm", "ffn_norm"}, {"mlp.gate", "ffn_gate_inp"},
};

/* Gemma 3 (Gemma3Model.set_gguf_parameters, as first written for Gemma3ForCausalLM and
 * Gemma3ForConditionalGeneration): defaults for the keys a multimodal checkpoint's text_config
 * leaves out; no soft-capping; linear rope scaling (global layers only, llama.cpp's loader
 * applies it so). The sliding-window pattern (6) and the local RoPE base (10000) are not
 * written: llama.cpp's loader fixes them (the forward part below). */
static const pare_arch_hparam gemma3_hparams[] = {
    {PARE_HP_U32_DEFAULT, KEYS("max_position_embeddings"), "context_length", 131072, NULL},
    HP(PARE_HP_U32_REQ, KEYS("hidden_size"), "embedding_length"),
    HP(PARE_HP_U32_REQ, KEYS("num_hidden_layers"), "block_count"),
    HP(PARE_HP_U32_REQ, KEYS("intermediate_size"), "feed_forward_length"),
    {PARE_HP_U32_DEFAULT, KEYS("num_attention_heads"), "attention.head_count", 8, NULL},
    {PARE_HP_F32_DEFAULT, KEYS("rms_norm_eps"), "attention.layer_norm_rms_epsilon", 0, "1e-6"},
    {PARE_HP_U32_DEFAULT, KEYS("head_dim"), "attention.key_length", 256, NULL},
    {PARE_HP_U32_DEFAULT, KEYS("head_dim"), "attention.value_length", 256, NULL},
    HP(PARE_HP_FILE_TYPE, NULL, NULL),
    {PARE_HP_F32_DEFAULT, KEYS("rope_theta"), "rope.freq_base", 0, "1000000.0"},
    HP(PARE_HP_U32_REQ, KEYS("sliding_window"), "attention.sliding_window"),
    {PARE_HP_U32_DEFAULT, KEYS("num_key_value_heads"), "attention.head_count_kv", 4, NULL},
    {PARE_HP_ROPE_SCALING_RT, NULL, "rope.scaling", 0, "linear"},
    {PARE_HP_QUERY_SCALAR, KEYS("query_pre_attn_scalar"), NULL, 62, NULL},
    {PARE_HP_END, NULL, NULL, 0, NULL},
};
static const pare_arch_name gemma3_block[] = {
    {"input_layernorm", "attn_norm"},    {"self_attn.q_proj", "attn_q"},   {"self_attn.k_proj", "attn_k"},
    {"self_attn.v_proj", "attn_v"},      {"self_attn.o_proj", "attn_output"},
    {"self_attn.q_norm", "attn_q_norm"}, {"self_attn.k_norm", "attn_k_norm"},
    {"post_attention_layernorm", "post_attention_norm"}, {"pre_feedforward_layernorm", "ffn_norm"},
    {"post_feedforward_layernorm", "post_ffw_norm"},     {"mlp.gate_proj", "ffn_gate"},
    {"mlp.up_proj", "ffn_up"},           {"mlp.down_proj", "ffn_down"},
};
/* Gemma3ForConditionalGeneration: the language model's tensors under language_model. (older
 * checkpoints) or model.language_model. (transformers 4.52 on, with lm_head at the top); the
 * vision tower and projector are another GGUF (the mmproj) and are left out. */
static const pare_arch_name gemma3_prefix_map[] = {
    {"language_model.", ""}, {"model.language_model.", "model."}, {NULL, NULL}};
static const char *const gemma3_skip[] = {"vision_tower.", "multi_modal_projector.", "multimodal_projector.",
                                          "vision_model.", "model.vision_tower.", "model.multi_modal_projector.",
                                          NULL};

/* Model.set_gguf_parameters alone (StarCoder2, OLMo 2). */
static const pare_arch_hparam base_hparams[] = {
    HP(PARE_HP_BASE, NULL, NULL),
    {PARE_HP_END, NULL, NULL, 0, NULL},
};
static const pare_arch_name starcoder2_block[] = {
    {"input_layernorm", "attn_norm"},    {"self_attn.q_proj", "attn_q"},   {"self_attn.k_proj", "attn_k"},
    {"self_attn.v_proj", "attn_v"},      {"self_attn.o_proj", "attn_output"},
    {"post_attention_layernorm", "ffn_norm"}, {"mlp.c_fc", "ffn_up"}, {"mlp.c_proj", "ffn_down"},
};
static const pare_arch_name olmo2_block[] = {
    {"self_attn.q_proj", "attn_q"},      {"self_attn.k_proj", "attn_k"},   {"self_attn.v_proj", "attn_v"},
    {"self_attn.o_proj", "attn_output"}, {"self_attn.q_norm", "attn_q_norm"}, {"self_attn.k_norm", "attn_k_norm"},
    {"post_attention_layernorm", "post_attention_norm"}, {"mlp.gate_proj", "ffn_gate"}, {"mlp.up_proj", "ffn_up"},
    {"mlp.down_proj", "ffn_down"},       {"post_feedforward_layernorm", "post_ffw_norm"},
};

/* GPT-NeoX: its own prefix; query_key_value reordered from per-head (q, k, v) to q | k | v. */
static const char *const gptneox_prefixes[] = {"gpt_neox.layers.", NULL};
static const pare_arch_name gptneox_global[] = {
    {"gpt_neox.embed_in", "token_embd"},
    {"gpt_neox.final_layer_norm", "output_norm"},
    {"embed_out", "output"},
};
static const pare_arch_name gptneox_block[] = {
    {"input_layernorm", "attn_norm"},  {"post_attention_layernorm", "ffn_norm"},
    {"attention.query_key_value", "attn_qkv"}, {"attention.dense", "attn_output"},
    {"mlp.dense_h_to_4h", "ffn_up"},   {"mlp.dense_4h_to_h", "ffn_down"},
};
static const pare_arch_hparam gptneox_hparams[] = {
    HP(PARE_HP_U32_REQ, KEYS("max_position_embeddings"), "context_length"),
    HP(PARE_HP_U32_REQ, KEYS("hidden_size"), "embedding_length"),
    HP(PARE_HP_U32_REQ, KEYS("num_hidden_layers"), "block_count"),
    HP(PARE_HP_U32_REQ, KEYS("intermediate_size"), "feed_forward_length"),
    HP(PARE_HP_ROPE_PART_HEAD, KEYS("rotary_pct"), "rope.dimension_count"),
    HP(PARE_HP_U32_REQ, KEYS("num_attention_heads"), "attention.head_count"),
    {PARE_HP_BOOL_DEFAULT, KEYS("use_parallel_residual"), "use_parallel_residual", 1, NULL},
    HP(PARE_HP_F32_REQ, KEYS("layer_norm_eps"), "attention.layer_norm_epsilon"),
    {PARE_HP_END, NULL, NULL, 0, NULL}, /* no general.file_type: GPTNeoXModel does not write it */
};

/* Command-R (Cohere): the context is model_max_length when there is one. */
static const pare_arch_name commandr_block[] = {
    {"input_layernorm", "attn_norm"},    {"self_attn.q_proj", "attn_q"},   {"self_attn.k_proj", "attn_k"},
    {"self_attn.v_proj", "attn_v"},      {"self_attn.o_proj", "attn_output"},
    {"self_attn.q_norm", "attn_q_norm"}, {"self_attn.k_norm", "attn_k_norm"},
    {"mlp.gate_proj", "ffn_gate"},       {"mlp.up_proj", "ffn_up"},        {"mlp.down_proj", "ffn_down"},
};
static const pare_arch_hparam commandr_hparams[] = {
    HP(PARE_HP_BASE, KEYS("model_max_length", "max_position_embeddings", "n_ctx"), NULL),
    HP(PARE_HP_F32_REQ, KEYS("logit_scale"), "logit_scale"),
    {PARE_HP_STR, NULL, "rope.scaling.type", 0, "none"},
    {PARE_HP_END, NULL, NULL, 0, NULL},
};

/* Phi-2: final_layernorm, dense, fc1/fc2; n_ff is 4 * n_embd; add_bos_token false. */
static const pare_arch_name phi2_global[] = {
    {"model.embed_tokens", "token_embd"},
    {"model.final_layernorm", "output_norm"},
    {"lm_head", "output"},
};
static const pare_arch_name phi2_block[] = {
    {"input_layernorm", "attn_norm"}, {"self_attn.q_proj", "attn_q"}, {"self_attn.k_proj", "attn_k"},
    {"self_attn.v_proj", "attn_v"},   {"self_attn.dense", "attn_output"}, {"mlp.fc1", "ffn_up"},
    {"mlp.fc2", "ffn_down"},
};
static const pare_arch_hparam phi2_hparams[] = {
    {PARE_HP_U32_REQ, KEYS("n_positions", "max_position_embeddings"), "context_length", 0, "max_position_embeddings"},
    HP(PARE_HP_U32_REQ, KEYS("hidden_size", "n_embd"), "embedding_length"),
    {PARE_HP_FF_4X, KEYS("intermediate_size"), "feed_forward_length", 1, NULL},
    HP(PARE_HP_U32_REQ, KEYS("num_hidden_layers", "n_layer"), "block_count"),
    HP(PARE_HP_U32_REQ, KEYS("num_attention_heads", "n_head"), "attention.head_count"),
    HP(PARE_HP_U32_REQ, KEYS("num_attention_heads", "n_head"), "attention.head_count_kv"),
    HP(PARE_HP_F32_REQ, KEYS("layer_norm_epsilon", "layer_norm_eps"), "attention.layer_norm_epsilon"),
    HP(PARE_HP_ROPE_PART_EMBD, KEYS("partial_rotary_factor"), "rope.dimension_count"),
    HP(PARE_HP_FILE_TYPE, NULL, NULL),
    {PARE_HP_ABS_BOOL, NULL, "tokenizer.ggml.add_bos_token", 0, NULL},
    {PARE_HP_END, NULL, NULL, 0, NULL},
};

#define TABLES(g, b, p) NAMES(g), NAMES(b), p


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
static const char *const qwen3_classes[] = {"Qwen3ForCausalLM", NULL};
static const char *const qwen3_types[] = {"qwen3", NULL};
static const char *const qwen3moe_classes[] = {"Qwen3MoeForCausalLM", NULL};
static const char *const qwen3moe_types[] = {"qwen3_moe", NULL};
static const char *const gemma3_classes[] = {"Gemma3ForCausalLM", "Gemma3ForConditionalGeneration", NULL};
static const char *const gemma3_types[] = {"gemma3_text", "gemma3", NULL};

/* ------------------------------------------------------------------------ the table */

static const pare_arch arch_table[] = {
    {
        .name = "llama", /* also Mistral and Mixtral (experts when llama.expert_count > 0) */
        .hf_classes = llama_classes,
        .model_types = llama_types,
        .conv = {TABLES(llama_global, llama_block, llama_prefixes),
                 .flags = PARE_CONV_PERMUTE_QK | PARE_CONV_MERGE_EXPERTS | PARE_CONV_ROPE_FREQS,
                 .extra_gguf = llama_extra, .experts_prefix = "block_sparse_moe.experts.", .experts = mixtral_experts,
                 .expert_count_keys = KEYS("num_local_experts"), .hparams = llama_hparams,
                 .tok = PARE_TOK_SP | PARE_TOK_LLAMA_HF | PARE_TOK_LLAMA_EXTRAS, .hf_class = "LlamaForCausalLM",
                 .model_type = "llama", .moe_hf_class = "MixtralForCausalLM", .moe_model_type = "mixtral",
                 .hidden_act = "silu"},

        .fwd = {PARE_NORM_RMS, PARE_FFN_SWIGLU, PARE_ROPE_NORM, PARE_FWD_MOE},
    },
    {
        .name = "qwen2",
        .hf_classes = qwen2_classes,
        .model_types = qwen2_types,
        .conv = {TABLES(llama_global, llama_block, llama_prefixes), .hparams = qwen2_hparams, .tok = PARE_TOK_SP,
                 .hf_class = "Qwen2ForCausalLM", .model_type = "qwen2", .hidden_act = "silu",
                 .tokenizer_class = "Qwen2Tokenizer"},

        .fwd = {PARE_NORM_RMS, PARE_FFN_SWIGLU, PARE_ROPE_NEOX, 0},
    },
    {
        .name = "gpt2",
        .hf_classes = gpt2_classes,
        .model_types = gpt2_types,
        .conv = {TABLES(gpt2_global, gpt2_block, gpt2_prefixes),
                 .flags = PARE_CONV_CONV1D | PARE_CONV_OUTPUT_COPY | PARE_CONV_TIED_DEFAULT, .skip_suffixes = gpt2_skip,
                 .hparams = gpt2_hparams, .hf_class = "GPT2LMHeadModel", .model_type = "gpt2",
                 .tokenizer_class = "GPT2Tokenizer"},

        .fwd = {PARE_NORM_LAYER, PARE_FFN_GELU, PARE_ROPE_NONE, PARE_FWD_FUSED_QKV},
    },
    {
        .name = "gemma",
        .hf_classes = gemma_classes,
        .model_types = gemma_types,
        .conv = {TABLES(llama_global, llama_block, llama_prefixes),
                 .flags = PARE_CONV_NORM_PLUS1 | PARE_CONV_DROP_LM_HEAD | PARE_CONV_TIED_DEFAULT, .hparams = gemma_hparams,
                 .tok = PARE_TOK_SP | PARE_TOK_SP_ONLY | PARE_TOK_NO_SPACE_PREFIX | PARE_TOK_GEMMA_EOT,
                 .hf_class = "GemmaForCausalLM", .model_type = "gemma", .hidden_act = "gelu_pytorch_tanh"},

        .fwd = {PARE_NORM_RMS, PARE_FFN_GEGLU, PARE_ROPE_NEOX, PARE_FWD_EMBD_SCALE | PARE_FWD_Q_PRESCALE},
    },
    {
        .name = "gemma2",
        .hf_classes = gemma2_classes,
        .model_types = gemma2_types,
        .conv = {TABLES(llama_global, gemma2_block, llama_prefixes),
                 .flags = PARE_CONV_NORM_PLUS1 | PARE_CONV_DROP_LM_HEAD | PARE_CONV_TIED_DEFAULT, .hparams = gemma2_hparams,
                 .tok = PARE_TOK_SP | PARE_TOK_SP_ONLY | PARE_TOK_NO_SPACE_PREFIX, .hf_class = "Gemma2ForCausalLM",
                 .model_type = "gemma2", .hidden_act = "gelu_pytorch_tanh"},

        .fwd = {PARE_NORM_RMS, PARE_FFN_GEGLU, PARE_ROPE_NEOX,
                PARE_FWD_EMBD_SCALE | PARE_FWD_POST_NORM | PARE_FWD_SOFTCAP | PARE_FWD_SWA | PARE_FWD_Q_PRESCALE |
                    PARE_FWD_Q_SCALE_BY_TYPE,
                2, 4096, 0, 46},
    },
    {
        .name = "phi3",
        .hf_classes = phi3_classes,
        .model_types = phi3_types,
        .conv = {TABLES(llama_global, phi3_block, llama_prefixes), .hparams = phi3_hparams,
                 .tok = PARE_TOK_SP | PARE_TOK_SP_ONLY | PARE_TOK_PHI3, .hf_class = "Phi3ForCausalLM", .model_type = "phi3",
                 .hidden_act = "silu"},

        .fwd = {PARE_NORM_RMS, PARE_FFN_SWIGLU, PARE_ROPE_NEOX,
                PARE_FWD_FUSED_QKV | PARE_FWD_FUSED_GATE_UP | PARE_FWD_Q_PRESCALE | PARE_FWD_SWA, 0, 0},
    },
    {
        .name = "qwen2moe",
        .hf_classes = qwen2moe_classes,
        .model_types = qwen2moe_types,
        .conv = {TABLES(llama_global, qwen2moe_block, llama_prefixes), .flags = PARE_CONV_MERGE_EXPERTS,
                 .experts_prefix = "mlp.experts.", .experts = qwen2moe_experts, .expert_count_keys = KEYS("num_experts"),
                 .hparams = qwen2moe_hparams, .hf_class = "Qwen2MoeForCausalLM", .model_type = "qwen2_moe",
                 .hidden_act = "silu", .tokenizer_class = "Qwen2Tokenizer"},

        .fwd = {PARE_NORM_RMS, PARE_FFN_SWIGLU, PARE_ROPE_NEOX, PARE_FWD_MOE | PARE_FWD_SHARED_EXPERT},
    },
    {
        .name = "starcoder2",
        .hf_classes = starcoder2_classes,
        .model_types = starcoder2_types,
        .conv = {TABLES(llama_global, starcoder2_block, llama_prefixes), .flags = PARE_CONV_TIED_DEFAULT,
                 .hparams = base_hparams, .hf_class = "Starcoder2ForCausalLM", .model_type = "starcoder2",
                 .hidden_act = "gelu_pytorch_tanh", .tokenizer_class = "GPT2Tokenizer"},

        .fwd = {PARE_NORM_LAYER, PARE_FFN_GELU, PARE_ROPE_NEOX, 0},
    },
    {
        .name = "olmo2",
        .hf_classes = olmo2_classes,
        .model_types = olmo2_types,
        .conv = {TABLES(llama_global, olmo2_block, llama_prefixes), .hparams = base_hparams,
                 .hf_class = "Olmo2ForCausalLM", .model_type = "olmo2", .hidden_act = "silu",
                 .tokenizer_class = "GPT2Tokenizer"},

        .fwd = {PARE_NORM_RMS, PARE_FFN_SWIGLU, PARE_ROPE_NEOX,
                PARE_FWD_POST_NORM | PARE_FWD_NO_PRE_NORM | PARE_FWD_QK_NORM},
    },
    {
        .name = "gptneox",
        .hf_classes = gptneox_classes,
        .model_types = gptneox_types,
        .conv = {TABLES(gptneox_global, gptneox_block, gptneox_prefixes), .flags = PARE_CONV_NEOX_QKV,
                 .hparams = gptneox_hparams, .hf_class = "GPTNeoXForCausalLM", .model_type = "gpt_neox",
                 .hidden_act = "gelu", .tokenizer_class = "GPTNeoXTokenizer"},

        .fwd = {PARE_NORM_LAYER, PARE_FFN_GELU, PARE_ROPE_NEOX, PARE_FWD_PARALLEL_2NORM | PARE_FWD_FUSED_QKV},
    },
    {
        .name = "command-r",
        .hf_classes = commandr_classes,
        .model_types = commandr_types,
        .conv = {TABLES(llama_global, commandr_block, llama_prefixes), .flags = PARE_CONV_TIED_DEFAULT,
                 .hparams = commandr_hparams, .hf_class = "CohereForCausalLM", .model_type = "cohere",
                 .hidden_act = "silu", .tokenizer_class = "CohereTokenizerFast"},

        .fwd = {PARE_NORM_LAYER, PARE_FFN_SWIGLU, PARE_ROPE_NORM,
                PARE_FWD_PARALLEL | PARE_FWD_LOGIT_SCALE | PARE_FWD_QK_NORM},
    },
    {
        .name = "phi2",
        .hf_classes = phi2_classes,
        .model_types = phi2_types,
        .conv = {TABLES(phi2_global, phi2_block, llama_prefixes), .hparams = phi2_hparams, .bpe_pre = "phi-2",
                 .hf_class = "PhiForCausalLM", .model_type = "phi", .hidden_act = "gelu_new",
                 .tokenizer_class = "CodeGenTokenizer"},

        .fwd = {PARE_NORM_LAYER, PARE_FFN_GELU, PARE_ROPE_NEOX,
                PARE_FWD_PARALLEL | PARE_FWD_PAR_ATTN_FFN | PARE_FWD_Q_PRESCALE},
    },
    {
        .name = "qwen3",
        .hf_classes = qwen3_classes,
        .model_types = qwen3_types,
        .conv = {TABLES(llama_global, qwen3_block, llama_prefixes), .hparams = qwen2_hparams, .tok = PARE_TOK_SP,
                 .hf_class = "Qwen3ForCausalLM", .model_type = "qwen3", .hidden_act = "silu",
                 .tokenizer_class = "Qwen2Tokenizer"},

        .fwd = {PARE_NORM_RMS, PARE_FFN_SWIGLU, PARE_ROPE_NEOX, PARE_FWD_QK_NORM},
    },
    {
        .name = "qwen3moe",
        .hf_classes = qwen3moe_classes,
        .model_types = qwen3moe_types,
        .conv = {TABLES(llama_global, qwen3moe_block, llama_prefixes), .flags = PARE_CONV_MERGE_EXPERTS,
                 .experts_prefix = "mlp.experts.", .experts = qwen2moe_experts, .expert_count_keys = KEYS("num_experts"),
                 .hparams = qwen2moe_hparams, .tok = PARE_TOK_SP, .hf_class = "Qwen3MoeForCausalLM",
                 .model_type = "qwen3_moe", .hidden_act = "silu", .tokenizer_class = "Qwen2Tokenizer"},

        .fwd = {PARE_NORM_RMS, PARE_FFN_SWIGLU, PARE_ROPE_NEOX, PARE_FWD_MOE | PARE_FWD_QK_NORM},
    },
    {
        .name = "gemma3", /* text; also the language model of Gemma3ForConditionalGeneration */
        .hf_classes = gemma3_classes,
        .model_types = gemma3_types,
        .conv = {TABLES(llama_global, gemma3_block, llama_prefixes),
                 .flags = PARE_CONV_NORM_PLUS1 | PARE_CONV_DROP_LM_HEAD | PARE_CONV_TIED_DEFAULT, .hparams = gemma3_hparams,
                 .tok = PARE_TOK_SP | PARE_TOK_SP_ONLY | PARE_TOK_NO_SPACE_PREFIX, .hf_class = "Gemma3ForCausalLM",
                 .model_type = "gemma3_text", .hidden_act = "gelu_pytorch_tanh", .prefix_map = gemma3_prefix_map,
                 .skip_prefixes = gemma3_skip},

        .fwd = {PARE_NORM_RMS, PARE_FFN_GEGLU, PARE_ROPE_NEOX,
                PARE_FWD_EMBD_SCALE | PARE_FWD_POST_NORM | PARE_FWD_QK_NORM | PARE_FWD_SWA | PARE_FWD_Q_PRESCALE |
                    PARE_FWD_Q_SCALE_BY_TYPE,
                6, 0, 10000.0f, 62},
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
           "gptneox, command-r, phi2, qwen3, qwen3moe, gemma3";
}
