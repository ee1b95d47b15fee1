"""RESULTS.md (h) Sample reuse at an equal number of generated samples (`experiments.py reuse`) and (i) Dataset
composition, off-policy (`experiments.py composition`): from the bases of (f) on both tasks, c = 0."""
import os
import statistics

import common
import eval as ev
import topr
from common import UserError
from topr_experiments.runs import OFF_LOSSES, eval_rows, mean_se, rl_run, slices, write_table

# (h) Sample reuse: 4 datasets of 32 prompts x 8 samples (1024 generated), each used for E epochs
REUSE_LOSSES = ["topr", "reinforce", "sft_pos"]
REUSE = ["--iterations", "4", "--prompts", "32"]  # then --epochs E
REUSE_E = [1, 2, 4, 8]
# (i) Dataset composition: TOPR on (g)'s dataset, 4 epochs, with the c that gives each p_eff, or curated to it
COMPOSITION_LOSS = "topr"
COMPOSITION = ["--iterations", "1", "--prompts", "64", "--epochs", "4"]  # then --baseline c [--target-pos-frac]
COMPOSITION_P_EFF = [0.05, 0.1, 0.2, 0.5, 0.9]


def exp_reuse(args):
    """(h) Sample reuse at equal sample budget: 4 datasets of 32 prompts x 8 samples (1024 samples generated),
    each used for E epochs before the next is sampled; topr vs reinforce (c = 0) vs sft_pos."""
    out = os.path.join(args.out, "exp_reuse")
    runs = {}
    for t in args.tasks:
        for s in args.seeds:
            for loss in REUSE_LOSSES:
                for E in REUSE_E:
                    d = os.path.join(out, f"{t}_{loss}_E{E}_s{s}")
                    rl_run(args, d, t, [*OFF_LOSSES[loss], "--seed", str(s), *REUSE, "--epochs", str(E)])
                    runs[t, loss, E, s] = eval_rows(d)
    plt = common.pyplot()
    lines = []
    for task in args.tasks:
        cols = [f"{sl}pass@1" for sl in slices(task)] + ["invalid"]
        lines += [f"\n**{task} task** (4 datasets x 256 samples = 1024 generated; E epochs each; batch 64; seeds "
                  f"{' '.join(map(str, args.seeds))}; start -> end)\n",
                  "| loss | E | optimizer steps | " + " | ".join(cols) + " |", "|---|---|---|" + "---|" * len(cols)]
        for loss in REUSE_LOSSES:
            for E in REUSE_E:
                rs = [runs[task, loss, E, s] for s in args.seeds]
                cells = []
                for c in cols:
                    m, se = mean_se([r[-1][f"test_{c}"] for r in rs])
                    cells.append(f"{rs[0][0][f'test_{c}']:.3f} -> {m:.3f}" + (f" +- {se:.3f}" if len(rs) > 1 else ""))
                lines.append(f"| {loss} | {E} | {rs[0][-1]['step']} | " + " | ".join(cells) + " |")
        fig, axes = plt.subplots(len(slices(task)), 2, figsize=(8, 3.2 * len(slices(task))), squeeze=False)
        for row, sl in zip(axes, slices(task)):
            for ax, (xkey, xlabel) in zip(row, [("generated", "samples generated"), ("step", "optimizer steps")]):
                for li, loss in enumerate(REUSE_LOSSES):
                    for ei, E in enumerate(REUSE_E):
                        r = runs[task, loss, E, args.seeds[0]]
                        x = [p["iteration"] * 256 if xkey == "generated" else p["step"] for p in r]
                        y = [statistics.fmean(runs[task, loss, E, s][i][f"test_{sl}pass@1"] for s in args.seeds)
                             for i in range(len(r))]
                        ax.plot(x, y, color=f"C{li}", alpha=0.35 + 0.65 * ei / (len(REUSE_E) - 1), marker="o", ms=2,
                                label=f"{loss} E={E}")
                ax.set_xlabel(xlabel)
                ax.set_title(f"{task}: {sl.replace('_', ' ')}pass@1", fontsize=9)
                ax.grid(alpha=0.3)
        axes[0][1].legend(fontsize=6, ncol=3)
        fig.tight_layout()
        common.save_figure(fig, os.path.join(args.figures, f"topr_reuse_{task}.png"), 70)
    write_table(out, lines)


def exp_composition(args):
    """(i) Dataset composition off-policy: TOPR on the one dataset of `stability` (seed args.seed), 4 epochs,
    with the constant baseline c that gives each p_eff on it, and with curation (--target-pos-frac) to the
    same fractions at c = 0."""
    out = os.path.join(args.out, "exp_composition")
    plt = common.pyplot()
    lines = []
    n_panels = sum(len(slices(t)) for t in args.tasks)
    fig, axes = plt.subplots(1, n_panels, figsize=(4.5 * n_panels, 3.4), squeeze=False)
    axes = iter(axes[0])
    for task in args.tasks:
        ref = os.path.join(args.out, "exp_stability", f"{task}_topr_s{args.seed}")
        if not os.path.exists(os.path.join(ref, "metrics.jsonl")):
            raise UserError(f"run `experiments.py stability --tasks {task} --seeds {args.seed}` first ({ref})")
        p = [r for r in ev.read_metrics(ref) if "dataset_pos_frac" in r][0]["dataset_pos_frac"]
        run_flags = ["--loss", COMPOSITION_LOSS, "--seed", str(args.seed), *COMPOSITION]
        held = {}  # (how, p_eff) -> the run's held-out evaluations
        for f in COMPOSITION_P_EFF:
            c = topr.baseline_for_pos_fraction(p, f)
            d = os.path.join(out, f"{task}_c_peff{f}")
            rl_run(args, d, task, [*run_flags, "--baseline", f"{c:.4f}"])
            held["baseline", f] = eval_rows(d)
            d = os.path.join(out, f"{task}_curate{f}")
            rl_run(args, d, task, [*run_flags, "--baseline", "0", "--target-pos-frac", str(f)])
            held["curation", f] = eval_rows(d)
        cols = [f"{sl}pass@1" for sl in slices(task)] + ["invalid"]
        lines += [f"\n**{task} task** (dataset positive fraction p = {p:.3f}; TOPR, 4 epochs, seed {args.seed}; "
                  "start -> end)\n",
                  "| how | p_eff | c | samples | " + " | ".join(cols) + " |", "|---|---|---|---|" + "---|" * len(cols)]
        for how in ("baseline", "curation"):
            for f in COMPOSITION_P_EFF:
                h = held[how, f]
                c = f"{topr.baseline_for_pos_fraction(p, f):+.3f}" if how == "baseline" else "0"
                lines.append(f"| {how} | {f} | {c} | {h[-1]['samples']} | "
                             + " | ".join(f"{h[0][f'test_{k}']:.3f} -> {h[-1][f'test_{k}']:.3f}" for k in cols) + " |")
        for sl in slices(task):
            ax = next(axes)
            for how, marker in (("baseline", "o"), ("curation", "s")):
                ax.plot(COMPOSITION_P_EFF, [held[how, f][-1][f"test_{sl}pass@1"] for f in COMPOSITION_P_EFF],
                        marker=marker, label=f"TOPR, {how}")
            ax.axhline(held["baseline", 0.5][0][f"test_{sl}pass@1"], color="gray", ls="--", label="base")
            ax.set_xscale("log")
            ax.set_xlabel("effective positive fraction p_eff")
            ax.set_title(f"{task}: {sl.replace('_', ' ')}pass@1", fontsize=9)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
    fig.tight_layout()
    common.save_figure(fig, os.path.join(args.figures, "topr_composition.png"), 70)
    write_table(out, lines)
