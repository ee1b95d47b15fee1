"""RESULTS.md (k') SFT seeds as replicates; headroom apart from the positive share (`experiments.py
replicates`, `peff`). (k)'s map has one SFT run per recipe, but the base is the largest source of variance: the
same recipe has landed at conflict pass@1 0.07, 0.21 and 0.44. Here each recipe of REPLICATE_BASES is trained from
--base-seeds SFT seeds (a seed draws the worked solutions, the initialisation and the batch order), every base is a
measured point, and a gap's interval takes the base as its unit: the mean over RL seeds from each base, then the
t-interval over the bases (df = bases - 1). `peff` runs topr at matched effective positive fractions from the same
bases, so that a difference in price between bases cannot come from the positive share alone."""
import argparse
import os
import statistics

import common
import eval as ev
import topr
from topr_experiments.k_regime import ONEPASS, REGIME, base_label, gain, regime_base, regime_runs
from topr_experiments.runs import OFF_LOSSES, eval_rows, write_table

REPLICATE_BASES = ["both_c0.01", "both_c0.03", "add_c0.03"]  # the map's low- and high-headroom recipes, one direction
BASE_SEEDS = [0, 1, 2]                                       # --base-seeds: the SFT seeds of each recipe
SETTINGS = {"reuse": ("", REGIME), "onepass": ("onepass_", ONEPASS)}  # (k)'s two settings: folder prefix, flags
PEFF = [0.2, 0.5]  # `peff`: topr's effective positive fractions, c = topr.baseline_for_pos_fraction(p, p_eff)


def dataset_row(folder):
    """The run's dataset statistics (its first iteration's row: positive share, single-reward groups)."""
    return next(r for r in ev.read_metrics(folder) if "dataset_pos_frac" in r)


def interval(values):
    """'mean [lo, hi]' (t, df = n - 1), or the value alone for one."""
    if len(values) < 2:
        return f"{values[0]:+.3f}"
    m, h = common.t_interval(values)
    return f"{m:+.3f} [{m - h:+.3f}, {m + h:+.3f}]"


def pearson(xs, ys):
    """Pearson's r, NaN where it is undefined (fewer than 3 points, or a constant)."""
    try:
        return statistics.correlation(xs, ys) if len(xs) > 2 else float("nan")
    except statistics.StatisticsError:
        return float("nan")


def base_points(args, bases):
    """{(recipe, sft seed): the base's measured point}: its own evaluation (2000 problems x 8) and, over the RL
    seeds, its reuse dataset's positive share at c = 0 and share of single-reward conflict groups."""
    points = {}
    for b in bases:
        for s in args.base_seeds:
            ev_row = eval_rows(regime_base(args, b, s)[0])[-1]
            ds = [dataset_row(os.path.join(args.out, "exp_regime", f"{base_label(b, s)}_topr_s{r}")) for r in args.seeds]
            points[b, s] = dict(**{k: ev_row[f"test_{k}"] for k in ("conflict_pass@1", "conflict_pass@8", "normal_pass@1")},
                                pos=statistics.fmean(d["dataset_pos_frac"] for d in ds),
                                single=statistics.fmean(d["frac_reward_zero_std_conflict"] for d in ds))
    return points


def exp_replicates(args):
    """(k') From each recipe of REPLICATE_BASES (--bases) x --base-seeds SFT seeds: topr and sft_pos (c = 0) x
    --seeds RL seeds, in each of --settings ((k)'s reuse: 4 epochs over 64 prompts x 8; one pass over 4x the
    samples). Tables: the bases; per base the paired gaps over RL seeds; per recipe and over all bases the same
    gaps with the base as the unit. Figure: the gaps against each base's measured conflict pass@8."""
    bases, losses = args.bases or REPLICATE_BASES, {m: OFF_LOSSES[m] for m in ("topr", "sft_pos")}
    runs = {(st, b, s): regime_runs(args, SETTINGS[st][0], [b], losses, SETTINGS[st][1], s)
            for st in args.settings for b in bases for s in args.base_seeds}
    points = base_points(args, bases)
    lines = [f"\n**The bases** (SFT seeds {' '.join(map(str, args.base_seeds))}; pass@ from their own evaluation, "
             f"1000 problems per slice x 8; the positive share at c = 0 and the single-reward conflict groups: "
             f"their reuse datasets, mean over RL seeds {' '.join(map(str, args.seeds))})\n",
             "| recipe | SFT seed | conflict pass@1 | conflict pass@8 | normal pass@1 | positive share (c = 0) "
             "| single-reward conflict groups |", "|---|---|---|---|---|---|---|"]
    lines += [f"| {b} | {s} | {p['conflict_pass@1']:.3f} | {p['conflict_pass@8']:.3f} | {p['normal_pass@1']:.3f} | "
              f"{p['pos']:.3f} | {p['single']:.2f} |" for (b, s), p in points.items()]
    # per base: over RL seeds, paired (the same dataset and test problems); the base's value is their mean
    gap = lambda rs, b, r: gain(rs[b, "topr", r], "conflict") - gain(rs[b, "sft_pos", r], "conflict")
    price = lambda rs, b, r: rs[b, "topr", r][-1]["test_normal_pass@1"] - rs[b, "sft_pos", r][-1]["test_normal_pass@1"]
    per_base = {}
    for st in args.settings:
        lines += [f"\n**{st}: topr - sft_pos per base** (paired by RL seed; mean [95% t-interval] over RL seeds "
                  f"{' '.join(map(str, args.seeds))}, df = {len(args.seeds) - 1}; the base's own variance is not in it)\n",
                  "| recipe | SFT seed | conflict pass@8 | conflict gain: topr - sft_pos | normal pass@1 at the end: "
                  "topr - sft_pos |", "|---|---|---|---|---|"]
        for b in bases:
            for s in args.base_seeds:
                rs = runs[st, b, s]
                g, c = [gap(rs, b, r) for r in args.seeds], [price(rs, b, r) for r in args.seeds]
                per_base[st, b, s] = statistics.fmean(g), statistics.fmean(c)
                lines.append(f"| {b} | {s} | {points[b, s]['conflict_pass@8']:.3f} | {interval(g)} | {interval(c)} |")
    lines += [f"\n**The base as the unit** (each base's mean over RL seeds; mean [95% t-interval] over the bases, "
              f"df = bases - 1)\n", "| setting | bases | n | conflict gain: topr - sft_pos | normal: topr - sft_pos |",
              "|---|---|---|---|---|"]
    for st in args.settings:
        for label, group in [*((b, [b]) for b in bases), ("all", bases)]:
            keys = [(st, b, s) for b in group for s in args.base_seeds]
            lines.append(f"| {st} | {label} | {len(keys)} | {interval([per_base[k][0] for k in keys])} | "
                         f"{interval([per_base[k][1] for k in keys])} |")
    write_table(os.path.join(args.out, "exp_regime"), lines, "table_replicates.md")
    plt = common.pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for i, st in enumerate(args.settings):
        for j, b in enumerate(bases):
            xs = [points[b, s]["conflict_pass@8"] for s in args.base_seeds]
            style = dict(color=f"C{j}", marker="os^"[i], ls="none", mfc="none" if st == "onepass" else f"C{j}")
            for ax, col in zip(axes, (0, 1)):
                ax.plot(xs, [per_base[st, b, s][col] for s in args.base_seeds], label=f"{b}, {st}", **style)
    for ax, title in zip(axes, ("conflict pass@1 gain: topr - sft_pos", "normal pass@1 at the end: topr - sft_pos")):
        ax.axhline(0, color="k", lw=0.8)
        ax.set_xlabel("the base's measured conflict pass@8 (headroom)")
        ax.set_title(title, fontsize=9)
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=6)
    fig.suptitle(f"one point per SFT base (mean over RL seeds {' '.join(map(str, args.seeds))}); filled: reuse, "
                 "hollow: one pass", fontsize=9)
    fig.tight_layout()
    common.save_figure(fig, os.path.join(args.figures, "topr_replicates.png"), 80)


def exp_peff(args):
    """(k') topr at matched effective positive fractions PEFF from each base of `replicates` ((k)'s reuse setting):
    c = topr.baseline_for_pos_fraction(p, p_eff), p the positive share of the run's own dataset (the c = 0 run of
    the same base and RL seed samples the same dataset; run first if missing). The table: per base, its headroom
    and positive share, and at each p_eff topr's conflict gain and its normal-slice price against sft_pos (c = 0,
    the same dataset), paired by RL seed."""
    bases = args.bases or REPLICATE_BASES
    losses = {m: OFF_LOSSES[m] for m in ("topr", "sft_pos")}
    ref = {(b, s): regime_runs(args, "", [b], losses, REGIME, s) for b in bases for s in args.base_seeds}
    points = base_points(args, bases)
    lines = [f"\n**topr at matched p_eff** ((k)'s reuse setting; c from each dataset's positive share p; mean "
             f"[95% t-interval] over RL seeds {' '.join(map(str, args.seeds))}; price: normal pass@1 at the end, "
             "topr - sft_pos, paired by RL seed)\n",
             "| recipe | SFT seed | conflict pass@8 | p (c = 0) | "
             + " | ".join(f"p_eff {f}: c / conflict gain / price" for f in ["c=0", *PEFF]) + " |",
             "|---|---|---|---|" + "---|" * (1 + len(PEFF))]
    prices = {f: [] for f in [None, *PEFF]}  # each base's mean price at each p_eff, in the order of `points`
    for b in bases:
        for s in args.base_seeds:
            label, cells = base_label(b, s), []
            # the positive share of each RL seed's dataset (the c = 0 run's), which sets c for each p_eff
            ps = [dataset_row(os.path.join(args.out, "exp_regime", f"{label}_topr_s{r}"))["dataset_pos_frac"]
                  for r in args.seeds]
            for f in [None, *PEFF]:
                rows, cs = [], []
                for r, p in zip(args.seeds, ps):
                    c = 0.0 if f is None else topr.baseline_for_pos_fraction(p, f)
                    one_seed = argparse.Namespace(**{**vars(args), "seeds": [r]})
                    method = {"topr": ["--loss", "topr", "--baseline", f"{c:.4f}"]}
                    rows.append(ref[b, s][b, "topr", r] if f is None else
                                regime_runs(one_seed, f"peff{f}_", [b], method, REGIME, s)[b, "topr", r])
                    cs.append(c)
                pos = [ref[b, s][b, "sft_pos", r][-1]["test_normal_pass@1"] for r in args.seeds]
                price = [x[-1]["test_normal_pass@1"] - q for x, q in zip(rows, pos)]
                prices[f].append(statistics.fmean(price))
                cells.append(f"{statistics.fmean(cs):+.2f} / {interval([gain(x, 'conflict') for x in rows])} / "
                             f"{interval(price)}")
            lines.append(f"| {b} | {s} | {points[b, s]['conflict_pass@8']:.3f} | {points[b, s]['pos']:.3f} | "
                         + " | ".join(cells) + " |")
    # what goes with the price across the bases: Pearson r of each base's mean price with each of its measures
    measures = {"conflict pass@8": "conflict_pass@8", "positive share (c = 0)": "pos", "single-reward conflict groups": "single"}
    lines += [f"\n**What goes with the price** (Pearson r over the {len(points)} bases, of each base's mean price)\n",
              "| p_eff | " + " | ".join(measures) + " |", "|---|" + "---|" * len(measures)]
    for f, ys in prices.items():
        rs = [pearson([point[m] for point in points.values()], ys) for m in measures.values()]
        lines.append(f"| {'c = 0' if f is None else f} | " + " | ".join(f"{r:+.2f}" for r in rs) + " |")
    write_table(os.path.join(args.out, "exp_regime"), lines, "table_peff.md")

