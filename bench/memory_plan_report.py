"""Tables (and a plot) of bench/memory_plan.sh's runs: predicted vs measured memory per rank.

usage: memory_plan_report.py WORK SKIP PLOT_PATH_OR_EMPTY POLICY...
"""
import json
import os
import re
import statistics
import sys

MIB = float(1 << 20)
LINE = re.compile(r"memory per rank \(predicted\): values ([\d.]+) MiB, gradients ([\d.]+) MiB, "
                  r"optimizer ([\d.]+) MiB, activations ([\d.]+) MiB \(([\d.]+) MiB per")


def load(work, name, skip):
    """(predicted (values, grads, optimizer, activations per micro-batch) MiB, last step line,
    median step time) of one run, or None when it failed."""
    log, jsonl = os.path.join(work, name + ".log"), os.path.join(work, name + ".jsonl")
    if not os.path.exists(jsonl):
        return None
    m = LINE.search(open(log).read())
    lines = [json.loads(l) for l in open(jsonl) if '"step_time_s"' in l]
    if not m or not lines:
        return None
    pred = tuple(float(m.group(i)) for i in (1, 2, 3, 5))
    times = [l["step_time_s"] for l in lines[skip:]] or [lines[-1]["step_time_s"]]
    return pred, lines[-1], statistics.median(times)


def main():
    work, skip, plot, policies = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4:]
    print("\nActivations kept by one micro-batch (B 8, T 256), one process:\n")
    print("| policy | predicted MiB | measured MiB | measured / predicted | saved vs none |")
    print("|---|---:|---:|---:|---:|")
    acts = {}
    for p in policies:
        r = load(work, "act-" + p, skip)
        if not r:
            print("| %s | n/a | | | |" % p)
            continue
        pred, last, _ = r
        acts[p] = (pred[3], last.get("activation_bytes", 0) / MIB)
    base = acts.get("none", (0, 0))[1]
    for p, (pred, meas) in acts.items():
        print("| %s | %.1f | %.1f | %.3f | %.0f%% |" %
              (p, pred, meas, meas / pred if pred else 0, 100 * (1 - meas / base) if base else 0))

    print("\nTraining state per rank (values + gradients + AdamW moments), fp32:\n")
    print("| dp | zero | predicted MiB | measured MiB | measured / predicted | ideal MiB "
          "| measured / ideal | per-layer buffers peak MiB | step s |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    state, times = {}, {}
    full = None
    for dp in (1, 2, 4):
        for zero in (0, 1, 2, 3):
            r = load(work, "zero%d-dp%d" % (zero, dp), skip)
            if not r:
                continue
            pred, last, t = r
            meas = last["state_bytes"] / MIB
            if dp == 1 and zero == 0:
                full = meas  # values, grads, moments = 1 : 1 : 2 of it
            v, g, o = full / 4, full / 4, full / 2
            ideal = (v / dp if zero >= 3 else v) + (g / dp if zero >= 2 else g) + \
                (o / dp if zero >= 1 else o)
            gathered = last.get("zero_unit_peak_bytes", 0) / MIB
            state[(dp, zero)] = (sum(pred[:3]), meas, ideal)
            times[(dp, zero)] = t
            print("| %d | %d | %.1f | %.1f | %.3f | %.1f | %.2f | %s | %.2f |" %
                  (dp, zero, sum(pred[:3]), meas, meas / sum(pred[:3]), ideal, meas / ideal,
                   "%.1f" % gathered if zero >= 2 else "", t))
    for dp in (2, 4):
        if (dp, 1) in times and (dp, 3) in times:
            print("\nstep time ZeRO 3 / ZeRO 1 at dp %d: %.2fx" %
                  (dp, times[(dp, 3)] / times[(dp, 1)]))
    if plot:
        draw(plot, acts, state)


def draw(path, acts, state):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 4.5))
    names = list(acts)
    x = range(len(names))
    a.bar([i - 0.2 for i in x], [acts[n][0] for n in names], 0.4, label="predicted")
    a.bar([i + 0.2 for i in x], [acts[n][1] for n in names], 0.4, label="measured")
    a.set_xticks(list(x))
    a.set_xticklabels([n.replace("selective:", "sel:").replace(",", ",\n") for n in names],
                      fontsize=7)
    a.set_ylabel("MiB per micro-batch")
    a.set_title("Activations by recompute policy (12 layers, 512 wide, B 8, T 256)")
    a.legend()
    keys = sorted(state)
    x = range(len(keys))
    b.bar([i - 0.27 for i in x], [state[k][0] for k in keys], 0.27, label="predicted")
    b.bar([i for i in x], [state[k][1] for k in keys], 0.27, label="measured")
    b.bar([i + 0.27 for i in x], [state[k][2] for k in keys], 0.27, label="ideal (1/dp)")
    b.set_xticks(list(x))
    b.set_xticklabels(["dp%d\nz%d" % k for k in keys], fontsize=7)
    b.set_ylabel("MiB per rank")
    b.set_title("Values + gradients + AdamW state by ZeRO stage")
    b.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print("\nplot: %s" % path)


if __name__ == "__main__":
    main()
