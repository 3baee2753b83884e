#!/usr/bin/python3
"""The MoE CPU benchmark model of bench/moe_train_step.sh in PyTorch eager (Debian's
python3-torch: a benchmark peer only, never a dependency of peng).

DeepSeek-MoE layout, 4 layers, n_embd 256, 4 heads with 2 kv heads of 64, RoPE, RMSNorm,
every layer MoE: a softmax router over 16 SwiGLU experts of 128, top-2 with normalised
weights, 1 shared expert of 128, the load-balancing loss (alpha 0.001), untied head; T 128,
global batch 8, vocab 4096, fp32. The experts run as a straightforward per-expert loop over
the tokens routed to each (make_moe_reference.py's loop, with index_add). One step =
forward, backward, clip_grad_norm_, AdamW. Prints one JSON line: tokens/s and model FLOP/s
with peng's convention (6 N_active + 12 L H hd T; N_active counts 2 of the 16 experts, the
router, the shared expert, attention and head; not the input embedding).

Usage: pytorch_moe_train_step.py [--threads 1] [--seconds 10]
"""
import argparse, json, math, time
import torch
import torch.nn as nn
import torch.nn.functional as F

p = argparse.ArgumentParser()
p.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
p.add_argument("--seconds", type=float, default=10.0)
a = p.parse_args()
torch.set_num_threads(a.threads)
torch.manual_seed(0)
L, H, K, C, T, B, V = 4, 4, 2, 256, 128, 8, 4096
E, TOPK, M, S, ALPHA = 16, 2, 128, 1, 0.001
HD = C // H


def rms_norm(x, w, eps=1e-6):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def rotate_half(x):
    x1, x2 = x[..., : HD // 2], x[..., HD // 2:]
    return torch.cat([-x2, x1], dim=-1)


class SwiGlu(nn.Module):
    def __init__(self, hidden):
        super().__init__()
        self.gate_up = nn.Linear(C, 2 * hidden, bias=False)
        self.down = nn.Linear(hidden, C, bias=False)
        self.hidden = hidden

    def forward(self, x):
        gate, up = self.gate_up(x).split(self.hidden, dim=-1)
        return self.down(F.silu(gate) * up)


class Moe(nn.Module):
    def __init__(self):
        super().__init__()
        self.router = nn.Linear(C, E, bias=False)
        self.experts = nn.ModuleList(SwiGlu(M) for _ in range(E))
        self.shared = SwiGlu(S * M)

    def forward(self, u):
        n = u.shape[0]
        scores = self.router(u).softmax(-1)
        chosen = torch.topk(scores, TOPK, dim=-1).indices
        w = scores.gather(1, chosen)
        w = w / w.sum(-1, keepdim=True)
        y = torch.zeros_like(u)
        for e in range(E):
            rows, slot = (chosen == e).nonzero(as_tuple=True)
            if rows.numel():
                y = y.index_add(0, rows, w[rows, slot].unsqueeze(1) * self.experts[e](u[rows]))
        counts = torch.bincount(chosen.reshape(-1), minlength=E)
        aux = ALPHA * ((counts.float() * (E / (TOPK * n))) * scores.mean(0)).sum()
        return y + self.shared(u), aux


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.norm_1, self.norm_2 = nn.Parameter(torch.ones(C)), nn.Parameter(torch.ones(C))
        self.qkv = nn.Linear(C, (H + 2 * K) * HD, bias=False)
        self.o = nn.Linear(H * HD, C, bias=False)
        self.moe = Moe()
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
        y, aux = self.moe(rms_norm(x, self.norm_2).view(b * t, C))
        return x + y.view(b, t, C), aux


class MoeModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(V, C)
        self.layers = nn.ModuleList(Block() for _ in range(L))
        self.norm = nn.Parameter(torch.ones(C))
        self.lm_head = nn.Linear(C, V, bias=False)
        inv_freq = 1.0 / (10000.0 ** (torch.arange(0, HD, 2, dtype=torch.float64) / HD))
        ang = torch.outer(torch.arange(T, dtype=torch.float64), inv_freq)
        self.register_buffer("cos", torch.cat([ang, ang], -1).cos().float())
        self.register_buffer("sin", torch.cat([ang, ang], -1).sin().float())

    def forward(self, idx, targets):
        x, aux = self.embed(idx), 0.0
        for blk in self.layers:
            x, a_l = blk(x, self.cos[: idx.shape[1]], self.sin[: idx.shape[1]])
            aux = aux + a_l
        logits = self.lm_head(rms_norm(x, self.norm))
        return F.cross_entropy(logits.view(-1, V), targets.view(-1)) + aux


model = MoeModel()
expert = sum(p.numel() for p in model.layers[0].moe.experts[0].parameters())
n_active = sum(p.numel() for p in model.parameters()) - model.embed.weight.numel() \
    - L * (E - TOPK) * expert
flops_per_token = 6 * n_active + 12 * L * H * HD * T
decay = [p for p in model.parameters() if p.dim() >= 2]
no_decay = [p for p in model.parameters() if p.dim() < 2]
opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                         {"params": no_decay, "weight_decay": 0.0}], lr=1e-4, betas=(0.9, 0.95))
x = torch.randint(0, V, (B, T))
y = torch.randint(0, V, (B, T))


def step():
    opt.zero_grad(set_to_none=False)  # experts without tokens still step
    model(x, y).backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()


for _ in range(2):
    step()
steps, t0 = 0, time.perf_counter()
while time.perf_counter() - t0 < a.seconds:
    step()
    steps += 1
dt = (time.perf_counter() - t0) / steps
print(json.dumps(dict(model="moe", threads=a.threads, torch=torch.__version__,
                      tokens_per_s=B * T / dt, step_ms=1e3 * dt,
                      model_flops=flops_per_token * B * T / dt, n_active=n_active)))
