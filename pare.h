/*
 * pare.h - the umbrella header of libpare, for C programs that use pare as a library:
 *
 *     #include <pare.h>        cc prog.c $(pkg-config --cflags --libs pare)
 *
 * Each module keeps its own header (included below); see the README's module map for what
 * each does. Conventions everywhere: functions return a pare_status and fill a caller-owned
 * pare_err with a one-line message; every *_new / *_load has a matching *_free that accepts
 * NULL; nothing prints or exits. examples/quickstart.c opens a model, quantizes a tensor
 * and evaluates perplexity.
 */
#ifndef PARE_H
#define PARE_H

#define PARE_VERSION "0.1.0"

#include "core/core.h"          /* errors, types, f16/bf16, metadata, tensors, models, files, threads */
#include "core/isa.h"           /* which kernels (generic, AVX2, AVX-512) the process runs */
#include "formats/formats.h"    /* pare_model_load: any format by its path */
#include "formats/gguf.h"       /* GGUF read and write */
#include "formats/safetensors.h"
#include "formats/pytorch.h"
#include "formats/hf.h"         /* Hugging Face folders <-> GGUF names */
#include "quant/quant.h"        /* block types: quantize, dequantize */
#include "quant/plan.h"         /* llama-quantize's per-tensor choices */
#include "quant/imatrix.h"      /* importance matrices (llama.cpp's .dat files) */
#include "quant/blocks.h"       /* the block structs of the quantized types */
#include "lora/lora.h"          /* LoRA adapters: load, merge, extract */
#include "prune/prune.h"        /* magnitude, N:M and Wanda pruning */
#include "verify/llm.h"        /* the evaluator: logits, perplexity, KL divergence */
#include "verify/tokenizer.h"
#include "verify/hash.h"
#include "verify/diff.h"
#include "pipeline/pipeline.h"  /* whole jobs: convert, quantize, merge, prune, shrink */

#endif
