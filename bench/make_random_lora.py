#!/usr/bin/env python3
"""Write a random-weight PEFT LoRA adapter for a Llama-architecture Hugging Face model.

For benchmarks only (bench/run.sh): the factors are noise, so merging it says nothing about
quality, but names, shapes, dtypes and file layout are those of a real PEFT adapter.

  make_random_lora.py BASE_DIR OUT_DIR [--rank R] [--alpha A] [--seed S]

Reads BASE_DIR/config.json (hidden_size, intermediate_size, num_hidden_layers,
num_attention_heads, num_key_value_heads, head_dim if present) and writes
OUT_DIR/adapter_config.json and OUT_DIR/adapter_model.safetensors with, for each of the seven
projections of each layer, base_model.model.model.layers.N.{self_attn,mlp}.X.lora_A.weight
(r, in) and .lora_B.weight (out, r) in f32. Needs only Python 3 and numpy.
"""
import argparse
import json
import os
import struct
import sys

try:
    import numpy as np
except ImportError:
    # A pyenv or venv python3 may shadow Debian's, which is the one with numpy.
    if sys.executable != "/usr/bin/python3" and os.path.exists("/usr/bin/python3"):
        os.execv("/usr/bin/python3", ["/usr/bin/python3"] + sys.argv)
    raise

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def projection_shapes(cfg):
    """(module name, in features, out features) of every LoRA target, in layer order."""
    d, ff = cfg["hidden_size"], cfg["intermediate_size"]
    heads = cfg["num_attention_heads"]
    hd = cfg.get("head_dim") or d // heads
    kv = cfg.get("num_key_value_heads", heads) * hd
    dims = {"q_proj": (d, heads * hd), "k_proj": (d, kv), "v_proj": (d, kv),
            "o_proj": (heads * hd, d), "gate_proj": (d, ff), "up_proj": (d, ff),
            "down_proj": (ff, d)}
    out = []
    for i in range(cfg["num_hidden_layers"]):
        for m in TARGETS:
            part = "mlp" if m in ("gate_proj", "up_proj", "down_proj") else "self_attn"
            out.append((f"model.layers.{i}.{part}.{m}",) + dims[m])
    return out


def write_safetensors(path, arrays):
    """u64 LE header length, JSON header, then the f32 data in sorted name order, no gaps."""
    hdr, off = {"__metadata__": {"format": "pt"}}, 0
    names = sorted(arrays)
    for n in names:
        nb = arrays[n].nbytes
        hdr[n] = {"dtype": "F32", "shape": list(arrays[n].shape), "data_offsets": [off, off + nb]}
        off += nb
    h = json.dumps(hdr, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for n in names:
            f.write(arrays[n].astype("<f4").tobytes())


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("base")
    p.add_argument("out")
    p.add_argument("--rank", type=int, default=16)
    p.add_argument("--alpha", type=float, default=32.0)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    with open(os.path.join(a.base, "config.json")) as f:
        cfg = json.load(f)
    rng = np.random.default_rng(a.seed)
    arrays = {}
    for name, fin, fout in projection_shapes(cfg):
        pre = f"base_model.model.{name}"
        bound = 1.0 / np.sqrt(fin)
        arrays[pre + ".lora_A.weight"] = rng.uniform(-bound, bound, (a.rank, fin)).astype("<f4")
        # B is zero in a fresh PEFT adapter; noise here so that the merge changes every weight.
        arrays[pre + ".lora_B.weight"] = (rng.standard_normal((fout, a.rank)) * 0.01).astype("<f4")
    os.makedirs(a.out, exist_ok=True)
    write_safetensors(os.path.join(a.out, "adapter_model.safetensors"), arrays)
    conf = {"base_model_name_or_path": os.path.basename(os.path.normpath(a.base)), "bias": "none",
            "fan_in_fan_out": False, "inference_mode": True, "init_lora_weights": True,
            "lora_alpha": a.alpha, "lora_dropout": 0.0, "modules_to_save": None,
            "peft_type": "LORA", "r": a.rank, "target_modules": TARGETS,
            "task_type": "CAUSAL_LM", "use_dora": False, "use_rslora": False}
    with open(os.path.join(a.out, "adapter_config.json"), "w") as f:
        json.dump(conf, f, indent=2, sort_keys=True)
        f.write("\n")
    n = sum(v.size for v in arrays.values())
    print(f"{a.out}: rank {a.rank}, {len(arrays) // 2} modules, {n / 1e6:.1f}M parameters")


if __name__ == "__main__":
    main()
