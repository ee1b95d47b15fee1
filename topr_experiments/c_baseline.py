"""RESULTS.md (c) The baseline sets the dataset composition (`experiments.py baseline`). TOPR from the SFT model
with each constant baseline c: held-out accuracy against the effective positive fraction
p_eff = p(1-c) / (1+c(1-2p)) (topr.effective_pos_fraction)."""
import os
import statistics

import common
import topr
from topr_experiments.runs import SFT_EVAL, eval_rows, run_unless_done, write_table

# topr with a constant c, 2 iterations of 32 prompts x 16
BASELINE_LOSS = "topr"
BASELINE_CS = [-0.9, -0.6, -0.3, 0.0, 0.3]
BASELINE = ["--iterations", "2", "--epochs", "1", "--prompts", "32", "--k", "16", "--batch-size", "128",
            "--micro-batch", "128", "--lr", "3e-5"]  # then --baseline c, SFT_EVAL


def exp_baseline(args):
    """(c) TOPR with each constant baseline c of BASELINE_CS from the SFT model: held-out pass@1 against the
    effective positive fraction p_eff of its datasets."""
    plt = common.pyplot()
    out = os.path.join(args.out, "exp_baseline")
    points = []
    for c in BASELINE_CS:
        d = os.path.join(out, f"c{c:+.1f}")
        rows = run_unless_done(args, d, ["rl", "--init", args.sft, "--loss", BASELINE_LOSS, "--seed", str(args.seed),
                                         *BASELINE, "--baseline", str(c), *SFT_EVAL])
        p = statistics.fmean(r["dataset_pos_frac"] for r in rows if "dataset_pos_frac" in r)
        held = eval_rows(d)
        points.append(dict(c=c, p=p, p_eff=topr.effective_pos_fraction(p, c), start=held[0]["test_pass@1"],
                           end=held[-1]["test_pass@1"], invalid=held[-1]["test_invalid"]))
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot([r["p_eff"] for r in points], [r["end"] for r in points], marker="o")
    ax.axhline(points[0]["start"], color="gray", ls="--", label="SFT start")
    for r in points:
        ax.annotate(f"c={r['c']:+.1f}", (r["p_eff"], r["end"]), fontsize=7)
    ax.set_xlabel("effective positive fraction p_eff")
    ax.set_ylabel("held-out pass@1")
    ax.set_ylim(points[0]["start"] - 0.06, points[0]["start"] + 0.06)  # +-3 s.e.: do not magnify noise
    ax.set_title("TOPR, constant baseline sweep (2 iterations; s.e. ~0.02)", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    common.save_figure(fig, os.path.join(args.figures, "topr_baseline.png"), 80)
    lines = ["| baseline c | positive fraction p | p_eff | pass@1 start | pass@1 end | invalid end |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {r['c']:+.1f} | {r['p']:.3f} | {r['p_eff']:.3f} | {r['start']:.3f} | {r['end']:.3f} "
              f"| {r['invalid']:.3f} |" for r in points]
    write_table(out, lines)
