/* formats/hf_impl.h - private to formats/hf*.c. */
#ifndef PARE_FORMATS_HF_IMPL_H
#define PARE_FORMATS_HF_IMPL_H

#include "core/core.h"

#include <cJSON.h>

/* Adds the tokenizer.ggml.* keys the converter writes for the folder's tokenizer
 * (tokenizer.model or tokenizer.json) to meta. config is the parsed config.json. */
pare_status pare_hf_tokenizer_meta(const char *folder, const cJSON *config, pare_meta *meta, pare_err *err);

/* Writes the tokenizer files for GGUF tokenizer metadata into folder. */
pare_status pare_hf_write_tokenizer(const pare_meta *meta, const char *folder, bool force, pare_err *err);

#endif
