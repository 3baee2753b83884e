#!/usr/bin/python3
"""The CPU benchmark models and recipe of bench/train_step_bench.cc in PyTorch eager
(Debian's python3-torch: a benchmark peer only, never a dependency of peng).

4 layers, 4 heads, n_embd 256, T 128, global batch 8, vocab 4096, fp32:
  --model gpt2   GPT-2 (LayerNorm, learned positions, GELU MLP of 4C, tied head)
  --model llama  Llama (RMSNorm, RoPE, 2 kv heads, SwiGLU MLP of 704, untied head), with
                 the q/k/v and gate/up projections fused as peng fuses them
One step = forward, backward, clip_grad_norm_, AdamW (fused=False, foreach default). Prints
one JSON line: tokens/s and model FLOP/s with peng's FLOPs convention (6N + 12 L H hd T; N
without the position embedding, and without an untied input embedding, which is only
looked up).

Usage: pytorch_train_step.py [--model gpt2|llama] [--threads 1] [--seconds 10]
"""
import argparse, json, math, time
import torch
import torch.nn as nn
import torch.nn.functional as F

p = argparse.ArgumentParser()
p.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
p.add_argument("--seconds", type=float, default=10.0)
p.add_argument("--model", choices=["gpt2", "llama"], default="gpt2")
a = p.parse_args()
torch.set_num_threads(a.threads)
torch.manual_seed(0)
L, H, C, T, B, V = 4, 4, 256, 128, 8, 4096


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.ln_1, self.ln_2 = nn.LayerNorm(C), nn.LayerNorm(C)
        self.c_attn, self.c_proj = nn.Linear(C, 3 * C), nn.Linear(C, C)
        self.c_fc, self.mlp_proj = nn.Linear(C, 4 * C), nn.Linear(4 * C, C)
        self.register_buffer("mask", ~torch.tril(torch.ones(T, T, dtype=torch.bool)))

    def forward(self, x):
        b, t, _ = x.shape
        q, k, v = self.c_attn(self.ln_1(x)).split(C, dim=2)
        q, k, v = (z.view(b, t, H, C // H).transpose(1, 2) for z in (q, k, v))
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(C // H))  # torch 1.13: no SDPA
        att = att.masked_fill(self.mask[:t, :t], float("-inf")).softmax(-1)
        y = att @ v
        x = x + self.c_proj(y.transpose(1, 2).reshape(b, t, C))
        return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))


class GPT(nn.Module):
    def __init__(self):
        super().__init__()
        self.wte, self.wpe = nn.Embedding(V, C), nn.Embedding(T, C)
        self.h = nn.ModuleList(Block() for _ in range(L))
        self.ln_f = nn.LayerNorm(C)

    def forward(self, idx, targets):
        x = self.wte(idx) + self.wpe(torch.arange(idx.shape[1]))
        for blk in self.h:
            x = blk(x)
        logits = self.ln_f(x) @ self.wte.weight.T
        return F.cross_entropy(logits.view(-1, V), targets.view(-1))


K, FF, HD = 2, 704, C // H  # Llama: kv heads, SwiGLU width, head width


def rms_norm(x, w, eps=1e-6):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def rotate_half(x):
    x1, x2 = x[..., : HD // 2], x[..., HD // 2:]
    return torch.cat([-x2, x1], dim=-1)


class LlamaBlock(nn.Module):
    def __init__(self):
        super().__init__()
        self.norm_1, self.norm_2 = nn.Parameter(torch.ones(C)), nn.Parameter(torch.ones(C))
        self.qkv = nn.Linear(C, (H + 2 * K) * HD, bias=False)
        self.o = nn.Linear(H * HD, C, bias=False)
        self.gate_up = nn.Linear(C, 2 * FF, bias=False)
        self.down = nn.Linear(FF, C, bias=False)
        self.register_buffer("mask", ~torch.tril(torch.ones(T, T, dtype=torch.bool)))

    def forward(self, x, cos, sin):
        b, t, _ = x.shape
        q, k, v = self.qkv(rms_norm(x, self.norm_1)).split([H * HD, K * HD, K * HD], dim=2)
        q = q.view(b, t, H, HD).transpose(1, 2)
        k = k.view(b, t, K, HD).transpose(1, 2)
        v = v.view(b, t, K, HD).transpose(1, 2)
        q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
        k, v = k.repeat_interleave(H // K, dim=1), v.repeat_interleave(H // K, dim=1)
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(HD))
        att = att.masked_fill(self.mask[:t, :t], float("-inf")).softmax(-1)
        x = x + self.o((att @ v).transpose(1, 2).reshape(b, t, H * HD))
        gate, up = self.gate_up(rms_norm(x, self.norm_2)).split(FF, dim=2)
        return x + self.down(F.silu(gate) * up)


class Llama(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(V, C)
        self.layers = nn.ModuleList(LlamaBlock() for _ in range(L))
        self.norm = nn.Parameter(torch.ones(C))
        self.lm_head = nn.Linear(C, V, bias=False)
        inv_freq = 1.0 / (10000.0 ** (torch.arange(0, HD, 2, dtype=torch.float64) / HD))
        ang = torch.outer(torch.arange(T, dtype=torch.float64), inv_freq)
        self.register_buffer("cos", torch.cat([ang, ang], -1).cos().float())
        self.register_buffer("sin", torch.cat([ang, ang], -1).sin().float())

    def forward(self, idx, targets):
        x = self.embed(idx)
        for blk in self.layers:
            x = blk(x, self.cos[: idx.shape[1]], self.sin[: idx.shape[1]])
        logits = self.lm_head(rms_norm(x, self.norm))
        return F.cross_entropy(logits.view(-1, V), targets.view(-1))


if a.model == "gpt2":
    model = GPT()
    n_params = sum(p.numel() for p in model.parameters()) - model.wpe.weight.numel()
    flops_per_token = 6 * n_params + 12 * L * C * T
else:
    model = Llama()
    n_params = sum(p.numel() for p in model.parameters()) - model.embed.weight.numel()
    flops_per_token = 6 * n_params + 12 * L * H * HD * T
decay = [p for p in model.parameters() if p.dim() >= 2]
no_decay = [p for p in model.parameters() if p.dim() < 2]
opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                         {"params": no_decay, "weight_decay": 0.0}], lr=1e-4, betas=(0.9, 0.95))
x = torch.randint(0, V, (B, T))
y = torch.randint(0, V, (B, T))


def step():
    opt.zero_grad(set_to_none=True)
    model(x, y).backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()


for _ in range(3):  # warm-up
    step()
n, t0 = 0, time.perf_counter()
while time.perf_counter() - t0 < a.seconds:
    step()
    n += 1
dt = (time.perf_counter() - t0) / n
print(json.dumps({"peer": "pytorch", "model": a.model, "torch": torch.__version__,
                  "threads": a.threads,
                  "step_ms": dt * 1e3, "tokens_per_s": B * T / dt,
                  "model_flops": flops_per_token * B * T / dt}))
