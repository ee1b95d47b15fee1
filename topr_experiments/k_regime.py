"""RESULTS.md (k) When do negatives help? A regime map, and the paper's one-pass setting (`experiments.py regime`,
`onepass`). SFT bases of the shortcut task at (f)'s budget and recipe that differ in conflict headroom (their
conflict fraction) or in the task's structure (the conflicts' direction); from each, (g)'s strongly off-policy
setting (one dataset, c = 0) with REGIME_LOSSES, and from ONEPASS_BASES the paper's: one pass over fresh samples
for as many optimizer steps. (l) builds on these runs."""
import os
import statistics

import common
import eval as ev
from topr_experiments.runs import (OFF_COMMON, OFF_LOSSES, ONPOLICY_EVAL, ONPOLICY_EVAL_K, SHORTCUT_SFT, eval_rows,
                                   mean_se, run_unless_done, sft_base, write_table)

REGIME_BASES = {  # name -> the task's flags, the base's conflict fraction among its worked solutions
    "both_c0.01": (["--shortcut"], "0.01"), "both_c0.02": (["--shortcut"], "0.02"),
    "both_c0.03": (["--shortcut"], "0.03"), "add_c0.03": (["--shortcut", "--conflict-direction", "add"], "0.03"),
}
REGIME_LOSSES = ["topr", "sft_pos", "tis", "reinforce"]
REGIME_EPOCHS = 4  # over one dataset of 64 prompts x 8 samples: 32 optimizer steps of 64
REGIME_EVAL = ["--eval-problems", "600", "--eval-k", "4"]  # 300 held-out problems per slice x 4 samples
REGIME = ["--iterations", "1", "--prompts", "64", "--epochs", str(REGIME_EPOCHS), "--eval-each-epoch", *REGIME_EVAL]
ONEPASS_BASES = ["both_c0.01", "both_c0.03"]
ONEPASS_LOSSES = ["topr", "sft_pos", "reinforce"]
ONEPASS = ["--iterations", "1", "--prompts", str(64 * REGIME_EPOCHS), "--epochs", "1", *REGIME_EVAL]


def base_label(name, sft_seed=0):
    """A base's folder label: `name` for SFT seed 0 (the map's bases), `name`_sft<seed> for another SFT seed."""
    return name if sft_seed == 0 else f"{name}_sft{sft_seed}"


def regime_base(args, name, sft_seed=0):
    """The SFT base `name` of REGIME_BASES: (f)'s shortcut recipe at its conflict fraction and task flags, SFT
    seed sft_seed (its worked solutions, initialisation and batch order), trained if missing (like base_ckpt)
    -> (its folder, its task flags)."""
    task_args, frac = REGIME_BASES[name]
    d = os.path.join(args.out, "exp_regime", f"base_{base_label(name, sft_seed)}")
    sft_base(d, [*task_args, "--sft-conflict-frac", frac, "--eval-problems", ONPOLICY_EVAL["shortcut"], "--eval-k",
                 ONPOLICY_EVAL_K, *SHORTCUT_SFT, "--seed", str(sft_seed)])
    return d, task_args


def regime_runs(args, prefix, bases, methods, flags, sft_seed=0):
    """{(base, method, seed): eval rows} of `train.py rl` from each base (of SFT seed sft_seed): OFF_COMMON, the
    method's flags (methods: name -> flags), then flags; folders runs/exp_regime/<prefix><base label>_<method>_s<seed>."""
    runs = {}
    for name in bases:
        for seed in args.seeds:
            for method, method_flags in methods.items():
                d = os.path.join(args.out, "exp_regime", f"{prefix}{base_label(name, sft_seed)}_{method}_s{seed}")
                base = lambda: regime_base(args, name, sft_seed)
                run_unless_done(args, d, lambda: ["rl", "--init", os.path.join(base()[0], "ckpt.pt"), *base()[1],
                                                  *OFF_COMMON, *method_flags, "--seed", str(seed), *flags])
                runs[name, method, seed] = eval_rows(d)
    return runs


def fmt(xs, digits=3):
    """'mean +- s.e.' of a list (just the value for one)."""
    m, se = mean_se(xs)
    return f"{m:.{digits}f}" + (f" +- {se:.{digits}f}" if len(xs) > 1 else "")


def start_end(rs, key):
    """'start -> end +- s.e.' of a held-out key over runs' evaluation rows (the start: the mean of their first)."""
    return f"{statistics.fmean(r[0][f'test_{key}'] for r in rs):.3f} -> " + fmt([r[-1][f"test_{key}"] for r in rs])


def gain(rows, sl):
    """A run's change of pass@1 on slice sl, from its first evaluation to its last."""
    return rows[-1][f"test_{sl}_pass@1"] - rows[0][f"test_{sl}_pass@1"]


def exp_regime(args):
    """(k) The regime map: from every base of REGIME_BASES (--bases), one dataset of 64 prompts x 8 samples,
    REGIME_EPOCHS epochs, c = 0, each loss of REGIME_LOSSES, seeds --seeds; evaluated after every epoch on 300
    problems per slice. x = the base's conflict pass@8 (its own evaluation: 1000 conflict problems x 8), y = the
    conflict-slice gain of topr minus that of sft_pos (paired by seed: the same dataset and test problems)."""
    bases = args.bases or list(REGIME_BASES)
    runs = regime_runs(args, "", bases, {loss: OFF_LOSSES[loss] for loss in REGIME_LOSSES}, REGIME)
    base_eval = {b: eval_rows(regime_base(args, b)[0])[-1] for b in bases}
    seeds, kinds = args.seeds, ev.ANSWER_KINDS
    groups = [("conflict_possible", "conflict, shortcut possible"), ("conflict_impossible", "conflict, impossible"),
              ("normal_possible", "normal, other op possible"), ("normal_impossible", "normal, impossible")]
    lines = [f"\n**The bases** (SFT, {' '.join(SHORTCUT_SFT)}; pass@ from their own evaluation: 1000 problems per "
             "slice x 8 samples; answers of 300 per slice x 4 samples, seeds "
             f"{' '.join(map(str, seeds))}: right / other op (the cue's, on conflicts) / swapped |a-b| / "
             "other number / invalid)\n",
             "| base | conflict pass@1 | conflict pass@8 | normal pass@1 | normal pass@8 | "
             + " | ".join(g for _, g in groups) + " |", "|---|---|---|---|---|" + "---|" * len(groups)]
    for b in bases:
        start = [runs[b, "topr", s][0] for s in seeds]
        cells = [" / ".join(f"{statistics.fmean(r[f'test_{g}_{k}'] for r in start):.2f}" for k in kinds)
                 if f"test_{g}_n" in start[0] else "-" for g, _ in groups]
        lines.append(f"| {b} | " + " | ".join(f"{base_eval[b][f'test_{c}']:.3f}" for c in (
            "conflict_pass@1", "conflict_pass@8", "normal_pass@1", "normal_pass@8")) + " | " + " | ".join(cells) + " |")
    lines += [f"\n**Off-policy from each base** (one dataset of 64 prompts x 8 samples, {REGIME_EPOCHS} epochs, "
              f"c = 0, lr 1e-4, length norm sequence; start -> after epoch 1 -> end, mean +- s.e. over seeds "
              f"{' '.join(map(str, seeds))}; the last column: the conflict gain minus sft_pos', paired by seed)\n",
              "| base | loss | conflict pass@1 | normal pass@1 | invalid (end) | conflict answers (end): "
              + " / ".join(kinds) + " | conflict gain - sft_pos' |", "|---|---|---|---|---|---|---|"]
    for b in bases:
        for loss in REGIME_LOSSES:
            rs = [runs[b, loss, s] for s in seeds]
            cells = [" -> ".join(f"{statistics.fmean(r[i][f'test_{sl}_pass@1'] for r in rs):.3f}" for i in (0, 1))
                     + " -> " + fmt([r[-1][f"test_{sl}_pass@1"] for r in rs]) for sl in ("conflict", "normal")]
            answers = " / ".join(f"{statistics.fmean(conflict_share(r[-1], k) for r in rs):.2f}" for k in kinds)
            diff = fmt([gain(runs[b, loss, s], "conflict") - gain(runs[b, "sft_pos", s], "conflict") for s in seeds])
            lines.append(f"| {b} | {loss} | " + " | ".join(cells) + f" | {fmt([r[-1]['test_invalid'] for r in rs])} "
                         f"| {answers} | {diff if loss != 'sft_pos' else '-'} |")
    write_table(os.path.join(args.out, "exp_regime"), lines)
    # the paper's setting next to the map, where `onepass` has run: topr's and reinforce's points, hollow
    one = {(b, loss, s): eval_rows(os.path.join(args.out, "exp_regime", f"onepass_{b}_{loss}_s{s}"))
           for b in bases for loss in ONEPASS_LOSSES for s in seeds
           if os.path.exists(os.path.join(args.out, "exp_regime", f"onepass_{b}_{loss}_s{s}", "ckpt.pt"))}
    plt = common.pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for li, loss in enumerate(REGIME_LOSSES):
        for setting, rs in (("reuse", runs), ("one pass", one)):
            for b in [b for b in bases if all((b, m, s) in rs for m in (loss, "sft_pos") for s in seeds)]:
                x = base_eval[b]["test_conflict_pass@8"] + 0.007 * (li - 1.5) + 0.03 * (setting == "one pass")
                style = dict(color=f"C{li}", marker="o" if b.startswith("both") else "s", capsize=3, ms=6,
                             mfc="none" if setting == "one pass" else f"C{li}")
                label = f"{loss}{', one pass' if setting == 'one pass' else ''}" if b == bases[0] else None
                if loss != "sft_pos":
                    m, se = mean_se([gain(rs[b, loss, s], "conflict") - gain(rs[b, "sft_pos", s], "conflict")
                                     for s in seeds])
                    axes[0].errorbar(x, m, yerr=se, label=label, **style)
                m, se = mean_se([gain(rs[b, loss, s], "normal") for s in seeds])
                axes[1].errorbar(x, m, yerr=se, label=label, **style)
    axes[0].axhline(0, color="k", lw=0.8)
    axes[0].set_title("conflict pass@1: gain minus sft_pos' gain", fontsize=9)
    axes[1].set_title("normal pass@1: change", fontsize=9)
    for ax in axes:
        ax.set_xlabel("the base's conflict pass@8 (headroom)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    fig.suptitle(f"one dataset, c = 0: {REGIME_EPOCHS} epochs (filled) or one pass over {REGIME_EPOCHS}x the samples "
                 f"(hollow); square: conflicts in one direction; mean +- s.e., seeds {' '.join(map(str, seeds))}",
                 fontsize=9)
    fig.tight_layout()
    common.save_figure(fig, os.path.join(args.figures, "topr_regime.png"), 80)


def conflict_share(row, kind):
    """The fraction of a kind of answer over the whole conflict slice (its possible and impossible groups)."""
    ns = {g: row.get(f"test_conflict_{g}_n", 0) for g in ("possible", "impossible")}
    return sum(ns[g] * row.get(f"test_conflict_{g}_{kind}", 0.0) for g in ns) / sum(ns.values())


def exp_onepass(args):
    """(k) The paper's setting next to (k)'s reuse: from ONEPASS_BASES (or --bases), one pass over 4x the samples
    (256 prompts x 8, generated once from the base, one epoch: the same 32 optimizer steps), ONEPASS_LOSSES,
    seeds --seeds; the reuse runs are regime's (run if missing)."""
    bases = args.bases or ONEPASS_BASES
    losses = {loss: OFF_LOSSES[loss] for loss in ONEPASS_LOSSES}
    one, reuse = regime_runs(args, "onepass_", bases, losses, ONEPASS), regime_runs(args, "", bases, losses, REGIME)
    lines = [f"\n**One pass over fresh samples vs reuse** (both: {REGIME_EPOCHS * 8} optimizer steps of 64, c = 0, "
             f"lr 1e-4; reuse: 512 samples x {REGIME_EPOCHS} epochs; one pass: {REGIME_EPOCHS * 512} samples once; "
             f"start -> end, mean +- s.e. over seeds {' '.join(map(str, args.seeds))})\n",
             "| base | loss | setting | conflict pass@1 | normal pass@1 | invalid |", "|---|---|---|---|---|---|"]
    for b in bases:
        for loss in ONEPASS_LOSSES:
            for setting, runs in (("reuse", reuse), ("one pass", one)):
                rs = [runs[b, loss, s] for s in args.seeds]
                cells = [start_end(rs, c) for c in ("conflict_pass@1", "normal_pass@1", "invalid")]
                lines.append(f"| {b} | {loss} | {setting} | " + " | ".join(cells) + " |")
    write_table(os.path.join(args.out, "exp_regime"), lines, "table_onepass.md")
