/*
 * quant/imatrix.h - importance matrices (quant/imatrix.c): read, build, write and look up
 * llama.cpp's legacy imatrix files, which weigh each input column's error when quantizing.
 *
 * The legacy ".dat" format, all little-endian:
 *
 *   i32 n_entries                       >= 1
 *   n_entries times:
 *     i32 name_len, u8 name[name_len]   the GGUF tensor name, no NUL
 *     i32 ncall                         how many batches were summed
 *     i32 nval, f32 values[nval]        nval >= 1: per input column, the sum over ncall
 *                                       calls of the mean squared activation; the
 *                                       importance is values / ncall (when ncall > 0)
 *   optional trailer:
 *     i32 chunks                        chunks of text the matrix was computed on
 *     i32 len, u8 dataset[len]          the text file's name
 *
 * An entry belongs to the tensor of the same name and has ne[0] values (ne[0] * ne[2] for
 * 3-D expert tensors: one run of ne[0] per expert).
 */
#ifndef PARE_QUANT_IMATRIX_H
#define PARE_QUANT_IMATRIX_H

#include "core/core.h"

typedef struct pare_imatrix_entry {
    char *name;
    int32_t ncall;
    int64_t n;      /* number of values */
    float *raw;     /* as stored in the file (sums over ncall calls) */
    float *values;  /* raw / ncall (raw when ncall <= 0): what quantizers use */
} pare_imatrix_entry;

typedef struct pare_imatrix {
    char *path;      /* the file it was loaded from, as given (NULL when built in memory) */
    pare_imatrix_entry *entries;
    size_t n_entries, cap_entries;
    int32_t chunks;  /* trailer's chunk count (0 when absent) */
    char *dataset;   /* trailer's dataset name (NULL when absent) */
} pare_imatrix;

/* Reads a legacy .dat imatrix. Every count and length is bounded by the bytes left in the
 * file; duplicate names, non-finite values and trailing bytes are PARE_EINPUT. */
pare_status pare_imatrix_load(const char *path, pare_imatrix **out, pare_err *err);
/* A new empty imatrix (for a producer, e.g. a calibration pass). */
pare_imatrix *pare_imatrix_new(void);
/* Appends an entry, copying name and raw[0..n). ncall as in the file format. */
pare_status pare_imatrix_add(pare_imatrix *im, const char *name, int32_t ncall, const float *raw, int64_t n,
                             pare_err *err);
/* Sets the trailer (dataset copied; NULL for none). */
pare_status pare_imatrix_set_dataset(pare_imatrix *im, int32_t chunks, const char *dataset, pare_err *err);
/* Writes the legacy format atomically (always with the trailer). */
pare_status pare_imatrix_save(const pare_imatrix *im, const char *path, bool force, pare_err *err);
void pare_imatrix_free(pare_imatrix *im);
const pare_imatrix_entry *pare_imatrix_find(const pare_imatrix *im, const char *name);
/* The importance values for tensor t: *values = NULL when there is no entry of that name.
 * An entry whose length is not ne[0] * ne[2] is PARE_EINPUT naming the tensor and the file,
 * except for token_embd.weight, whose mismatched entry is ignored (as llama-quantize). */
pare_status pare_imatrix_for_tensor(const pare_imatrix *im, const pare_tensor *t, const float **values,
                                    pare_err *err);

#endif
