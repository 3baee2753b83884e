#!/usr/bin/env python3
"""Compares two runs' per-step losses and gradient norms; exits 1 naming the first step that
differs by more than the relative tolerances. A run is a metrics JSONL file (peng's
--metrics-jsonl, or custom_loop's output) or a reference expected.json.

  compare_losses.py A B [--loss-rtol 1e-4] [--norm-rtol 1e-3]
"""
import argparse, json, sys


def load(path):
    with open(path) as f:
        text = f.read()
    if path.endswith(".json"):  # a reference: {"loss": [...], "grad_norm": [...]}
        j = json.loads(text)
        return j["loss"], j["grad_norm"]
    loss, norm = [], []
    for line in text.splitlines():
        r = json.loads(line)
        if "loss" in r:
            assert r["step"] == len(loss), f"{path}: step {r['step']} out of order"
            loss.append(r["loss"])
            norm.append(r["grad_norm"])
    return loss, norm


p = argparse.ArgumentParser()
p.add_argument("a")
p.add_argument("b")
p.add_argument("--loss-rtol", type=float, default=1e-4)
p.add_argument("--norm-rtol", type=float, default=1e-3)
args = p.parse_args()
(la, na), (lb, nb) = load(args.a), load(args.b)
if len(la) != len(lb) or not la:
    sys.exit(f"error: {args.a} has {len(la)} steps, {args.b} has {len(lb)}")
for s in range(len(la)):
    for what, x, y, tol in (("loss", la[s], lb[s], args.loss_rtol),
                            ("grad norm", na[s], nb[s], args.norm_rtol)):
        if abs(x - y) > tol * abs(y):
            sys.exit(f"error: step {s}: {what} {x} vs {y} (relative tolerance {tol})")
print(f"ok: {len(la)} steps within {args.loss_rtol} (loss) and {args.norm_rtol} (grad norm)")
