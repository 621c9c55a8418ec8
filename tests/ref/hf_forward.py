#!/usr/bin/env python3
"""Float64 forward pass of a Hugging Face causal LM folder, written from the transformers
modeling code's definitions (not from llama.cpp), as the reference pare's evaluator is checked
against.

  hf_forward.py HF_FOLDER --tokens 1,2,3 | --tokens-file FILE  --out LOGITS.plog

Writes PLOG (b"PLOG", u32 n_tokens, u32 n_vocab, i32 tokens[n], f32 logits[n][n_vocab], little
endian): the logits of every position of the tokens decoded as one sequence from position 0.

Families (config.json model_type): llama, mistral, mixtral, qwen2, qwen2_moe, qwen3, qwen3_moe,
gemma2, gemma3_text (and gemma3 with a text_config). Needs python3 and numpy only.

Semantics, per family, as transformers 4.5x defines them:
  RMSNorm          x / sqrt(mean(x^2) + eps) * w; Gemma's stores w and applies (1 + w)
  rotary           rotate_half: dimension i pairs with i + d/2, inv_freq = base^(-2i/d)
  attention        softmax(q k^T * scale + causal mask) v, GQA by repeating k/v heads;
                   scale = head_dim^-0.5, Gemma: query_pre_attn_scalar^-0.5; Gemma 2
                   soft-caps scores (tanh(s/c) c) before the mask
  sliding window   key j visible from query i when i - j < sliding_window: Gemma 2 on even
                   layers, Gemma 3 on every layer but each sliding_window_pattern-th
                   (with rope_local_base_freq instead of rope_theta)
  q/k norm         Qwen3 / Gemma 3: RMSNorm over each head's head_dim before rotary
  MLP              down(act(gate x) * up x): SiLU; Gemma: GELU with the tanh approximation
  experts          router softmax over experts, top-k; Mixtral, Qwen3-MoE (norm_topk_prob)
                   renormalise the k weights; Qwen2-MoE adds sigmoid(shared_expert_gate x) *
                   shared_expert(x)
  Gemma            embeddings times sqrt(hidden_size); post-attention / pre- and post-FFN
                   norms; final logit soft-cap (Gemma 2)
"""
import argparse, json, math, os, struct, sys
import numpy as np


def load_safetensors(folder):
    files = []
    idx = os.path.join(folder, "model.safetensors.index.json")
    if os.path.exists(idx):
        files = sorted(set(json.load(open(idx))["weight_map"].values()))
    else:
        files = ["model.safetensors"]
    out = {}
    for fn in files:
        raw = open(os.path.join(folder, fn), "rb").read()
        n = struct.unpack("<Q", raw[:8])[0]
        hdr = json.loads(raw[8:8 + n])
        base = 8 + n
        for name, d in hdr.items():
            if name == "__metadata__":
                continue
            a, b = d["data_offsets"]
            buf = raw[base + a:base + b]
            dt = d["dtype"]
            if dt == "F32":
                x = np.frombuffer(buf, "<f4")
            elif dt == "F16":
                x = np.frombuffer(buf, "<f2")
            elif dt == "BF16":
                x = (np.frombuffer(buf, "<u2").astype(np.uint32) << 16).view("<f4")
            else:
                raise SystemExit(f"{fn}: {name}: dtype {dt} not handled by the reference")
            out[name] = x.astype(np.float64).reshape(d["shape"])
    return out


def rms(x, w, eps, gemma):
    y = x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps)
    return y * ((1.0 + w) if gemma else w)


def gelu_tanh(x):
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


def silu(x):
    return x / (1.0 + np.exp(-x))


def rotary(x, pos, base, n_rot):
    """x [T, H, d]: rotate_half on the first n_rot dimensions."""
    inv = base ** (-np.arange(0, n_rot, 2, dtype=np.float64) / n_rot)
    ang = pos[:, None] * inv[None, :]                      # [T, n_rot/2]
    cos = np.concatenate([np.cos(ang)] * 2, axis=-1)[:, None, :]
    sin = np.concatenate([np.sin(ang)] * 2, axis=-1)[:, None, :]
    r, rest = x[..., :n_rot], x[..., n_rot:]
    half = n_rot // 2
    rot = np.concatenate([-r[..., half:], r[..., :half]], axis=-1)
    return np.concatenate([r * cos + rot * sin, rest], axis=-1)


class Model:
    def __init__(self, folder):
        cfg = json.load(open(os.path.join(folder, "config.json")))
        if "text_config" in cfg:  # Gemma3ForConditionalGeneration: the language model's part
            tc = dict(cfg["text_config"])
            tc.setdefault("model_type", "gemma3_text")
            cfg = tc
        self.c = cfg
        self.mt = cfg["model_type"]
        w = load_safetensors(folder)
        # the language model inside a multimodal checkpoint
        for pre in ("language_model.", "model.language_model."):
            if any(k.startswith(pre) for k in w):
                w = {k[len(pre):] if k.startswith(pre) else k: v for k, v in w.items()}
                w = {("model." + k if not k.startswith(("model.", "lm_head")) else k): v for k, v in w.items()}
        self.w = w
        self.gemma = self.mt.startswith("gemma")

    def get(self, name):
        return self.w[name]

    def lin(self, x, name, bias=True):
        y = x @ self.w[name + ".weight"].T
        if bias and (name + ".bias") in self.w:
            y = y + self.w[name + ".bias"]
        return y

    def mlp(self, x, pre):
        act = gelu_tanh if self.gemma else silu
        return self.lin(act(self.lin(x, pre + "gate_proj")) * self.lin(x, pre + "up_proj"), pre + "down_proj")

    def experts(self, x, i):
        c, mt = self.c, self.mt
        if mt == "mixtral":
            pre = f"model.layers.{i}.block_sparse_moe."
            n_exp, k, norm = c["num_local_experts"], c["num_experts_per_tok"], True
        else:
            pre = f"model.layers.{i}.mlp."
            n_exp, k = c["num_experts"], c["num_experts_per_tok"]
            norm = bool(c.get("norm_topk_prob", False))
        logits = self.lin(x, pre + "gate")
        p = np.exp(logits - logits.max(-1, keepdims=True))
        p /= p.sum(-1, keepdims=True)
        out = np.zeros_like(x)
        for t in range(x.shape[0]):
            sel = np.argsort(-p[t], kind="stable")[:k]
            wts = p[t, sel]
            if norm:
                wts = wts / wts.sum()
            for e, we in zip(sel, wts):
                if mt == "mixtral":
                    ep = pre + f"experts.{e}."
                    h = silu(self.lin(x[t], ep + "w1")) * self.lin(x[t], ep + "w3")
                    out[t] += we * self.lin(h, ep + "w2")
                else:
                    out[t] += we * self.mlp(x[t], pre + f"experts.{e}.")
        if mt == "qwen2_moe":
            g = 1.0 / (1.0 + np.exp(-self.lin(x, pre + "shared_expert_gate")))
            out += g * self.mlp(x, pre + "shared_expert.")
        return out

    def is_moe_layer(self, i):
        c = self.c
        if self.mt == "mixtral":
            return True
        if self.mt in ("qwen2_moe", "qwen3_moe"):
            if i in c.get("mlp_only_layers", []):
                return False
            step = c.get("decoder_sparse_step", 1)
            return c.get("num_experts", 0) > 0 and (i + 1) % step == 0
        return False

    def sliding(self, i):
        c = self.c
        if self.mt == "gemma2":
            return i % 2 == 0
        if self.mt == "gemma3_text":
            if "layer_types" in c:
                return c["layer_types"][i] == "sliding_attention"
            return (i + 1) % c.get("sliding_window_pattern", 6) != 0
        if self.mt in ("mistral", "qwen2", "qwen3", "qwen2_moe", "qwen3_moe", "mixtral"):
            sw = c.get("sliding_window")
            return bool(sw) and c.get("use_sliding_window", self.mt in ("mistral", "mixtral"))
        return False

    def forward(self, tokens):
        c, gemma = self.c, self.gemma
        D = c["hidden_size"]
        H, KV = c["num_attention_heads"], c.get("num_key_value_heads", c["num_attention_heads"])
        hd = c.get("head_dim") or D // H
        eps = c.get("rms_norm_eps", 1e-6)
        T = len(tokens)
        pos = np.arange(T, dtype=np.float64)
        x = self.get("model.embed_tokens.weight")[tokens]
        if gemma:
            x = x * math.sqrt(D)
        scale = c.get("query_pre_attn_scalar", hd) ** -0.5 if gemma else hd ** -0.5
        for i in range(c["num_hidden_layers"]):
            p = f"model.layers.{i}."
            h = rms(x, self.get(p + "input_layernorm.weight"), eps, gemma)
            q = self.lin(h, p + "self_attn.q_proj").reshape(T, H, hd)
            k = self.lin(h, p + "self_attn.k_proj").reshape(T, KV, hd)
            v = self.lin(h, p + "self_attn.v_proj").reshape(T, KV, hd)
            if (p + "self_attn.q_norm.weight") in self.w:
                q = rms(q, self.get(p + "self_attn.q_norm.weight"), eps, gemma)
                k = rms(k, self.get(p + "self_attn.k_norm.weight"), eps, gemma)
            sl = self.sliding(i)
            base = c.get("rope_theta", 10000.0)
            if self.mt == "gemma3_text" and sl:
                base = c.get("rope_local_base_freq", 10000.0)
            factor = 1.0
            rs = c.get("rope_scaling")
            if rs and rs.get("rope_type", rs.get("type")) == "linear" and not (self.mt == "gemma3_text" and sl):
                factor = rs["factor"]
            q = rotary(q, pos / factor, base, hd)
            k = rotary(k, pos / factor, base, hd)
            rep = H // KV
            k = np.repeat(k, rep, axis=1)
            v = np.repeat(v, rep, axis=1)
            s = np.einsum("thd,shd->hts", q, k) * scale
            cap = c.get("attn_logit_softcapping") if self.mt == "gemma2" else None
            if cap:
                s = np.tanh(s / cap) * cap
            ii, jj = np.meshgrid(np.arange(T), np.arange(T), indexing="ij")
            mask = jj > ii
            if sl:
                mask |= (ii - jj) >= c["sliding_window"]
            s = np.where(mask[None], -np.inf, s)
            s = np.exp(s - s.max(-1, keepdims=True))
            s /= s.sum(-1, keepdims=True)
            a = np.einsum("hts,shd->thd", s, v).reshape(T, H * hd)
            a = self.lin(a, p + "self_attn.o_proj")
            if (p + "pre_feedforward_layernorm.weight") in self.w:  # Gemma 2 and 3: sandwich norms
                a = rms(a, self.get(p + "post_attention_layernorm.weight"), eps, True)
                x = x + a
                h = rms(x, self.get(p + "pre_feedforward_layernorm.weight"), eps, True)
                f = self.mlp(h, p + "mlp.")
                x = x + rms(f, self.get(p + "post_feedforward_layernorm.weight"), eps, True)
            else:
                x = x + a
                h = rms(x, self.get(p + "post_attention_layernorm.weight"), eps, gemma)
                x = x + (self.experts(h, i) if self.is_moe_layer(i) else self.mlp(h, p + "mlp."))
        x = rms(x, self.get("model.norm.weight"), eps, gemma)
        out = self.w.get("lm_head.weight", self.w["model.embed_tokens.weight"])
        logits = x @ out.T
        cap = c.get("final_logit_softcapping")
        if cap:
            logits = np.tanh(logits / cap) * cap
        return logits


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folder")
    ap.add_argument("--tokens")
    ap.add_argument("--tokens-file")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    if a.tokens:
        toks = [int(t) for t in a.tokens.split(",") if t.strip()]
    else:
        toks = [int(t) for t in open(a.tokens_file).read().replace(",", " ").replace("[", " ").replace("]", " ").split()]
    m = Model(a.folder)
    lg = m.forward(np.array(toks, dtype=np.int64))
    with open(a.out, "wb") as f:
        f.write(b"PLOG" + struct.pack("<II", len(toks), lg.shape[1]))
        f.write(np.array(toks, "<i4").tobytes())
        f.write(lg.astype("<f4").tobytes())


if __name__ == "__main__":
    main()
