"""RESULTS.md (e) The same model as a generative verifier; verifier-weighted majority voting, and (j) The verifier
where majority voting is systematically wrong (`experiments.py verifier`; --tasks default: (e), shortcut: (j)).
The solver model trained as a generative verifier of its own candidates (topr vs reinforce vs sft_pos); majority
vs verifier-weighted majority vs best-of-k by P(Yes)."""
import math
import os

import common
from topr_experiments.runs import ONPOLICY_BASES, base_ckpt, eval_rows, run_unless_done, slices, write_table

# The SFT model (or the shortcut base) as a generative verifier of its own candidates.
# name -> (loss, curation): balanced candidates (half right, half wrong) for the three losses, and topr on the
# candidates as the solver makes them, where "always No" may already be mostly right
VERIFIER_RUNS = {"topr": ("topr", "0.5"), "reinforce": ("reinforce", "0.5"), "sft_pos": ("sft_pos", "0.5"),
                 "topr_uncurated": ("topr", None)}
VERIFIER = ["--iterations", "8", "--epochs", "1", "--prompts", "128", "--k", "8", "--batch-size", "64",
            "--micro-batch", "64", "--lr", "3e-4", "--baseline", "group"]
VERIFIER_K = 16  # held-out candidates per test problem; (e): 256 test problems, (j): 400 (200 per slice)
VERIFIER_EVAL = {task: ["--eval-problems", n, "--eval-k", str(VERIFIER_K), "--eval-every", "4"]
                 for task, n in (("default", "256"), ("shortcut", "400"))}


def exp_verifier(args):
    """TOPR Sec. 5: the SFT model trained as a generative verifier of its own candidates (8 per prompt,
    8 iterations of 128 prompts), with topr vs reinforce vs sft_pos on balanced candidates, and topr on
    uncurated ones; then majority, verifier-weighted majority and best-of-k on 16 held-out candidates
    per test problem, against k. Default task: from --sft (section e). Shortcut task: from its base,
    every number per slice (on the conflict slice majority voting is systematically wrong; section j)."""
    for task in args.tasks:
        if task == "default":
            verifier_task(args, task, args.sft, os.path.join(args.out, "exp_verifier"), "topr_verifier.png")
        else:
            verifier_task(args, task, base_ckpt(args, task), os.path.join(args.out, f"exp_verifier_{task}"),
                          f"topr_verifier_{task}.png")


def verifier_task(args, task, solver, out, figure):
    plt = common.pyplot()
    names = list(VERIFIER_RUNS)
    K = VERIFIER_K
    finals = {}
    for name, (loss, frac) in VERIFIER_RUNS.items():
        d = os.path.join(out, name)
        run_unless_done(args, d, ["rl", "--task", "verify", "--init", solver, "--loss", loss, "--seed", str(args.seed),
                                  *ONPOLICY_BASES[task][0], *VERIFIER, *VERIFIER_EVAL[task],
                                  *(["--candidate-pos-frac", frac] if frac else [])])
        held = eval_rows(d)  # a verify run's evaluations: eval.verifier_metrics, pass@1 included
        finals["untrained"], finals[name] = held[0], held[-1]  # iteration 0 = the SFT model, the same for every run
    ks = [k for k in (1, 2, 4, 8, 16) if f"test_maj@{k}" in finals["untrained"]]
    lines = []
    for sl in slices(task):
        u = {key[len(f"test_{sl}"):]: v for key, v in finals["untrained"].items() if key.startswith(f"test_{sl}")}
        f = {name: {key[len(f"test_{sl}"):]: v for key, v in finals[name].items() if key.startswith(f"test_{sl}")}
             for name in ["untrained"] + names}
        lines += [f"\n**{task} task{', ' + sl[:-1] + ' slice' if sl else ''}** ({u['n']} problems x {K} candidates)\n",
                  f"| verifier | accuracy (always No: {1 - u['candidates_correct']:.3f}) | ECE | Brier "
                  f"| mean P(Yes) right / wrong | majority@{K} | weighted@{K} | best-of-{K} | best-of-{K} invalid |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for name in ["untrained"] + names:
            r = f[name]
            lines.append(f"| {name} | {r['verifier_acc']:.3f} | {r['ece']:.3f} | {r['brier']:.3f} "
                         f"| {r['p_yes_correct']:.3f} / {r['p_yes_wrong']:.3f} | {r[f'maj@{K}']:.3f} "
                         f"| {r[f'weighted_maj@{K}']:.3f} | {r[f'best_of@{K}']:.3f} "
                         f"| {r[f'best_of_invalid@{K}']:.3f} |")
        lines.append(f"\nAccuracy against k (s.e. of one accuracy ~ {0.5 / math.sqrt(u['n']):.3f} at most, "
                     f"{u['n']} problems):\n")
        lines.append("| verifier | vote | " + " | ".join(f"k={k}" for k in ks) + " |")
        lines.append("|---|---|" + "---|" * len(ks))
        lines.append("| - | pass@k (any right: the ceiling) | "
                     + " | ".join(f"{u[f'pass@{k}']:.3f}" for k in ks) + " |")
        lines.append("| - | majority | " + " | ".join(f"{u[f'maj@{k}']:.3f}" for k in ks) + " |")
        for name in ["untrained"] + names:
            for vote in ["weighted_maj", "best_of"]:
                lines.append(f"| {name} | {vote} | " + " | ".join(f"{f[name][f'{vote}@{k}']:.3f}" for k in ks) + " |")
    panels = [(sl, vote, title) for sl in slices(task)
              for vote, title in (("weighted_maj", "verifier-weighted majority"), ("best_of", "best-of-k by P(Yes)"))]
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.6),
                             sharey=task != "shortcut")  # the slices' accuracies differ
    for ax, (sl, vote, title) in zip(axes, panels):
        ax.plot(ks, [finals["untrained"][f"test_{sl}maj@{k}"] for k in ks], "k--", marker="o", ms=3,
                label="majority (no verifier)")
        for name in ["untrained"] + names:
            ax.plot(ks, [finals[name][f"test_{sl}{vote}@{k}"] for k in ks], marker="o", ms=3,
                    label=f"verifier: {name if name != 'untrained' else 'SFT, untrained'}")
        ax.set_xscale("log", base=2)
        ax.set_xticks(ks, [str(k) for k in ks])
        ax.set_xlabel("k candidates per problem")
        ax.set_title(f"{sl.replace('_', ' ')}{title}", fontsize=10)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(f"held-out accuracy ({finals['untrained'][f'test_{panels[0][0]}n']} problems)")
    axes[-1].legend(fontsize=7)
    fig.suptitle(f"{task} task, generative verifier: 8 iterations x 128 prompts x 8 candidates (balanced unless "
                 f"'uncurated'), group baseline, seed {args.seed}", fontsize=10)
    fig.tight_layout()
    common.save_figure(fig, os.path.join(args.figures, figure), 80)
    write_table(out, lines)
