/*
 * formats/pytorch.h - PyTorch checkpoints in torch.save's zip format (torch >= 1.6):
 * pytorch_model.bin, adapter_model.bin, *.pt, *.pth.
 *
 * The format: a zip archive (usually every entry STORED, data 64-byte aligned) whose entries
 * all live under one folder ARCHIVE/ (torch names it after the file):
 *
 *   ARCHIVE/data.pkl     a pickle (protocol 2 by default) of the saved object, here a dict
 *                        name -> tensor. Each tensor is
 *                          torch._utils._rebuild_tensor_v2(storage, storage_offset, size,
 *                                                          stride, requires_grad, hooks[, meta])
 *                        (wrapped in torch._utils._rebuild_parameter for nn.Parameter), and
 *                        each storage a persistent id ("storage", torch.FloatStorage, "KEY",
 *                        "cpu", numel) resolved by BINPERSID.
 *   ARCHIVE/data/KEY     the storage's numel elements, little-endian, row-major
 *   ARCHIVE/version      the format version as text ("3")
 *   ARCHIVE/byteorder    "little" or "big" (newer torch; absent means little)
 *
 * Storage classes and their types: FloatStorage F32, HalfStorage F16, BFloat16Storage BF16,
 * DoubleStorage F64, LongStorage I64, IntStorage I32, ShortStorage I16, CharStorage I8,
 * ByteStorage U8, BoolStorage BOOL. Several tensors may view one storage (tied weights,
 * slices) at an element offset with any non-negative strides.
 *
 * pare never executes the pickle: a restricted interpreter accepts only the opcodes that
 * torch.save emits for a state dict and only the globals collections.OrderedDict,
 * torch._utils._rebuild_tensor_v2 / _rebuild_parameter / _rebuild_parameter_with_state and
 * the storage classes above; any other global (os.system, builtins.eval, ...) is refused.
 * The zip is read through libzip, and its central directory is also parsed by pare to find
 * where each STORED entry's bytes lie in the file, so that contiguous tensors point straight
 * into the mapped file. Everything is bounded by the file: pickle memo and stack grow only
 * with the pickle's length, entry sizes are checked against the file and the pickle's
 * storage sizes, views against their storage.
 *
 * Limits: at most PARE_PT_MAX_PICKLE bytes of pickle; tensors of more than 4 dims are
 * accepted only when the extra leading dims are 1.
 */
#ifndef PARE_FORMATS_PYTORCH_H
#define PARE_FORMATS_PYTORCH_H

#include "core/core.h"

#define PARE_PT_MAX_PICKLE (1ull << 30)

/* Loads a torch zip checkpoint. The top-level object must be a dict; its tensor values
 * become the model's tensors in pickle order, named by their keys; tensors in nested dicts
 * (up to 4 levels, e.g. {"model": {...}}) are named "outer.inner"; other values (numbers,
 * strings, lists, optimizer state that holds no tensors) are ignored. Dims are in ggml order
 * (ne[0] = last entry of the torch size); a 0-d tensor becomes n_dims 1, ne[0] 1.
 * Contiguous tensors in STORED entries point into the mapped file (model->maps[0]); views
 * that are not contiguous and entries that are compressed become lazy tensors (t->read).
 * Errors: PARE_EINPUT for malformed files and forbidden pickles, naming the file;
 * PARE_EUNSUPPORTED for the legacy non-zip format, big-endian files, other storage types. */
pare_status pare_pytorch_load(const char *path, pare_model **out, pare_err *err);

#endif
