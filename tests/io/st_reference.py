#!/usr/bin/env python3
# tests/io/st_reference.py — helper of tests/io/st_numpy.sh: a Llama forward written the
# way Hugging Face's LlamaForCausalLM computes it (RMSNorm, rotate_half RoPE with linear
# position scaling, repeat_kv for grouped-query attention, SwiGLU), in float64 numpy, on
# safetensors files read with the standard library.
#   check DIR LOGITS  runs the model in DIR (config.json + model.safetensors or an index)
#                     on the test tokens; its logits must equal LOGITS (parlm's) within
#                     1e-4 (1 + max |logit|), and a forward that rotates adjacent pairs
#                     (a reader that forgot HF's q/k permutation) must miss them by far
#   make DIR          writes a HF-layout Llama (random weights, tied head, 1 KV head,
#                     rope_scaling "linear" 4) as two shards and an index, as
#                     transformers' save_pretrained lays them out
import json
import os
import struct
import sys

import numpy as np

TOKENS = [0, 5, 69, 3, 17, 42, 8, 1, 33]  # st_tool's


def load(d):
    cfg = json.load(open(os.path.join(d, "config.json")))
    idx = os.path.join(d, "model.safetensors.index.json")
    files = (sorted(set(json.load(open(idx))["weight_map"].values())) if os.path.exists(idx)
             else ["model.safetensors"])
    w = {}
    for f in files:
        b = open(os.path.join(d, f), "rb").read()
        n = struct.unpack("<Q", b[:8])[0]
        hdr, data = json.loads(b[8:8 + n]), b[8 + n:]
        for k, e in hdr.items():
            if k == "__metadata__":
                continue
            assert e["dtype"] == "F32", (f, k, e["dtype"])
            s, t = e["data_offsets"]
            w[k] = np.frombuffer(data[s:t], dtype="<f4").astype(np.float64).reshape(e["shape"])
    return cfg, w


def forward(cfg, w, toks, adjacent=False):
    C, NH, L = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_hidden_layers"]
    NKV = cfg.get("num_key_value_heads") or NH
    hs, T, eps = C // NH, len(toks), cfg["rms_norm_eps"]
    rs = cfg.get("rope_scaling")
    factor = 1.0
    if rs:
        assert (rs.get("rope_type") or rs.get("type")) == "linear", rs
        factor = rs["factor"]
    inv = 1.0 / (cfg.get("rope_theta", 10000.0) ** (np.arange(0, hs, 2) / hs))
    fr = np.outer(np.arange(T) / factor, inv)  # (T, hs/2): linear scaling divides positions
    cos, sin = np.cos(np.concatenate([fr, fr], -1)), np.sin(np.concatenate([fr, fr], -1))

    def rope(x):  # (heads, T, hs)
        if adjacent:  # the wrong convention, as a control
            out = np.empty_like(x)
            a, b = x[..., 0::2], x[..., 1::2]
            out[..., 0::2] = a * np.cos(fr) - b * np.sin(fr)
            out[..., 1::2] = a * np.sin(fr) + b * np.cos(fr)
            return out
        half = np.concatenate([-x[..., hs // 2:], x[..., :hs // 2]], -1)  # rotate_half
        return x * cos + half * sin

    def rms(x, g):
        return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * g

    x = w["model.embed_tokens.weight"][toks]
    mask = np.triu(np.ones((T, T), bool), 1)
    for layer in range(L):
        p = "model.layers.%d." % layer
        h = rms(x, w[p + "input_layernorm.weight"])
        q = (h @ w[p + "self_attn.q_proj.weight"].T).reshape(T, NH, hs).transpose(1, 0, 2)
        k = (h @ w[p + "self_attn.k_proj.weight"].T).reshape(T, NKV, hs).transpose(1, 0, 2)
        v = (h @ w[p + "self_attn.v_proj.weight"].T).reshape(T, NKV, hs).transpose(1, 0, 2)
        q, k = rope(q), rope(k)
        k, v = np.repeat(k, NH // NKV, 0), np.repeat(v, NH // NKV, 0)  # repeat_kv
        a = q @ k.transpose(0, 2, 1) / np.sqrt(hs)
        a[:, mask] = -np.inf
        a = np.exp(a - a.max(-1, keepdims=True))
        a /= a.sum(-1, keepdims=True)
        x = x + (a @ v).transpose(1, 0, 2).reshape(T, C) @ w[p + "self_attn.o_proj.weight"].T
        h = rms(x, w[p + "post_attention_layernorm.weight"])
        g, u = h @ w[p + "mlp.gate_proj.weight"].T, h @ w[p + "mlp.up_proj.weight"].T
        x = x + (g / (1 + np.exp(-g)) * u) @ w[p + "mlp.down_proj.weight"].T
    x = rms(x, w["model.norm.weight"])
    head = w["model.embed_tokens.weight"] if cfg.get("tie_word_embeddings") else w["lm_head.weight"]
    return x @ head.T


def check(d, logits_path):
    cfg, w = load(d)
    got = np.loadtxt(logits_path, ndmin=2)
    ref = forward(cfg, w, TOKENS)
    wrong = forward(cfg, w, TOKENS, adjacent=True)
    assert got.shape == ref.shape, (got.shape, ref.shape)
    tol = 1e-4 * (1 + np.abs(ref).max())
    err, miss = np.abs(got - ref).max(), np.abs(wrong - ref).max()
    print("st_reference: %s: max |parlm - numpy| %.3g (tolerance %.3g, max |logit| %.3g); "
          "adjacent-pair RoPE misses by %.3g" % (d, err, tol, np.abs(ref).max(), miss))
    if not err <= tol:
        sys.exit("st_reference: FAIL: parlm's logits differ from the HF-style forward")
    if not miss > 100 * tol:
        sys.exit("st_reference: FAIL: the control does not discriminate the RoPE layouts")


def write_st(path, tensors):
    hdr, off, blobs = {"__metadata__": {"format": "pt"}}, 0, []
    for k, a in tensors:
        b = a.astype("<f4").tobytes()
        hdr[k] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        off += len(b)
        blobs.append(b)
    h = json.dumps(hdr, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)  # as the safetensors library pads it
    open(path, "wb").write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def make(d):
    C, NH, NKV, F, L, V = 32, 4, 1, 56, 2, 70
    hs = C // NH
    rng = np.random.default_rng(5)
    u = lambda *s, a=0.3: rng.uniform(-a, a, s)
    t = [("model.embed_tokens.weight", u(V, C, a=1.0))]
    for layer in range(L):
        p = "model.layers.%d." % layer
        t += [(p + "input_layernorm.weight", 1 + u(C, a=0.5)),
              (p + "self_attn.q_proj.weight", u(C, C)), (p + "self_attn.k_proj.weight", u(NKV * hs, C)),
              (p + "self_attn.v_proj.weight", u(NKV * hs, C)), (p + "self_attn.o_proj.weight", u(C, C)),
              (p + "post_attention_layernorm.weight", 1 + u(C, a=0.5)),
              (p + "mlp.gate_proj.weight", u(F, C)), (p + "mlp.up_proj.weight", u(F, C)),
              (p + "mlp.down_proj.weight", u(C, F, a=0.25))]
    t.append(("model.norm.weight", 1 + u(C, a=0.5)))
    os.makedirs(d, exist_ok=True)
    names = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
    half = len(t) // 2
    write_st(os.path.join(d, names[0]), t[:half])
    write_st(os.path.join(d, names[1]), t[half:])
    wm = {k: names[i >= half] for i, (k, _) in enumerate(t)}
    total = sum(a.size * 4 for _, a in t)
    json.dump({"metadata": {"total_size": total}, "weight_map": dict(sorted(wm.items()))},
              open(os.path.join(d, "model.safetensors.index.json"), "w"), indent=2)
    json.dump({"architectures": ["LlamaForCausalLM"], "attention_bias": False,
               "attention_dropout": 0.0, "bos_token_id": 1, "eos_token_id": 2, "head_dim": hs,
               "hidden_act": "silu", "hidden_size": C, "initializer_range": 0.02,
               "intermediate_size": F, "max_position_embeddings": 16, "mlp_bias": False,
               "model_type": "llama", "num_attention_heads": NH, "num_hidden_layers": L,
               "num_key_value_heads": NKV, "pretraining_tp": 1, "rms_norm_eps": 1e-05,
               "rope_scaling": {"factor": 4.0, "rope_type": "linear", "type": "linear"},
               "rope_theta": 10000.0, "tie_word_embeddings": True, "torch_dtype": "float32",
               "transformers_version": "4.46.0", "use_cache": True, "vocab_size": V},
              open(os.path.join(d, "config.json"), "w"), indent=2)


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "check":
        check(sys.argv[2], sys.argv[3])
    elif len(sys.argv) == 3 and sys.argv[1] == "make":
        make(sys.argv[2])
    else:
        sys.exit("usage: st_reference.py check DIR LOGITS | make DIR")
