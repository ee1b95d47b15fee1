"""RESULTS.md (g) Strongly off-policy: one dataset, 8 epochs, six losses (`experiments.py stability`), from the
bases of (f) on both tasks; what the shortcut base and each stability run answer (`errors`, also (f)), and where
a sequence-level push lands, per token group (`credit`; credit_table serves (l) too)."""
import os
import statistics

import torch

import common
import data
import eval as ev
from model import pack, sequence_logprobs
from topr_experiments.runs import (OFF_LOSSES, eval_rows, mean_se, rl_run, rl_variant_flags, slices,
                                   task_flags, variant, write_table)

# one dataset of 64 prompts x 8 samples, 8 epochs (64 steps of 64), every loss of OFF_LOSSES
STABILITY = ["--iterations", "1", "--prompts", "64", "--epochs", "8", "--eval-each-epoch"]


def exp_stability(args):
    """(g) Strongly off-policy: ONE dataset of 64 prompts x 8 samples from the base, 8 epochs over it
    (64 optimizer steps of 64), every loss; evaluated after every epoch."""
    out = os.path.join(args.out, "exp_stability")
    losses = [loss for loss in OFF_LOSSES if loss in (args.methods or OFF_LOSSES)]
    folders = {(t, loss, s): os.path.join(out, f"{t}_{loss}_s{s}{variant(args)}")
               for t in args.tasks for s in args.seeds for loss in losses}
    runs = {(t, loss, s): rl_run(args, d, t, [*OFF_LOSSES[loss], *rl_variant_flags(args), "--seed", str(s), *STABILITY])
            for (t, loss, s), d in folders.items()}
    plt = common.pyplot()
    lines = []
    for task in args.tasks:
        held = {k: eval_rows(d) for k, d in folders.items() if k[0] == task}
        st = {k: [r for r in v if "logp_reward_neg" in r] for k, v in runs.items() if k[0] == task}
        cols = [f"{sl}pass@1" for sl in slices(task)] + ["invalid", "mean_len"]
        lines += [f"\n**{task} task** (one dataset of 64 prompts x 8 samples, 8 epochs, lr 1e-4, length norm "
                  f"{args.length_norm}, seeds "
                  f"{' '.join(map(str, args.seeds))}; start -> after epoch 2 -> after epoch 8, mean +- s.e.)\n",
                  "| loss | " + " | ".join(cols) + " | log pi positives / negatives (end) "
                  "| negatives with ratio < 1 (last epoch) |",
                  "|---|" + "---|" * (len(cols) + 2)]
        for loss in losses:
            cells = []
            for c in cols:
                at = [mean_se([held[task, loss, s][i][f"test_{c}"] for s in args.seeds]) for i in (0, 2, -1)]
                cells.append(" -> ".join(f"{m:.3f}" for m, _ in at[:2]) + f" -> {at[2][0]:.3f} +- {at[2][1]:.3f}")
            last = [st[task, loss, s][-1] for s in args.seeds]
            lp = "{:.2f} / {:.2f}".format(*(statistics.fmean(r[k] for r in last)
                                            for k in ("logp_reward_pos", "logp_reward_neg")))
            fr = statistics.fmean(statistics.fmean(r["frac_neg_ratio_lt1"] for r in st[task, loss, s][-8:])
                                  for s in args.seeds)
            lines.append(f"| {loss} | " + " | ".join(cells) + f" | {lp} | {fr:.2f} |")
        panels = [(f"test_{sl}pass@1", f"{sl.replace('_', ' ')}pass@1") for sl in slices(task)] + [
            ("test_invalid", "invalid rate"), ("logp_reward_pos", "mean log pi, positives"),
            ("logp_reward_neg", "mean log pi, negatives"), ("frac_neg_ratio_lt1", "negatives with ratio < 1")]
        fig, axes = plt.subplots(1, len(panels), figsize=(3.3 * len(panels), 3.2))
        for loss in losses:
            color = None
            for ax, (key, _) in zip(axes, panels):
                rows = held if key.startswith("test_") else st
                n = min(len(rows[task, loss, s]) for s in args.seeds)
                x = [rows[task, loss, args.seeds[0]][i]["samples"] for i in range(n)]
                y = [statistics.fmean(rows[task, loss, s][i][key] for s in args.seeds) for i in range(n)]
                (line,) = ax.plot(x, y, marker="o" if rows is held else None, ms=3, color=color, label=loss)
                color = line.get_color()
        for ax, (_, title) in zip(axes, panels):
            ax.set_title(title, fontsize=9)
            ax.set_xlabel("samples seen")
            ax.grid(alpha=0.3)
        axes[0].legend(fontsize=7)
        fig.suptitle(f"{task} task: one dataset (64 prompts x 8), 8 epochs, c = 0; mean of seeds "
                     f"{' '.join(map(str, args.seeds))}", fontsize=10)
        fig.tight_layout()
        common.save_figure(fig, os.path.join(args.figures, f"topr_stability_{task}{variant(args)}.png"), 70)
    write_table(out, lines, f"table{variant(args)}.md")


def shortcut_policies(args):
    """[(name, run folder)]: the shortcut base, then each finished `stability` run of --seed (name: its loss)."""
    runs = [(loss, os.path.join(args.out, "exp_stability", f"shortcut_{loss}_s{args.seed}")) for loss in OFF_LOSSES]
    return [("base", os.path.join(args.out, "exp_onpolicy", "base_shortcut"))] + [
        (loss, d) for loss, d in runs if os.path.exists(os.path.join(d, "ckpt.pt"))]


def one_step(problem, swap=False):
    """(a, op, b, result) as strings, of a one-step solution "a+b=x" (data.parse_step); with the other
    operation if swap."""
    a, op, b, _ = data.parse_step(problem.solution)
    if swap:
        op = "-" if op == "+" else "+"
    return a, op, b, str(int(a) + int(b) if op == "+" else int(a) - int(b))


def exp_errors(args):
    """What a shortcut-task policy answers (eval.answer_breakdown): right, the other operation (on a conflict
    problem the cue's: the shortcut; on a normal problem the opposite of both cue and verb), the other
    operation with its operands swapped (|a-b|, where a-b < 0), another number, or invalid; per slice and by
    whether the other operation was possible; 300 test problems of each slice x 8 samples. The base, then
    each finished `stability` run of --seed."""
    problems = task_flags("shortcut").problems(1000, 0, "test")
    chosen = [p for p in problems if p.slice == "conflict"][:300] + [p for p in problems if p.slice == "normal"][:300]
    policies = shortcut_policies(args)
    groups = [f"{sl}_{g}" for sl in ("conflict", "normal") for g in ("possible", "impossible")]
    lines = ["| policy | slice, other operation | problems | " + " | ".join(ev.ANSWER_KINDS) + " |",
             "|---|---|---|" + "---|" * len(ev.ANSWER_KINDS)]
    for name, d in policies:
        policy, tok, _ = ev.load_gpt(os.path.join(d, "ckpt.pt"), "cpu")
        name = name if name == "base" else f"{name} (stability, seed {args.seed})"
        texts, _ = ev.sample_answers(policy.eval(), tok, chosen, 8, 1.0, 48, torch.Generator().manual_seed(0))
        res = ev.answer_breakdown(chosen, texts)
        lines += [f"| {name} | {g.replace('_', ', ')} | {res[f'{g}_n']} | "
                  + " | ".join(f"{res[f'{g}_{k}']:.3f}" for k in ev.ANSWER_KINDS) + " |" for g in groups if f"{g}_n" in res]
    out = os.path.join(args.out, "exp_onpolicy", "errors")
    os.makedirs(out, exist_ok=True)
    write_table(out, lines + [f"\n{len(policies)} policies x 300 problems per slice x 8 samples"])


CREDIT_SETS = [("conflict", "shortcut"), ("conflict", "right"), ("normal", "right")]  # (slice, completion)


def credit_table(policies, n=300):
    """Where a push landed, token by token: mean log pi per token group (operator, operands: copies of the
    question's numbers, result after '=', final answer after '####'), teacher-forced on n test problems per
    slice of the shortcut task: conflict problems with the shortcut completion "a<cue's op>b=<its result>. #### <it>"
    (the base's usual negative; only where that result is >= 0, as the task never shows a negative number),
    conflict problems with the right completion, split by whether the shortcut was possible, and normal
    problems with the right completion. policies: [(name, run folder)] -> markdown lines."""
    problems = task_flags("shortcut").problems(1000, 0, "test")
    groups = ["operator", "operands", "result", "final answer"]
    examples = []  # (set, prompt text, completion text, the group of each completion character)
    for sl, completion in CREDIT_SETS:
        for p in [p for p in problems if p.slice == sl][:n]:
            a, op, b, x = one_step(p, swap=completion == "shortcut")  # with correct arithmetic either way
            possible = ev.other_op_result(p) >= 0
            if completion == "shortcut" and not possible:
                continue
            name = f"{sl}, {completion}" + ("" if sl == "normal" else ", possible" if possible else ", impossible")
            kinds = ["format"] + ["operands"] * len(a) + ["operator"] + ["operands"] * len(b) + ["format"] + \
                    ["result"] * len(x) + ["format"] * 7 + ["final answer"] * len(x)  # ". #### "
            examples.append((name, data.format_prompt(p.question), f" {a}{op}{b}={x}. #### {x}", kinds))
    sets = list(dict.fromkeys(e[0] for e in examples))
    lines = ["| policy | " + " | ".join(f"{st}: {g}" for st in sets for g in groups) + " |",
             "|---|" + "---|" * len(sets) * len(groups)]
    for name, d in policies:
        policy, tok, _ = ev.load_gpt(os.path.join(d, "ckpt.pt"), "cpu")
        sums = {}
        for s in range(0, len(examples), 100):
            chunk = examples[s:s + 100]
            tokens, pad_mask, compl = pack([tok.encode(e[1]) for e in chunk], [tok.encode(e[2]) for e in chunk],
                                           tok.pad_id)
            with torch.no_grad():
                lp = sequence_logprobs(policy.eval(), tokens, pad_mask, compl)
            for row, (st, _, text, kinds) in zip(range(len(chunk)), chunk):
                vals = lp[row][compl[row]].tolist()  # the byte tokenizer: one token per character
                assert len(vals) == len(kinds) == len(text), "one token per character"
                for v, k in zip(vals, kinds):
                    acc = sums.setdefault((st, k), [0.0, 0])
                    acc[0], acc[1] = acc[0] + v, acc[1] + 1
        lines.append(f"| {name} | " + " | ".join(f"{sums[st, g][0] / sums[st, g][1]:.2f}"
                                                 for st in sets for g in groups) + " |")
    counts = ", ".join(f"{sum(e[0] == st for e in examples)} {st}" for st in sets)
    return lines + [f"\nmean log pi per token (the byte tokenizer: one token per character), teacher-forced on "
                    f"the test problems ({counts})"]


def exp_credit(args):
    """(g) Where a sequence-level push lands: credit_table for the shortcut base and each finished `stability`
    run of --seed."""
    out = os.path.join(args.out, "exp_stability", "credit")
    os.makedirs(out, exist_ok=True)
    write_table(out, credit_table(shortcut_policies(args)))
