"""RESULTS.md (f) On-policy, where negatives carry information: the shortcut task next to the default task
(`experiments.py onpolicy`), and (f') The baseline's length bias, and the gradient-noise explanation tested
(onpolicy's --length-norm and --optimizer; `experiments.py gradnoise`).

One optimizer step per generated dataset, so every update is on-policy (rho = 1) and topr = reinforce with c = 0.
Under --length-norm constant every method below has the same expected gradient up to a positive factor (README,
"On-policy, one expected gradient"): they differ in variance and prompt weighting only; under the default
'sequence' the baseline c also adds -c grad E[1/L], a push on the completions' length. "sft_more" continues SFT
on worked solutions for the same number of optimizer samples: the baseline RL has to beat. The bases: runs.py."""
import os
import statistics

import torch

import common
import eval as ev
import topr
import train
from topr_experiments.runs import (ONPOLICY_BASES, ONPOLICY_EVAL, ONPOLICY_EVAL_K, ONPOLICY_SFT_DATA, base_ckpt,
                                   eval_rows, mean_se, rl_dataset, rl_variant_flags, run_unless_done, slices,
                                   task_flags, variant, write_table)

ONPOLICY_METHODS = {
    "reinforce": ["--loss", "reinforce", "--baseline", "0"],  # = topr on-policy
    "sft_pos": ["--loss", "sft_pos"],                         # c = -1: the positives only
    "neg_only": ["--loss", "neg_only"],                       # c = +1: the negatives only
    "group": ["--loss", "reinforce", "--baseline", "group"],  # c = the prompt's mean reward
}
ONPOLICY_METHODS_ALL = list(ONPOLICY_METHODS) + ["sft_more"]
ONPOLICY_PROMPTS, ONPOLICY_K = 32, 8            # each step: 32 prompts x 8 samples, one optimizer step on all
ONPOLICY_ITERATIONS, ONPOLICY_LR = 20, 1e-4     # --iterations and --lr defaults: 20 steps, lr 1e-4
ONPOLICY_SFT_MORE_BATCH = 32                    # sft_more: batches of 32 worked solutions, constant lr


def exp_onpolicy(args):
    """(f) On-policy: every method of --methods from the base of each task, seeds --seeds. With --optimizer sgd
    the gradient is not clipped: clipping rescales a noisy gradient as Adam does, which is what SGD is here
    to rule out. Without --skip-done the bases are trained again too."""
    out = os.path.join(args.out, "exp_onpolicy")
    I, P, K = args.iterations, ONPOLICY_PROMPTS, ONPOLICY_K
    sft_iters = I * P * K // ONPOLICY_SFT_MORE_BATCH  # sft_more: as many optimizer samples as an RL run
    methods = [m for m in ONPOLICY_METHODS_ALL if m in (args.methods or ONPOLICY_METHODS_ALL)]
    runs = {}
    for task in args.tasks:
        task_eval = [*ONPOLICY_BASES[task][0], "--eval-problems", ONPOLICY_EVAL[task], "--eval-k", ONPOLICY_EVAL_K]
        base = base_ckpt(args, task, retrain=not args.skip_done)
        for seed in args.seeds:
            for method in [m for m in methods if m != "sft_more"]:
                d = os.path.join(out, f"{task}_{method}_s{seed}{variant(args)}")
                run_unless_done(args, d, ["rl", "--init", base, "--seed", str(seed), *task_eval,
                                          *ONPOLICY_METHODS[method], "--iterations", str(I), "--prompts", str(P),
                                          "--k", str(K), "--epochs", "1", "--batch-size", str(P * K),
                                          "--lr", str(args.lr), *rl_variant_flags(args),
                                          "--eval-every", str(I)])  # evaluated at the start and the end
                runs[task, method, seed] = eval_rows(d)
            if "sft_more" not in methods:
                continue
            d = os.path.join(out, f"{task}_sft_more_s{seed}")
            run_unless_done(args, d, ["sft", "--init", base, "--seed", str(seed), *task_eval, *ONPOLICY_SFT_DATA[task],
                                      "--max-iters", str(sft_iters), "--batch-size", str(ONPOLICY_SFT_MORE_BATCH),
                                      "--lr", str(args.lr), "--min-lr", str(args.lr), "--warmup", "0",
                                      "--eval-interval", str(sft_iters)])
            final = eval_rows(d)[-1]
            start = eval_rows(os.path.join(out, f"{task}_{methods[0]}_s{seed}{variant(args)}"))[0]
            runs[task, "sft_more", seed] = [start, {**final, "samples": I * P * K}]
    onpolicy_report(args, runs, methods)


def onpolicy_report(args, runs, methods):
    """Table (start -> end, mean +- s.e. over seeds, per slice; the completions' mean length and invalid
    rate at the end) and figure (pass@1 against samples seen)."""
    lines = []
    for task in args.tasks:
        cols = [f"{s}{m}" for s in slices(task)[::-1] for m in ("pass@1", "greedy", "pass@8")]  # normal slice first
        cols += ["mean_len", "invalid"]  # over both slices: tokens per sampled completion, no '#### N'
        lines += [f"\n**{task} task** ({args.iterations} on-policy steps of 256 samples, lr {args.lr}, "
                  f"{args.optimizer}, length norm {args.length_norm}, seeds "
                  f"{' '.join(map(str, args.seeds))}; start -> end, mean +- s.e.)\n",
                  "| method | " + " | ".join(cols) + " | entropy (end) |", "|---|" + "---|" * (len(cols) + 1)]
        for m in methods:
            cells = []
            for c in cols:
                start = statistics.fmean(runs[task, m, s][0][f"test_{c}"] for s in args.seeds)
                end, se = mean_se([runs[task, m, s][-1][f"test_{c}"] for s in args.seeds])
                cells.append(f"{start:.3f} -> {end:.3f} +- {se:.3f}")
            entropy = "-"  # sft_more logs no entropy; RL: the last update's, averaged over seeds
            if m != "sft_more":
                last = [[r for r in ev.read_metrics(os.path.join(args.out, "exp_onpolicy",
                                                                 f"{task}_{m}_s{s}{variant(args)}"))
                         if "entropy" in r][-1]["entropy"] for s in args.seeds]
                entropy = f"{statistics.fmean(last):.3f}"
            lines.append(f"| {m} | " + " | ".join(cells) + f" | {entropy} |")
    write_table(os.path.join(args.out, "exp_onpolicy"), lines, f"table{variant(args)}.md")
    plt = common.pyplot()
    panels = [(t, s) for t in args.tasks for s in slices(t)]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4), squeeze=False)
    for ax, (task, sl) in zip(axes[0], panels):
        for m in methods:
            n_points = min(len(runs[task, m, s]) for s in args.seeds)
            x = [runs[task, m, args.seeds[0]][i]["samples"] for i in range(n_points)]
            at = [mean_se([runs[task, m, s][i][f"test_{sl}pass@1"] for s in args.seeds]) for i in range(n_points)]
            ax.errorbar(x, [a for a, _ in at], yerr=[b for _, b in at], marker="o", ms=3, capsize=2, label=m)
        ax.set_title(f"{task} task{', ' + sl[:-1] + ' slice' if sl else ''}: pass@1", fontsize=10)
        ax.set_xlabel("samples seen")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    common.save_figure(fig, os.path.join(args.figures, f"topr_onpolicy{variant(args)}.png"), 80)


def exp_gradnoise(args):
    """Why the on-policy methods moved at different speeds: the noise of each per-sample estimator
    g_i = A_i grad(log pi(y_i) / L_i) on one rollout of each base (32 prompts x 8 samples): the trace of
    its covariance, E||g||^2 - ||E g||^2, per slice. The hypothesis it was written for: one expected gradient
    (up to the length term of per-sequence normalisation), and Adam steps shorter when noisier (RESULTS (f'))."""
    lines = ["| task | prompts | " + " | ".join(f"noise {m}" for m in ONPOLICY_METHODS) + " | positive fraction |",
             "|---|---|" + "---|" * (len(ONPOLICY_METHODS) + 1)]
    for task in args.tasks:
        policy, tok, _ = ev.load_gpt(os.path.join(args.out, "exp_onpolicy", f"base_{task}", "ckpt.pt"), "cpu")
        problems, batch = rl_dataset(policy, tok, task_flags(task), 32)  # train.py rl's first dataset, seed 0
        params = [p for p in policy.parameters() if p.requires_grad]
        G = []
        for i in range(len(batch)):  # per-sample gradients of log pi(y_i) / L_i, all parameters flattened
            logp, length, _, _ = train.solution_logp(policy, tok, batch[[i]], torch.device("cpu"))
            G.append(torch.cat([g.flatten() for g in torch.autograd.grad((logp / length).sum(), params)]))
        G = torch.stack(G).double()
        R = batch.reward.double()
        advantage = {"reinforce": R, "sft_pos": R + 1, "neg_only": R - 1, "group": R - topr.group_baseline(R, 8)}
        for sl in (["normal", "conflict", "all"] if task == "shortcut" else ["all"]):
            idx = [8 * i + j for i, p in enumerate(problems) for j in range(8) if sl in ("all", p.slice)]
            noise = {}
            for m in ONPOLICY_METHODS:
                g = advantage[m][idx, None] * G[idx]
                noise[m] = (g.pow(2).sum(1).mean() - g.mean(0).pow(2).sum()).item()
            lines.append(f"| {task} | {sl} | " + " | ".join(f"{noise[m]:.3f}" for m in ONPOLICY_METHODS)
                         + f" | {(R[idx] > 0).double().mean().item():.3f} |")
    out = os.path.join(args.out, "exp_onpolicy", "gradnoise")
    os.makedirs(out, exist_ok=True)
    write_table(out, lines)
