#!/usr/bin/env python3
"""The PyTorch peer of peng's GPU training-step benchmark (issue 14, bench/gpu_train_step.sh):
one model, one precision, one micro-batch per optimizer step, random tokens.

Models (what peng trains with the flags bench/gpu_train_step.sh passes it):
  --model gpt2-124m  GPT-2 small: 12 layers, 12 heads, n_embd 768, vocab 50257 padded to
                     50304 rows (as peng pads, to a multiple of 128), learned positions,
                     LayerNorm, GELU (tanh) MLP of 4C, biases, tied LM head. T 1024,
                     micro-batch 16.
  --model llama-1b   Llama-3.2-1B's shape: 16 layers, n_embd 2048, 32 query heads and 8
                     key/value heads of 64, SwiGLU MLP of 8192, vocab 128256, RMSNorm
                     (eps 1e-5), RoPE (theta 500000 with Llama 3's frequency scaling, as
                     peng's llama3.2-1b preset), no biases, tied LM head. T 1024 (the model
                     has 131072 positions; 1024 keeps the step and the benchmark short),
                     micro-batch 8 (about a third of an H200's 141 GB in bf16 with AdamW).
                     q/k/v and gate/up are one GEMM each, as peng fuses them.

Recipe: forward (loss inside the model), backward, clip_grad_norm_(1.0), AdamW (lr 3e-4,
betas 0.9/0.95, eps 1e-8, weight decay 0.1 on tensors of >= 2 dims, fused=True),
zero_grad(set_to_none). Attention is F.scaled_dot_product_attention(is_causal=True); for
GQA, enable_gqa=True where this torch has it and a flash-capable kernel takes it (probed
at start), else k/v repeat_interleave (--gqa). Nothing synchronizes inside the timed
steps: the losses stay on the device until the end.
  --precision bf16  torch.autocast(bfloat16) around the forward, fp32 parameters (the master
                    weights), gradients and AdamW state: mixed precision as Megatron does
                    it; TF32 allowed for any matmul left in fp32.
  --precision fp32  everything fp32, TF32 off (torch.backends.cuda.matmul.allow_tf32 and
                    cudnn.allow_tf32 False, float32 matmul precision "highest").
  --compile / --no-compile  torch.compile(model) (default on; it compiles during warm-up).

Timing: --warmup steps (default 5), then --steps timed steps (default 20), each between
two torch.cuda.Events; one synchronize at the end. tokens_per_s = micro_batch * seq_len /
the median step time. Model FLOPs per token follow peng's convention (telemetry/flops.h,
docs/TELEMETRY.md): 6N + 12 L H hd T, N = the parameters in matmuls (all but the
position embedding; the tied embedding counts once as the LM head; vocabulary padding
rows never count). MFU = model FLOP/s / --peak-tflops (default: H200 dense bf16 989.4 for
bf16, H200 fp32 without tensor cores 66.9 for fp32).

Prints one JSON line on stdout. A failure prints `error: ...` last on stderr and exits 1.

  pytorch_gpu_train_step.py --model gpt2-124m|llama-1b [--precision bf16|fp32]
      [--micro-batch N] [--seq-len T] [--steps 20] [--warmup 5] [--no-compile]
      [--peak-tflops X] [--gqa auto|native|repeat] [--device cuda|cpu] [--tiny]
  --device cpu --tiny: tiny shapes, 1 warm-up and 2 timed steps, no compile: a smoke test
  of the script on a machine without a GPU (Debian's torch 1.13 included, which lacks
  SDPA, torch.compile and CPU fused AdamW: the script falls back and says so in the JSON).
"""
import argparse
import contextlib
import json
import math
import platform
import resource
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

PEAK_TFLOPS = {"bf16": 989.4, "fp32": 66.9}  # H200 SXM: dense bf16; fp32 without tensor cores
HAS_SDPA = hasattr(F, "scaled_dot_product_attention")  # torch >= 2.0

# Shapes. vocab: real rows; the embedding has vocab rounded up to a multiple of vocab_pad.
MODELS = {
    "gpt2-124m": dict(family="gpt2", n_layer=12, n_head=12, n_kv_head=12, n_embd=768,
                      head_dim=64, ffn=3072, vocab=50257, vocab_pad=128, seq_len=1024,
                      micro_batch=16, norm_eps=1e-5),
    "llama-1b": dict(family="llama", n_layer=16, n_head=32, n_kv_head=8, n_embd=2048,
                     head_dim=64, ffn=8192, vocab=128256, vocab_pad=128, seq_len=1024,
                     micro_batch=8, norm_eps=1e-5, rope_theta=500000.0,
                     rope_llama3=dict(factor=32.0, low_freq_factor=1.0, high_freq_factor=4.0,
                                      original_max_position=8192)),
}
TINY = {
    "gpt2-124m": dict(n_layer=2, n_head=2, n_kv_head=2, n_embd=64, head_dim=32, ffn=256,
                      vocab=500, seq_len=32, micro_batch=2),
    "llama-1b": dict(n_layer=2, n_head=4, n_kv_head=2, n_embd=64, head_dim=16, ffn=160,
                     vocab=500, seq_len=32, micro_batch=2, rope_llama3=None),
}


def causal_attention(q, k, v, gqa_native):
    """q: (B, H, T, hd); k, v: (B, K, T, hd), H a multiple of K."""
    rep = q.shape[1] // k.shape[1]
    if HAS_SDPA and rep > 1 and gqa_native:
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
    if rep > 1:
        k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
    if HAS_SDPA:
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)
    # torch < 2.0 (the CPU smoke test only): the causal softmax spelled out.
    t = q.shape[2]
    att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(q.shape[-1]))
    mask = torch.ones(t, t, dtype=torch.bool, device=q.device).triu(1)
    att = att.float().masked_fill(mask, float("-inf")).softmax(-1).to(v.dtype)
    return att @ v


class Gpt2Block(nn.Module):
    def __init__(self, s):
        super().__init__()
        c, self.h, self.hd = s["n_embd"], s["n_head"], s["head_dim"]
        self.ln_1 = nn.LayerNorm(c, eps=s["norm_eps"])
        self.c_attn = nn.Linear(c, 3 * self.h * self.hd)
        self.c_proj = nn.Linear(self.h * self.hd, c)
        self.ln_2 = nn.LayerNorm(c, eps=s["norm_eps"])
        self.c_fc = nn.Linear(c, s["ffn"])
        self.mlp_proj = nn.Linear(s["ffn"], c)

    def forward(self, x):
        b, t, _ = x.shape
        q, k, v = self.c_attn(self.ln_1(x)).split(self.h * self.hd, dim=2)
        q, k, v = (z.view(b, t, self.h, self.hd).transpose(1, 2) for z in (q, k, v))
        y = causal_attention(q, k, v, False).transpose(1, 2).reshape(b, t, self.h * self.hd)
        x = x + self.c_proj(y)
        return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))


class Gpt2(nn.Module):
    def __init__(self, s):
        super().__init__()
        self.s = s
        self.wte = nn.Embedding(s["vocab_rows"], s["n_embd"])
        self.wpe = nn.Embedding(s["seq_len"], s["n_embd"])
        self.h = nn.ModuleList(Gpt2Block(s) for _ in range(s["n_layer"]))
        self.ln_f = nn.LayerNorm(s["n_embd"], eps=s["norm_eps"])
        for name, p in self.named_parameters():  # GPT-2's init, as peng's
            if name.endswith("bias"):
                nn.init.zeros_(p)
            elif p.dim() >= 2:
                residual = name.endswith(("c_proj.weight", "mlp_proj.weight"))
                std = 0.02 / math.sqrt(2 * s["n_layer"]) if residual else 0.02
                nn.init.normal_(p, 0.0, std)

    def forward(self, idx, targets):
        pos = torch.arange(idx.shape[1], device=idx.device)
        x = self.wte(idx) + self.wpe(pos)
        for blk in self.h:
            x = blk(x)
        logits = F.linear(self.ln_f(x), self.wte.weight)  # tied head over the padded rows
        return F.cross_entropy(logits.view(-1, logits.shape[-1]), targets.view(-1))

    def non_flops_params(self):  # position embedding and the vocabulary's padding rows
        s = self.s
        return self.wpe.weight.numel() + (s["vocab_rows"] - s["vocab"]) * s["n_embd"]


class RmsNorm(nn.Module):
    def __init__(self, c, eps):
        super().__init__()
        self.weight, self.eps = nn.Parameter(torch.ones(c)), eps

    def forward(self, x):
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return xf.to(x.dtype) * self.weight


def rotate_half(x):
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


class LlamaBlock(nn.Module):
    def __init__(self, s, gqa_native):
        super().__init__()
        c, self.h, self.k = s["n_embd"], s["n_head"], s["n_kv_head"]
        self.hd, self.ffn = s["head_dim"], s["ffn"]
        self.gqa_native = gqa_native
        self.input_layernorm = RmsNorm(c, s["norm_eps"])
        self.qkv_proj = nn.Linear(c, (self.h + 2 * self.k) * self.hd, bias=False)
        self.o_proj = nn.Linear(self.h * self.hd, c, bias=False)
        self.post_attention_layernorm = RmsNorm(c, s["norm_eps"])
        self.gate_up_proj = nn.Linear(c, 2 * self.ffn, bias=False)
        self.down_proj = nn.Linear(self.ffn, c, bias=False)

    def forward(self, x, cos, sin):
        b, t, _ = x.shape
        q, k, v = self.qkv_proj(self.input_layernorm(x)).split(
            [self.h * self.hd, self.k * self.hd, self.k * self.hd], dim=2)
        q = q.view(b, t, self.h, self.hd).transpose(1, 2)
        k = k.view(b, t, self.k, self.hd).transpose(1, 2)
        v = v.view(b, t, self.k, self.hd).transpose(1, 2)
        cos, sin = cos.to(q.dtype), sin.to(q.dtype)
        q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
        y = causal_attention(q, k, v, self.gqa_native)
        y = y.transpose(1, 2).reshape(b, t, self.h * self.hd)
        x = x + self.o_proj(y)
        gate, up = self.gate_up_proj(self.post_attention_layernorm(x)).split(self.ffn, dim=2)
        return x + self.down_proj(F.silu(gate) * up)


def rope_inv_freq(s):
    hd = s["head_dim"]
    inv = 1.0 / (s["rope_theta"] ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd))
    r = s.get("rope_llama3")
    if not r:
        return inv
    # Llama 3's rope_scaling (Hugging Face's _compute_llama3_parameters), as peng's preset.
    low_wavelen = r["original_max_position"] / r["low_freq_factor"]
    high_wavelen = r["original_max_position"] / r["high_freq_factor"]
    wavelen = 2 * math.pi / inv
    scaled = torch.where(wavelen > low_wavelen, inv / r["factor"], inv)
    smooth = (r["original_max_position"] / wavelen - r["low_freq_factor"]) / (
        r["high_freq_factor"] - r["low_freq_factor"])
    smoothed = (1 - smooth) * scaled / r["factor"] + smooth * scaled
    medium = (wavelen >= high_wavelen) & (wavelen <= low_wavelen)
    return torch.where(medium, smoothed, scaled)


class Llama(nn.Module):
    def __init__(self, s, gqa_native):
        super().__init__()
        self.s = s
        self.embed_tokens = nn.Embedding(s["vocab_rows"], s["n_embd"])
        self.layers = nn.ModuleList(LlamaBlock(s, gqa_native) for _ in range(s["n_layer"]))
        self.norm = RmsNorm(s["n_embd"], s["norm_eps"])
        ang = torch.outer(torch.arange(s["seq_len"], dtype=torch.float64), rope_inv_freq(s))
        self.register_buffer("cos", torch.cat([ang, ang], -1).cos().float(), persistent=False)
        self.register_buffer("sin", torch.cat([ang, ang], -1).sin().float(), persistent=False)
        for name, p in self.named_parameters():
            if p.dim() >= 2:
                residual = name.endswith(("o_proj.weight", "down_proj.weight"))
                std = 0.02 / math.sqrt(2 * s["n_layer"]) if residual else 0.02
                nn.init.normal_(p, 0.0, std)

    def forward(self, idx, targets):
        t = idx.shape[1]
        x = self.embed_tokens(idx)
        for blk in self.layers:
            x = blk(x, self.cos[:t], self.sin[:t])
        logits = F.linear(self.norm(x), self.embed_tokens.weight)  # tied head
        return F.cross_entropy(logits.view(-1, logits.shape[-1]), targets.view(-1))

    def non_flops_params(self):  # the vocabulary's padding rows (none for 128256)
        s = self.s
        return (s["vocab_rows"] - s["vocab"]) * s["n_embd"]


def probe_native_gqa(device, dtype):
    """Whether SDPA takes enable_gqa=True on a fused kernel here (flash for bf16,
    memory-efficient for fp32), forward and backward. Without one torch would fall back to
    the math kernel, slower than repeating k and v."""
    if not HAS_SDPA:
        return False, "no SDPA in torch %s" % torch.__version__
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel  # torch >= 2.3
    except ImportError as e:
        return False, "no torch.nn.attention.sdpa_kernel (%s)" % e
    backend = (SDPBackend.FLASH_ATTENTION if dtype != torch.float32
               else SDPBackend.EFFICIENT_ATTENTION)
    ctx = sdpa_kernel([backend]) if device.type == "cuda" else contextlib.nullcontext()
    try:
        q = torch.randn(2, 8, 64, 64, device=device, dtype=dtype, requires_grad=True)
        k = torch.randn(2, 2, 64, 64, device=device, dtype=dtype, requires_grad=True)
        v = torch.randn(2, 2, 64, 64, device=device, dtype=dtype, requires_grad=True)
        with ctx:
            out = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
            out.float().sum().backward()
        ref = F.scaled_dot_product_attention(q.detach(), k.detach().repeat_interleave(4, 1),
                                             v.detach().repeat_interleave(4, 1), is_causal=True)
        err = (out.detach().float() - ref.float()).abs().max().item()
        if not err <= (1e-2 if dtype != torch.float32 else 1e-4):
            return False, "enable_gqa differs from repeat_interleave by %g" % err
        return True, "enable_gqa on %s" % backend.name
    except (TypeError, RuntimeError) as e:
        why = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
        return False, "enable_gqa unavailable on %s: %s" % (backend.name, why)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", choices=sorted(MODELS), default="gpt2-124m")
    p.add_argument("--precision", choices=["bf16", "fp32"], default="bf16")
    p.add_argument("--micro-batch", type=int, help="sequences per step (gpt2-124m 16, llama-1b 8)")
    p.add_argument("--seq-len", type=int, help="T (default 1024)")
    p.add_argument("--steps", type=int, help="timed steps (default 20; --tiny 2)")
    p.add_argument("--warmup", type=int,
                   help="untimed steps first, compile included (default 5; --tiny 1)")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                   help="torch.compile the model (default on; off with --tiny)")
    p.add_argument("--peak-tflops", type=float,
                   help="peak TFLOP/s for MFU (default bf16 %(b)s, fp32 %(f)s: H200)" % dict(
                       b=PEAK_TFLOPS["bf16"], f=PEAK_TFLOPS["fp32"]))
    p.add_argument("--gqa", choices=["auto", "native", "repeat"], default="auto",
                   help="GQA attention: SDPA enable_gqa, k/v repeat_interleave, or (auto) the "
                        "first where a fused kernel takes it")
    p.add_argument("--device", default="cuda", help="cuda (default), cuda:N or cpu")
    p.add_argument("--tiny", action="store_true", help="tiny shapes for a smoke test")
    p.add_argument("--seed", type=int, default=1234)
    a = p.parse_args()

    s = dict(MODELS[a.model])
    if a.tiny:
        s.update(TINY[a.model])
    s["micro_batch"] = a.micro_batch or s["micro_batch"]
    s["seq_len"] = a.seq_len or s["seq_len"]
    s["vocab_rows"] = -(-s["vocab"] // s["vocab_pad"]) * s["vocab_pad"]
    steps = a.steps if a.steps is not None else (2 if a.tiny else 20)
    warmup = a.warmup if a.warmup is not None else (1 if a.tiny else 5)
    use_compile = a.compile if a.compile is not None else not a.tiny
    peak_tflops = a.peak_tflops or PEAK_TFLOPS[a.precision]
    if steps < 1 or warmup < 0 or s["micro_batch"] < 1 or s["seq_len"] < 1:
        raise SystemExit("error: --steps, --micro-batch and --seq-len must be >= 1, --warmup >= 0")

    device = torch.device(a.device)
    cuda = device.type == "cuda"
    if cuda and not torch.cuda.is_available():
        raise RuntimeError("--device %s: torch %s sees no CUDA device"
                           % (a.device, torch.__version__))
    if cuda:
        if device.index is None:  # set_device refuses a device without an index
            device = torch.device("cuda", torch.cuda.current_device())
        torch.cuda.set_device(device)
    tf32 = a.precision == "bf16"
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    if hasattr(torch, "set_float32_matmul_precision"):
        torch.set_float32_matmul_precision("high" if tf32 else "highest")
    if use_compile and not hasattr(torch, "compile"):
        raise RuntimeError("--compile: torch %s has no torch.compile (use --no-compile)"
                           % torch.__version__)

    compute_dtype = torch.bfloat16 if a.precision == "bf16" else torch.float32
    gqa_native, gqa_note = False, "no GQA (n_kv_head = n_head)"
    if s["n_kv_head"] != s["n_head"]:
        if a.gqa == "repeat":
            gqa_note = "repeat_interleave (--gqa repeat)"
        elif a.gqa == "native":
            gqa_native = HAS_SDPA
            gqa_note = "enable_gqa (--gqa native)" if HAS_SDPA else "repeat_interleave (no SDPA)"
        else:
            gqa_native, why = probe_native_gqa(device, compute_dtype)
            gqa_note = why if gqa_native else "repeat_interleave (%s)" % why
    attention = ("F.scaled_dot_product_attention(is_causal=True)" if HAS_SDPA
                 else "explicit causal softmax (torch %s has no SDPA)" % torch.__version__)

    torch.manual_seed(a.seed)  # after the probe: the same init whatever it drew
    model = (Gpt2(s) if s["family"] == "gpt2" else Llama(s, gqa_native)).to(device)
    n_params = sum(p.numel() for p in model.parameters())  # the tied embedding once
    n_flops = n_params - model.non_flops_params()
    flops_per_token = 6 * n_flops + 12 * s["n_layer"] * s["n_head"] * s["head_dim"] * s["seq_len"]

    params = list(model.parameters())
    groups = [{"params": [q for q in params if q.dim() >= 2], "weight_decay": 0.1},
              {"params": [q for q in params if q.dim() < 2], "weight_decay": 0.0}]
    opt_kw = dict(lr=3e-4, betas=(0.9, 0.95), eps=1e-8)
    try:
        opt = torch.optim.AdamW(groups, fused=True, **opt_kw)
        adamw = "fused"
    except (RuntimeError, TypeError, ValueError) as e:  # CPU tensors on an older torch
        opt = torch.optim.AdamW(groups, **opt_kw)
        adamw = "default (fused=True refused: %s)" % str(e).splitlines()[0][:120]

    net = [torch.compile(model) if use_compile else model]  # [0]: what train_step calls
    compile_note = "torch.compile (default mode)" if use_compile else False
    if a.precision == "bf16":
        amp = lambda: torch.autocast(device_type=device.type, dtype=torch.bfloat16)  # noqa: E731
    else:
        amp = contextlib.nullcontext
    # Random token batches, fixed seed, made before timing and kept on the device.
    gen = torch.Generator().manual_seed(a.seed)
    batches = []
    for _ in range(min(warmup + steps, 8)):
        seq = torch.randint(0, s["vocab"], (s["micro_batch"], s["seq_len"] + 1), generator=gen)
        batches.append((seq[:, :-1].contiguous().to(device), seq[:, 1:].contiguous().to(device)))

    def train_step(i):
        x, y = batches[i % len(batches)]
        with amp():
            loss = net[0](x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.detach()

    def sync():
        if cuda:
            torch.cuda.synchronize()

    losses = []
    t0 = time.perf_counter()
    for i in range(warmup):
        try:
            losses.append(train_step(i))
        except Exception as e:  # compilation happens here: fall back to eager, and say so
            if i > 0 or not use_compile:
                raise
            why = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
            print("warning: torch.compile failed (%s: %s); measuring eager PyTorch instead"
                  % (type(e).__name__, why), file=sys.stderr, flush=True)
            opt.zero_grad(set_to_none=True)
            net[0], compile_note = model, "failed (%s: %s): eager" % (type(e).__name__, why)
            if cuda:
                torch.cuda.empty_cache()
            losses.append(train_step(i))
    sync()
    warmup_s = time.perf_counter() - t0

    if cuda:
        marks = [torch.cuda.Event(enable_timing=True) for _ in range(steps + 1)]
        marks[0].record()
        for i in range(steps):
            losses.append(train_step(warmup + i))
            marks[i + 1].record()
        sync()
        step_ms = [marks[i].elapsed_time(marks[i + 1]) for i in range(steps)]
    else:
        clock = [time.perf_counter()]
        for i in range(steps):
            losses.append(train_step(warmup + i))
            clock.append(time.perf_counter())
        step_ms = [1e3 * (clock[i + 1] - clock[i]) for i in range(steps)]
    losses = torch.stack(losses).float().cpu().tolist()
    if not all(math.isfinite(v) for v in losses):
        raise RuntimeError("non-finite loss: %s" % losses)

    tokens = s["micro_batch"] * s["seq_len"]
    median_ms = statistics.median(step_ms)
    tokens_per_s = tokens * 1e3 / median_ms
    model_flops_per_s = flops_per_token * tokens_per_s
    out = {
        "peer": "pytorch", "model": a.model, "precision": a.precision,
        "micro_batch": s["micro_batch"], "seq_len": s["seq_len"], "tiny": a.tiny,
        "warmup": warmup, "steps": steps,
        "tokens_per_s": tokens_per_s,
        "tokens_per_s_mean": tokens * 1e3 * steps / sum(step_ms),
        "step_ms": median_ms, "step_ms_min": min(step_ms), "step_ms_max": max(step_ms),
        "params": n_params, "flops_params": n_flops, "flops_per_token": flops_per_token,
        "model_flops_per_s": model_flops_per_s,
        "peak_tflops": peak_tflops, "mfu": model_flops_per_s / (peak_tflops * 1e12),
        "loss_first": losses[0], "loss_last": losses[-1],
        "warmup_s": warmup_s,
        "compile": compile_note, "attention": attention, "gqa": gqa_note, "adamw": adamw,
        "autocast": "bfloat16" if a.precision == "bf16" else None, "tf32": tf32,
        "torch": torch.__version__, "cuda": torch.version.cuda,
        "device": (torch.cuda.get_device_name(device) if cuda
                   else "cpu (%s)" % (platform.processor() or platform.machine())),
        "max_memory_allocated_bytes": torch.cuda.max_memory_allocated(device) if cuda else None,
        "max_memory_reserved_bytes": torch.cuda.max_memory_reserved(device) if cuda else None,
        "max_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    }
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    try:
        main()
    except SystemExit:
        raise
    except BaseException as e:  # one line the benchmark's table can quote
        import traceback
        traceback.print_exc()
        msg = str(e).strip().splitlines()
        print("error: %s: %s" % (type(e).__name__, msg[0] if msg else ""), file=sys.stderr,
              flush=True)
        sys.exit(1)
