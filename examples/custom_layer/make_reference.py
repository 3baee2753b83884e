#!/usr/bin/python3
"""Reference training run of a Llama decoder whose MLP is ReLU^2 instead of SwiGLU
("llama_relu2"), in PyTorch autograd, used to judge the project's numerics. Adapted from
/work/shared/reference/make_llama_reference.py; only the MLP and the model_type /
hidden_act labels differ. Writes:
  model.safetensors + config.json  Hugging Face LlamaForCausalLM names and layout
                                   (nn.Linear weights are [out, in], y = x W^T, no biases)
  tokens.bin                       llm.c shard format (as make_reference.py)
  expected.json                    recipe + per-step loss and grad norm

Architecture (Hugging Face conventions):
  x = embed_tokens[idx]
  per layer: h = x + o_proj(attn(rope(q_proj(rms(x))), rope(k_proj(rms(x))), v_proj(rms(x))))
             x = h + down_proj(relu(up_proj(rms(h)))**2)
             (no gate_proj: up_proj [F, C], down_proj [C, F])
  logits = lm_head(rms(x))           (lm_head tied to embed_tokens with --tied)
  RMSNorm: x / sqrt(mean(x^2) + eps) * w
  RoPE: "rotate_half" form, inv_freq = theta^(-2i/hd), cos/sin of pos * inv_freq repeated
        over both halves; q' = q cos + rotate_half(q) sin, rotate_half(x) = [-x2, x1]
  GQA: n_kv_head key/value heads; query head h uses kv head h // (n_head / n_kv_head)
  head_dim = embd / heads; no q/k/v biases, no q/k norm
  config.json: model_type "llama_relu2", hidden_act "relu2"; expected.json config
  model_type "llama_relu2"

Usage: make_reference.py OUTDIR --vocab V --ctx T --layers L --heads H --kv-heads K
         --embd C --ffn F --batch B --steps S --seed N [--lr --wd --clip --rope-theta
         --rms-eps --tied --dtype]
"""
import argparse, json, math, os, struct
import numpy as np
import torch
import torch.nn.functional as F

p = argparse.ArgumentParser()
p.add_argument("out")
p.add_argument("--vocab", type=int, required=True)
p.add_argument("--ctx", type=int, required=True)
p.add_argument("--layers", type=int, required=True)
p.add_argument("--heads", type=int, required=True)
p.add_argument("--kv-heads", type=int, required=True)
p.add_argument("--embd", type=int, required=True)
p.add_argument("--ffn", type=int, required=True)
p.add_argument("--batch", type=int, required=True)
p.add_argument("--steps", type=int, required=True)
p.add_argument("--seed", type=int, required=True)
p.add_argument("--lr", type=float, default=1e-3)
p.add_argument("--wd", type=float, default=0.1)
p.add_argument("--clip", type=float, default=1.0)
p.add_argument("--rope-theta", type=float, default=10000.0)
p.add_argument("--rms-eps", type=float, default=1e-5)
p.add_argument("--tied", action="store_true")
p.add_argument("--dtype", default="float64")
a = p.parse_args()
os.makedirs(a.out, exist_ok=True)
torch.manual_seed(a.seed)
np.random.seed(a.seed)
V, T, L, H, K, C, FF, B = a.vocab, a.ctx, a.layers, a.heads, a.kv_heads, a.embd, a.ffn, a.batch
assert H % K == 0
hd = C // H
assert C % H == 0
assert hd % 2 == 0

params = {}
def rnd(shape, std):
    return torch.randn(shape, dtype=torch.float32) * std
params["model.embed_tokens.weight"] = rnd((V, C), 0.02)
for l in range(L):
    pre = f"model.layers.{l}."
    params[pre + "input_layernorm.weight"] = 1.0 + 0.1 * torch.randn(C)
    params[pre + "self_attn.q_proj.weight"] = rnd((H * hd, C), 0.02)
    params[pre + "self_attn.k_proj.weight"] = rnd((K * hd, C), 0.02)
    params[pre + "self_attn.v_proj.weight"] = rnd((K * hd, C), 0.02)
    params[pre + "self_attn.o_proj.weight"] = rnd((C, H * hd), 0.02 / math.sqrt(2 * L))
    params[pre + "post_attention_layernorm.weight"] = 1.0 + 0.1 * torch.randn(C)
    params[pre + "mlp.up_proj.weight"] = rnd((FF, C), 0.02)
    params[pre + "mlp.down_proj.weight"] = rnd((C, FF), 0.02 / math.sqrt(2 * L))
params["model.norm.weight"] = 1.0 + 0.1 * torch.randn(C)
if not a.tied:
    params["lm_head.weight"] = rnd((V, C), 0.02)

def write_safetensors(path, tensors):
    header, off, blobs = {}, 0, []
    for k, v in tensors.items():
        b = v.contiguous().numpy().astype("<f4").tobytes()
        header[k] = {"dtype": "F32", "shape": list(v.shape), "data_offsets": [off, off + len(b)]}
        off += len(b); blobs.append(b)
    header["__metadata__"] = {"format": "pt"}
    hj = json.dumps(header, separators=(",", ":")).encode()
    hj += b" " * ((8 - len(hj) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hj))); f.write(hj)
        for b in blobs: f.write(b)
write_safetensors(os.path.join(a.out, "model.safetensors"), params)
model_type = "llama_relu2"
hf = {"model_type": model_type, "architectures": ["LlamaForCausalLM"],
      "vocab_size": V, "hidden_size": C, "intermediate_size": FF, "num_hidden_layers": L,
      "num_attention_heads": H, "num_key_value_heads": K, "max_position_embeddings": T,
      "rms_norm_eps": a.rms_eps, "rope_theta": a.rope_theta, "hidden_act": "relu2",
      "tie_word_embeddings": bool(a.tied), "torch_dtype": "float32",
      "attention_bias": False, "mlp_bias": False}
with open(os.path.join(a.out, "config.json"), "w") as f:
    json.dump(hf, f, indent=1)

n_tok = a.steps * B * T + 1
tok = np.zeros(n_tok, dtype=np.uint16)
state = np.random.randint(V)
for i in range(n_tok):
    if np.random.rand() < 0.7:
        state = (state * 7 + 3) % V
    else:
        state = np.random.randint(V)
    tok[i] = state
with open(os.path.join(a.out, "tokens.bin"), "wb") as f:
    hdr = np.zeros(256, dtype="<i4"); hdr[0], hdr[1], hdr[2] = 20240520, 1, n_tok
    f.write(hdr.tobytes()); f.write(tok.astype("<u2").tobytes())

dt = getattr(torch, a.dtype)
P = {k: v.to(dt).clone().requires_grad_(True) for k, v in params.items()}

inv_freq = 1.0 / (a.rope_theta ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd))
ang = torch.outer(torch.arange(T, dtype=torch.float64), inv_freq)
emb = torch.cat([ang, ang], dim=-1)
COS, SIN = emb.cos().to(dt), emb.sin().to(dt)

def rotate_half(x):
    x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2:]
    return torch.cat([-x2, x1], dim=-1)

def rms(x, w):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + a.rms_eps) * w

def lin(x, pre):
    return x @ P[pre + ".weight"].T

def forward(idx):
    b, t = idx.shape
    x = P["model.embed_tokens.weight"][idx]
    mask = torch.tril(torch.ones(t, t, dtype=torch.bool))
    cos, sin = COS[:t], SIN[:t]
    for l in range(L):
        pre = f"model.layers.{l}."
        h = rms(x, P[pre + "input_layernorm.weight"])
        q = lin(h, pre + "self_attn.q_proj").view(b, t, H, hd).transpose(1, 2)
        k = lin(h, pre + "self_attn.k_proj").view(b, t, K, hd).transpose(1, 2)
        v = lin(h, pre + "self_attn.v_proj").view(b, t, K, hd).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        k = k.repeat_interleave(H // K, dim=1)
        v = v.repeat_interleave(H // K, dim=1)
        att = (q @ k.transpose(-2, -1)) / math.sqrt(hd)
        att = att.masked_fill(~mask, float("-inf")).softmax(-1)
        y = (att @ v).transpose(1, 2).reshape(b, t, H * hd)
        x = x + lin(y, pre + "self_attn.o_proj")
        h = rms(x, P[pre + "post_attention_layernorm.weight"])
        h = F.relu(lin(h, pre + "mlp.up_proj")).square()
        x = x + lin(h, pre + "mlp.down_proj")
    x = rms(x, P["model.norm.weight"])
    head = P["model.embed_tokens.weight"] if a.tied else P["lm_head.weight"]
    return x @ head.T

decay = [v for k, v in P.items() if v.dim() >= 2]
no_decay = [v for k, v in P.items() if v.dim() < 2]
opt = torch.optim.AdamW([{"params": decay, "weight_decay": a.wd},
                         {"params": no_decay, "weight_decay": 0.0}],
                        lr=a.lr, betas=(0.9, 0.95), eps=1e-8)
tok_t = torch.from_numpy(tok.astype(np.int64))
losses, norms = [], []
for s in range(a.steps):
    xs, ys = [], []
    for j in range(B):
        o = (s * B + j) * T
        xs.append(tok_t[o:o + T]); ys.append(tok_t[o + 1:o + T + 1])
    x, y = torch.stack(xs), torch.stack(ys)
    logits = forward(x)
    loss = F.cross_entropy(logits.reshape(-1, V), y.reshape(-1))
    opt.zero_grad(set_to_none=True)
    loss.backward()
    gn = torch.nn.utils.clip_grad_norm_(list(P.values()), a.clip)
    opt.step()
    losses.append(loss.item()); norms.append(float(gn))

cfg = dict(model_type=model_type, vocab_size=V, context_length=T, n_layer=L, n_head=H,
           n_kv_head=K, head_dim=hd, n_embd=C, ffn_hidden=FF, tied_lm_head=bool(a.tied),
           qkv_bias=False, qk_norm=False, rope_theta=a.rope_theta, rms_norm_eps=a.rms_eps,
           batch_size=B, steps=a.steps, lr=a.lr, beta1=0.9, beta2=0.95, eps=1e-8,
           weight_decay=a.wd,
           weight_decay_applies_to="tensors with 2 or more dims (embeddings, all matrices)",
           grad_clip=a.clip,
           batch_rule="step s, sequence j (0<=j<B) = tokens[(s*B+j)*T : (s*B+j)*T+T+1]; x=first T, y=last T",
           loss="mean cross-entropy over all B*T positions, before that step's update",
           grad_norm="global L2 norm of all gradients before clipping",
           reference_dtype=a.dtype)
with open(os.path.join(a.out, "expected.json"), "w") as f:
    json.dump(dict(config=cfg, loss=losses, grad_norm=norms), f, indent=1)
print(json.dumps(dict(loss=losses[:3] + ["..."] + losses[-2:], grad_norm=norms[:2])))
