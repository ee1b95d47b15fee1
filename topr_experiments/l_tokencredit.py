"""RESULTS.md (l) Where a negative's push lands, isolated; token-level credit from the group's prefix tree
(`experiments.py tokencredit`): topr with token-level credit (train.py rl --credit) from (k)'s ONEPASS_BASES, next
to (k)'s topr and sft_pos: first_error (a diagnostic that reads the worked solution), prefix (the group's prefix
tree) in (k)'s reuse setting, and prefix in its one-pass setting; (g)'s credit_table for each policy."""
import os
import statistics

import data
import eval as ev
import topr
from topr_experiments.g_stability import credit_table
from topr_experiments.k_regime import (ONEPASS, ONEPASS_BASES, REGIME, REGIME_EPOCHS, conflict_share, regime_base,
                                       regime_runs, start_end)
from topr_experiments.runs import OFF_COMMON, OFF_LOSSES, base_ckpt, eval_rows, rl_dataset, run_unless_done, write_table

CREDIT_MODES = ["first_error", "prefix"]


def exp_tokencredit(args):
    """(l) Where a negative's push lands, isolated, and token-level credit: from ONEPASS_BASES (or --bases),
    topr with --credit first_error (a diagnostic: it reads the worked solution) and --credit prefix (the
    group's prefix tree), in (k)'s reuse setting, and prefix in its one-pass setting, seeds --seeds; next to
    (k)'s topr and sft_pos runs (run if missing). Then credit_table for each policy of seed --seed."""
    bases = args.bases or ONEPASS_BASES
    credit = {f"topr_{c}": [*OFF_LOSSES["topr"], "--credit", c] for c in CREDIT_MODES}
    reuse = {**regime_runs(args, "", bases, {m: OFF_LOSSES[m] for m in ("topr", "sft_pos")}, REGIME),
             **regime_runs(args, "", bases, credit, REGIME)}
    one = {**regime_runs(args, "onepass_", bases, {m: OFF_LOSSES[m] for m in ("topr", "sft_pos")}, ONEPASS),
           **regime_runs(args, "onepass_", bases, {"topr_prefix": credit["topr_prefix"]}, ONEPASS)}
    methods = ["sft_pos", "topr", *credit]
    lines = [f"\n**Token-level credit** (c = 0; reuse: one dataset of 64 x 8, {REGIME_EPOCHS} epochs; one pass: "
             f"{REGIME_EPOCHS * 512} fresh samples once; both {REGIME_EPOCHS * 8} steps of 64; start -> end, mean "
             f"+- s.e. over seeds {' '.join(map(str, args.seeds))})\n",
             "| base | method | setting | conflict pass@1 | normal pass@1 | invalid | conflict answers (end): "
             + " / ".join(ev.ANSWER_KINDS) + " |", "|---|---|---|---|---|---|---|"]
    for b in bases:
        for m in methods:
            for setting, runs in (("reuse", reuse), ("one pass", one)):
                if (b, m, args.seeds[0]) not in runs:
                    continue
                rs = [runs[b, m, s] for s in args.seeds]
                cells = [start_end(rs, c) for c in ("conflict_pass@1", "normal_pass@1", "invalid")]
                answers = " / ".join(f"{statistics.fmean(conflict_share(r[-1], k) for r in rs):.2f}"
                                     for k in ev.ANSWER_KINDS)
                lines.append(f"| {b} | {m} | {setting} | " + " | ".join(cells) + f" | {answers} |")
    for b in bases:
        policies = [("base", regime_base(args, b)[0])] + [
            (f"{m} ({setting})", os.path.join(args.out, "exp_regime", f"{pre}{b}_{m}_s{args.seed}"))
            for m in methods for setting, pre in (("reuse", ""), ("one pass", "onepass_"))
            if os.path.exists(os.path.join(args.out, "exp_regime", f"{pre}{b}_{m}_s{args.seed}", "ckpt.pt"))]
        lines += [f"\n**Where the push landed, base {b}, seed {args.seed}**\n", *credit_table(policies)]
    if "default" in args.tasks:  # the default task: scattered slips after long shared prefixes
        base = base_ckpt(args, "default")
        d = {m: os.path.join(args.out, "exp_regime", f"default_{m}_s{{}}") for m in ("topr", "topr_prefix")}
        for s in args.seeds:
            for m, flags in (("topr", OFF_LOSSES["topr"]), ("topr_prefix", credit["topr_prefix"])):
                run_unless_done(args, d[m].format(s), ["rl", "--init", base, *OFF_COMMON, *flags, "--seed", str(s),
                                                       *REGIME])
        lines += [f"\n**Default task** (its base of (f); the reuse setting; start -> end, seeds "
                  f"{' '.join(map(str, args.seeds))})\n", "| method | pass@1 | invalid |", "|---|---|---|"]
        for m in d:
            rs = [eval_rows(d[m].format(s)) for s in args.seeds]
            lines.append(f"| {m} | " + " | ".join(start_end(rs, c) for c in ("pass@1", "invalid")) + " |")
    lines += ["\n**What the tree has to work with** (the first dataset of seed 0: 64 prompts x 8 samples from each "
              "base)\n", "| base | slice | groups with one reward (no credit) | negatives in mixed groups: share of "
              "their negative credit on one token | that token is the (first) operator |", "|---|---|---|---|---|"]
    for b, folder in [(b, regime_base(args, b)[0]) for b in bases] + (
            [("default", os.path.dirname(base_ckpt(args, "default")))] if "default" in args.tasks else []):
        lines += tree_stats(b, folder, data.Task(shortcut=True, conflict_direction="add" if b.startswith("add")
                                                 else "both") if b != "default" else data.Task())
    write_table(os.path.join(args.out, "exp_regime"), lines, "table_tokencredit.md")


def tree_stats(name, folder, task):
    """What prefix-tree credit can do on a base's first dataset (train.py rl's, seed 0): the fraction of groups
    whose k samples share one reward (every advantage 0), and for each negative of a mixed group the share of
    its negative credit on its most negative token, and whether that token is the first operator."""
    policy, tok, _ = ev.load_gpt(os.path.join(folder, "ckpt.pt"), "cpu")
    problems, batch = rl_dataset(policy, tok, task, 64)  # train.py rl's first dataset, seed 0
    adv = topr.prefix_tree_advantages(batch.completion, batch.reward, 8)
    lines = []
    for sl in task.slices:
        groups = [g for g, p in enumerate(problems) if sl in ("all", p.slice)]
        flat = [(g, i) for g in groups if len(set(batch.reward[8 * g:8 * g + 8].tolist())) > 1 for i in range(8 * g, 8 * g + 8)
                if batch.reward[i] < 0]
        shares, operator = [], []
        for g, i in flat:
            neg = adv[i].clamp(max=0)
            shares.append((neg.min() / neg.sum()).item())
            step, at = data.parse_step(batch.text[i]), int(neg.argmin())  # byte tokenizer: token t = character t
            operator.append(step is not None and batch.text[i].startswith(" " + step[0]) and at == 1 + len(step[0]))
        single = 1 - len({g for g, _ in flat}) / len(groups) if groups else float("nan")
        lines.append(f"| {name} | {sl} | {single:.2f} | {statistics.fmean(shares) if shares else float('nan'):.2f} "
                     f"| {statistics.fmean(operator) if operator else float('nan'):.2f} |")
    return lines
