"""
experiments.py -- the TOPR experiments of RESULTS.md, one command each, fixed seeds.

  python experiments.py offpolicy    (a) strongly off-policy: ONE generated dataset, 6 epochs over it,
                                         topr vs reinforce vs tis vs ppo vs sft_pos (constant c = 0)
  python experiments.py iterated     (b, d) 3 iterations of sample-then-train, group-mean baseline,
                                         topr vs sft_pos vs reinforce, seeds 0 1 2, plus "continue SFT"
                                         on worked solutions for the same number of optimizer samples
  python experiments.py baseline     (c) topr with a constant baseline c: accuracy against the effective
                                         positive fraction p_eff = p(1-c) / (1+c(1-2p))
  python experiments.py verifier     (e) the SFT model trained as a generative verifier (topr vs reinforce vs
                                         sft_pos); majority vs verifier-weighted majority vs best-of-k;
                                         (j) --tasks shortcut: where majority voting is systematically wrong
  python experiments.py onpolicy     (f) on-policy, shortcut task vs default task: reinforce (= topr), sft_pos,
                                         neg_only, group baseline, continued SFT; 3 seeds (trains both bases)
  python experiments.py gradnoise    (f') the noise of each on-policy estimator on one rollout of each base
  python experiments.py errors       (f, g) what the shortcut base (and each stability run) answers, per slice
  python experiments.py stability    (g) off-policy on both tasks: ONE dataset, 8 epochs, topr, reinforce, tis,
                                         ppo, sft_pos, neg_only (c = 0); seeds --seeds
  python experiments.py credit       (g) where the push lands: log pi per token group (operator, operands, result)
  python experiments.py reuse        (h) sample reuse at equal samples generated: E = 1, 2, 4, 8 epochs per dataset
  python experiments.py composition  (i) TOPR's p_eff by the baseline c and by curation, on (g)'s dataset
  python experiments.py overlap      how often a held-out test problem's worked solution is a training problem's
  python experiments.py regime       (k) the regime map: 4 SFT bases (headroom, conflict direction), one dataset,
                                         4 epochs, topr vs sft_pos vs tis vs reinforce (c = 0), seeds --seeds
  python experiments.py onepass      (k) the paper's setting: one pass over 4x the samples, the same steps
  python experiments.py tokencredit  (l) where a negative's push lands: --credit first_error and prefix

(a)-(e) start from the SFT checkpoint --sft (default runs/sft/ckpt.pt, made by
`python train.py sft --out runs/sft`); (f)-(j) from the two bases of (f), which `onpolicy` trains (and any
other command that needs a missing one); (k)-(l) from the bases of REGIME_BASES, trained when missing. Each run is a plain `train.py` call, printed before it runs; results
go under runs/exp_<name>/, the figure to figures/, and a markdown table to stdout and runs/exp_<name>/table.md.

The file, top to bottom:
  the experiments as data   the train.py flags that define each experiment (losses, settings, seeds, budgets),
                            one block per RESULTS.md section, like nanoGPT's config files
  helpers                   run_unless_done (one train.py run, skipped with --skip-done if finished),
                            eval_rows (a run's held-out evaluation rows), the task of a name, tables, figures
  the experiments           exp_<name>(args) for each command above: runs, then table and figure
  main                      the command line (EXPERIMENTS: command name -> function)
"""
import argparse
import dataclasses
import math
import os
import shlex
import statistics
import time

import torch

import common
import data
import eval as ev
import topr
import train
from common import UserError
from model import pack, sequence_logprobs

# -------------------------------------------------------------------------------------------------------------
# The experiments as data: the flags of their train.py runs, in the order the commands print them. Numbers
# that go to train.py are strings, as typed on its command line. Each run adds its own --init, --out, --seed
# and the flags that vary across the experiment's runs (the loss, the baseline c, the epochs E, ...).

SFT = "runs/sft/ckpt.pt"  # (a)-(e): the start, `python train.py sft --out runs/sft` (--sft)
SEEDS = [0, 1, 2]         # (f)-(h): the RL seeds (--seeds)
SFT_EVAL = ["--eval-problems", "256", "--eval-k", "4"]  # (a)-(d): held-out metrics, 256 test problems x 4 samples

# (a) Strongly off-policy: ONE dataset of 64 prompts x 8 samples from the SFT policy, 6 epochs over it, c = 0
OFFPOLICY_LOSSES = ["topr", "reinforce", "tis", "ppo", "sft_pos"]
OFFPOLICY = ["--iterations", "1", "--epochs", "6", "--prompts", "64", "--k", "8", "--batch-size", "32",
             "--micro-batch", "32", "--lr", "3e-5", "--baseline", "0", *SFT_EVAL, "--eval-each-epoch"]

# (b, d) Several iterations of sample-then-train: 3 x (32 prompts x 16 samples), one step on all 512, group mean
ITERATED_LOSSES = ["topr", "sft_pos", "reinforce"]
ITERATED_SEEDS = [0, 1, 2]
ITERATED = ["--iterations", "3", "--epochs", "1", "--prompts", "32", "--k", "16", "--batch-size", "512",
            "--micro-batch", "128", "--lr", "3e-5", "--baseline", "group", *SFT_EVAL]
# (b, d) "continue SFT" on worked solutions for as many optimizer samples (48 x 32 = 3 x 512), same lr and
# optimizer: does RL beat simply training longer on the data SFT already had?
ITERATED_SFT_MORE = ["--max-iters", "48", "--batch-size", "32", "--lr", "3e-5", "--min-lr", "3e-5", "--warmup", "0",
                     *SFT_EVAL, "--eval-interval", "48"]
ITERATED_SFT_MORE_SAMPLES = 48 * 32

# (c) The baseline sets the dataset composition: topr with a constant c, 2 iterations of 32 prompts x 16
BASELINE_LOSS = "topr"
BASELINE_CS = [-0.9, -0.6, -0.3, 0.0, 0.3]
BASELINE = ["--iterations", "2", "--epochs", "1", "--prompts", "32", "--k", "16", "--batch-size", "128",
            "--micro-batch", "128", "--lr", "3e-5"]  # then --baseline c, SFT_EVAL

# (f) On-policy, shortcut task next to default task (issue: TOPR where it matters). One optimizer step per
# generated dataset, so every update is on-policy (rho = 1) and topr = reinforce with c = 0. Under --length-norm
# constant every method below has the same expected gradient up to a positive factor (README, "On-policy, one
# expected gradient"): they differ in variance and prompt weighting only; under the default 'sequence' the
# baseline c also adds -c grad E[1/L], a push on the completions' length. "sft_more" continues SFT on worked
# solutions for the same number of optimizer samples: the baseline RL has to beat.
SHORTCUT_SFT_CONFLICT = str(data.CALIBRATED_SFT_CONFLICT_FRAC)  # the calibrated base's SFT data (RESULTS.md)
ONPOLICY_SFT_DATA = {"default": [], "shortcut": ["--sft-conflict-frac", SHORTCUT_SFT_CONFLICT]}  # its worked solutions
SHORTCUT_SFT = ["--max-iters", "1200", "--batch-size", "32"]  # the shortcut bases' SFT budget (here and in (k))
ONPOLICY_BASES = {  # task -> the flags of its task, and of its SFT base (from scratch)
    "default": ([], []),
    "shortcut": (["--shortcut"], [*ONPOLICY_SFT_DATA["shortcut"], *SHORTCUT_SFT]),
}
ONPOLICY_EVAL = {"default": "1000", "shortcut": "2000"}  # held-out problems (shortcut: half per slice)
ONPOLICY_EVAL_K = "8"                                    # samples per held-out problem
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

# (e) and (j) The SFT model (or the shortcut base) as a generative verifier of its own candidates.
# name -> (loss, curation): balanced candidates (half right, half wrong) for the three losses, and topr on the
# candidates as the solver makes them, where "always No" may already be mostly right
VERIFIER_RUNS = {"topr": ("topr", "0.5"), "reinforce": ("reinforce", "0.5"), "sft_pos": ("sft_pos", "0.5"),
                 "topr_uncurated": ("topr", None)}
VERIFIER = ["--iterations", "8", "--epochs", "1", "--prompts", "128", "--k", "8", "--batch-size", "64",
            "--micro-batch", "64", "--lr", "3e-4", "--baseline", "group"]
VERIFIER_K = 16  # held-out candidates per test problem; (e): 256 test problems, (j): 400 (200 per slice)
VERIFIER_EVAL = {task: ["--eval-problems", n, "--eval-k", str(VERIFIER_K), "--eval-every", "4"]
                 for task, n in (("default", "256"), ("shortcut", "400"))}

# (g, h, i) Off-policy on both tasks (issue: off-policy TOPR on the shortcut task). Every run starts from the
# base of its task (the bases of (f)) and trains on ONE dataset sampled from it, or on a few.
OFF_LOSSES = {  # name -> flags: c = 0 wherever the loss has a baseline (the paper's off-policy setting)
    "topr": ["--loss", "topr", "--baseline", "0"], "reinforce": ["--loss", "reinforce", "--baseline", "0"],
    "tis": ["--loss", "tis", "--baseline", "0"], "ppo": ["--loss", "ppo", "--baseline", "0"],
    "sft_pos": ["--loss", "sft_pos"], "neg_only": ["--loss", "neg_only"],
}
OFF_COMMON = ["--k", "8", "--batch-size", "64", "--micro-batch", "64", "--lr", "1e-4", "--eval-problems", "400",
              "--eval-k", "4"]
# (g) Strongly off-policy: one dataset of 64 prompts x 8 samples, 8 epochs (64 steps of 64), every loss
STABILITY = ["--iterations", "1", "--prompts", "64", "--epochs", "8", "--eval-each-epoch"]
# (h) Sample reuse: 4 datasets of 32 prompts x 8 samples (1024 generated), each used for E epochs
REUSE_LOSSES = ["topr", "reinforce", "sft_pos"]
REUSE = ["--iterations", "4", "--prompts", "32"]  # then --epochs E
REUSE_E = [1, 2, 4, 8]
# (i) Dataset composition: TOPR on (g)'s dataset, 4 epochs, with the c that gives each p_eff, or curated to it
COMPOSITION_LOSS = "topr"
COMPOSITION = ["--iterations", "1", "--prompts", "64", "--epochs", "4"]  # then --baseline c [--target-pos-frac]
COMPOSITION_P_EFF = [0.05, 0.1, 0.2, 0.5, 0.9]

# (k) When do negatives help? (issue: a regime map.) SFT bases of the shortcut task at (f)'s budget and recipe
# (ONPOLICY_BASES) that differ in conflict headroom (their conflict fraction) or in the task's structure (the
# conflicts' direction); from each, (g)'s strongly off-policy setting (one dataset, c = 0) with REGIME_LOSSES,
# and from ONEPASS_BASES the paper's: one pass over fresh samples for as many optimizer steps.
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
# (l) Where a negative's push lands (issue: credit assignment): topr with token-level credit (train.py rl
# --credit) from ONEPASS_BASES, next to (k)'s topr and sft_pos: first_error (a diagnostic that reads the worked
# solution), prefix (the group's prefix tree) in the reuse setting, and prefix in the one-pass setting.
CREDIT_MODES = ["first_error", "prefix"]


# -------------------------------------------------------------------------------------------------------------
# Helpers

def run_train(argv):
    print(f"\n[{time.strftime('%H:%M:%S')}] $ python train.py {shlex.join(argv)}", flush=True)
    train.main(argv)


def run_unless_done(args, folder, argv):
    """`python train.py` with argv and `--out folder` (after `--init CKPT`, or after the subcommand if argv has
    no --init), unless --skip-done and folder holds a finished run (its ckpt.pt); -> folder's metrics rows.
    argv may be a function that returns the list: called only if the run runs (rl_run: a missing base is
    trained only when a run needs it)."""
    if not (args.skip_done and os.path.exists(os.path.join(folder, "ckpt.pt"))):
        argv = argv() if callable(argv) else argv
        at = argv.index("--init") + 2 if "--init" in argv else 1
        run_train([*argv[:at], "--out", folder, *argv[at:]])
    return ev.read_metrics(folder)


def eval_rows(folder):
    """The held-out evaluation rows of a run folder's metrics (the rows with test_* keys; the start first)."""
    return [r for r in ev.read_metrics(folder) if "test_pass@1" in r]


def mean_se(xs):
    m = statistics.fmean(xs)
    se = statistics.stdev(xs) / math.sqrt(len(xs)) if len(xs) > 1 else float("nan")
    return m, se


def savefig(fig, path, dpi):
    """A figure as a PNG, written atomically (common.atomic_write)."""
    common.atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=dpi), binary=True)
    common.pyplot().close(fig)  # pyplot keeps every open figure alive otherwise


def write_table(out, lines, name="table.md"):
    text = "\n".join(lines)
    print("\n" + text)
    common.atomic_write(os.path.join(out, name), text + "\n")


def task_flags(task):
    """The data.Task of ONPOLICY_BASES' task flags, parsed by the CLI's own declaration (eval.add_task_args)."""
    p = argparse.ArgumentParser()
    ev.add_task_args(p)
    return data.Task.from_args(p.parse_args(ONPOLICY_BASES[task][0]))


def slices(task):
    """The metric-key prefixes of a task's slices (data.Task.slices): the shortcut task's two, or "" (all)."""
    return [f"{s}_" for s in task_flags(task).slices if s != "all"] or [""]


def variant(args):
    """The folder suffix of a run whose --length-norm or --optimizer is not the default ('' if both are)."""
    return "".join(f"_{v}" for v, default in ((args.length_norm, "sequence"), (args.optimizer, "adamw"))
                   if v != default)


def rl_variant_flags(args):
    """--length-norm and --optimizer as train.py rl flags; SGD without gradient clipping (see exp_onpolicy)."""
    flags = ["--length-norm", args.length_norm, "--optimizer", args.optimizer]
    return flags + (["--grad-clip", "1e9"] if args.optimizer == "sgd" else [])


def base_ckpt(args, task, retrain=False):
    """The SFT base of `task` (of `experiments.py onpolicy`): trained if missing, or if retrain."""
    task_args, base_args = ONPOLICY_BASES[task]
    base = os.path.join(args.out, "exp_onpolicy", f"base_{task}")
    if retrain or not os.path.exists(os.path.join(base, "ckpt.pt")):  # not --skip-done's rule: see exp_onpolicy
        run_train(["sft", "--out", base, *task_args, "--eval-problems", ONPOLICY_EVAL[task],
                   "--eval-k", ONPOLICY_EVAL_K, *base_args])
    return os.path.join(base, "ckpt.pt")


def rl_run(args, folder, task, flags):
    """One off-policy `train.py rl` (OFF_COMMON) from the task's base into folder; its metrics rows."""
    return run_unless_done(args, folder, lambda: ["rl", "--init", base_ckpt(args, task), *ONPOLICY_BASES[task][0],
                                                  *OFF_COMMON, *flags])


# -------------------------------------------------------------------------------------------------------------
# The experiments

def exp_offpolicy(args):
    """(a) Strongly off-policy: ONE dataset of 64 prompts x 8 samples from the SFT policy, 6 epochs over it,
    each loss of OFFPOLICY_LOSSES at c = 0; evaluated after every epoch."""
    out = os.path.join(args.out, "exp_offpolicy")
    runs = [os.path.join(out, loss) for loss in OFFPOLICY_LOSSES]
    stats = {}
    for loss, d in zip(OFFPOLICY_LOSSES, runs):
        rows = run_unless_done(args, d, ["rl", "--init", args.sft, "--loss", loss, "--seed", str(args.seed),
                                         *OFFPOLICY])
        stats[loss] = [r for r in rows if "logp_reward_neg" in r]
    ev.main(["compare", *runs, "--labels", *OFFPOLICY_LOSSES,
             "--out", os.path.join(args.figures, "topr_offpolicy.png"),
             "--title", "strongly off-policy: one dataset of 64 prompts x 8 samples, 6 epochs, c = 0"])
    lines = ["| loss | pass@1 start | pass@1 after 6 epochs | greedy | invalid "
             "| mean log pi negatives (start -> end) |",
             "|---|---|---|---|---|---|"]
    for loss, d in zip(OFFPOLICY_LOSSES, runs):
        held, st = eval_rows(d), stats[loss]
        lines.append(f"| {loss} | {held[0]['test_pass@1']:.3f} | {held[-1]['test_pass@1']:.3f} "
                     f"| {held[-1]['test_greedy']:.3f} | {held[-1]['test_invalid']:.3f} "
                     f"| {st[0]['logp_reward_neg']:.1f} -> {st[-1]['logp_reward_neg']:.1f} |")
    write_table(out, lines)


def exp_iterated(args):
    """(b, d) 3 iterations of sample-then-train from the SFT model, each loss of ITERATED_LOSSES, seeds
    ITERATED_SEEDS; and "continue SFT" (sft_more) for the same number of optimizer samples."""
    out = os.path.join(args.out, "exp_iterated")
    results = {}
    for loss in ITERATED_LOSSES:
        for seed in ITERATED_SEEDS:
            d = os.path.join(out, f"{loss}_s{seed}")
            run_unless_done(args, d, ["rl", "--init", args.sft, "--loss", loss, "--seed", str(seed), *ITERATED])
            results[(loss, seed)] = eval_rows(d)
    for seed in ITERATED_SEEDS:
        d = os.path.join(out, f"sft_more_s{seed}")
        run_unless_done(args, d, ["sft", "--init", args.sft, "--seed", str(seed), *ITERATED_SFT_MORE])
        final = eval_rows(d)[-1]  # its start is the SFT model: the RL runs' start row
        results[("sft_more", seed)] = [results[("topr", seed)][0], {**final, "samples": ITERATED_SFT_MORE_SAMPLES}]
    ev.main(["compare", *[os.path.join(out, f"{loss}_s0") for loss in ITERATED_LOSSES], "--labels", *ITERATED_LOSSES,
             "--out", os.path.join(args.figures, "topr_iterated.png"),
             "--title", "3 iterations x (32 prompts x 16 samples), group baseline, seed 0"])
    lines = ["| method | pass@1 start | pass@1 after 3 iterations (mean +- s.e. over seeds 0,1,2) | change (paired) "
             "| greedy | invalid |",
             "|---|---|---|---|---|---|"]
    seeds = ITERATED_SEEDS
    for m in ITERATED_LOSSES + ["sft_more"]:
        start = [results[(m, s)][0]["test_pass@1"] for s in seeds]
        end = [results[(m, s)][-1]["test_pass@1"] for s in seeds]
        delta = [e - s for s, e in zip(start, end)]
        (me, se), (md, sd) = mean_se(end), mean_se(delta)
        g = statistics.fmean(results[(m, s)][-1]["test_greedy"] for s in seeds)
        inv = statistics.fmean(results[(m, s)][-1]["test_invalid"] for s in seeds)
        per_iter = " / ".join(f"{statistics.fmean(results[(m, s)][i]['test_pass@1'] for s in seeds):.3f}"
                              for i in range(len(results[(m, seeds[0])])))
        lines.append(f"| {m} | {statistics.fmean(start):.3f} | {me:.3f} +- {se:.3f} (per iteration: {per_iter}) "
                     f"| {md:+.3f} +- {sd:.3f} | {g:.3f} | {inv:.3f} |")
    write_table(out, lines)


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
    savefig(fig, os.path.join(args.figures, "topr_baseline.png"), 80)
    lines = ["| baseline c | positive fraction p | p_eff | pass@1 start | pass@1 end | invalid end |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {r['c']:+.1f} | {r['p']:.3f} | {r['p_eff']:.3f} | {r['start']:.3f} | {r['end']:.3f} "
              f"| {r['invalid']:.3f} |" for r in points]
    write_table(out, lines)


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
    savefig(fig, os.path.join(args.figures, figure), 80)
    write_table(out, lines)


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
    savefig(fig, os.path.join(args.figures, f"topr_onpolicy{variant(args)}.png"), 80)


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
        savefig(fig, os.path.join(args.figures, f"topr_stability_{task}{variant(args)}.png"), 70)
    write_table(out, lines, f"table{variant(args)}.md")


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
        savefig(fig, os.path.join(args.figures, f"topr_reuse_{task}.png"), 70)
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
    savefig(fig, os.path.join(args.figures, "topr_composition.png"), 70)
    write_table(out, lines)


def exp_gradnoise(args):
    """Why the on-policy methods moved at different speeds: the noise of each per-sample estimator
    g_i = A_i grad(log pi(y_i) / L_i) on one rollout of each base (32 prompts x 8 samples): the trace of
    its covariance, E||g||^2 - ||E g||^2, per slice. The hypothesis it was written for: one expected gradient
    (up to the length term of per-sequence normalisation), and Adam steps shorter when noisier (RESULTS (f'))."""
    lines = ["| task | prompts | " + " | ".join(f"noise {m}" for m in ONPOLICY_METHODS) + " | positive fraction |",
             "|---|---|" + "---|" * (len(ONPOLICY_METHODS) + 1)]
    for task in args.tasks:
        policy, tok, _ = ev.load_gpt(os.path.join(args.out, "exp_onpolicy", f"base_{task}", "ckpt.pt"), "cpu")
        problems = task_flags(task).problems(32, 1, "train", use="rl")
        batch = train.sample_solutions(policy, tok, problems, 8, 48, seed=0)
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


def regime_base(args, name):
    """The SFT base `name` of REGIME_BASES: (f)'s shortcut recipe at its conflict fraction and task flags,
    trained if missing (like base_ckpt) -> (its folder, its task flags)."""
    task_args, frac = REGIME_BASES[name]
    d = os.path.join(args.out, "exp_regime", f"base_{name}")
    if not os.path.exists(os.path.join(d, "ckpt.pt")):
        run_train(["sft", "--out", d, *task_args, "--sft-conflict-frac", frac, "--eval-problems",
                   ONPOLICY_EVAL["shortcut"], "--eval-k", ONPOLICY_EVAL_K, *SHORTCUT_SFT])
    return d, task_args


def regime_runs(args, prefix, bases, methods, flags):
    """{(base, method, seed): eval rows} of `train.py rl` from each base: OFF_COMMON, the method's flags
    (methods: name -> flags), then flags; folders runs/exp_regime/<prefix><base>_<method>_s<seed>."""
    runs = {}
    for name in bases:
        for seed in args.seeds:
            for method, method_flags in methods.items():
                d = os.path.join(args.out, "exp_regime", f"{prefix}{name}_{method}_s{seed}")
                base = lambda: regime_base(args, name)
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
    savefig(fig, os.path.join(args.figures, "topr_regime.png"), 80)


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
    problems = task.problems(64, 1, "train", use="rl")
    batch = train.sample_solutions(policy, tok, problems, 8, 48, seed=0)
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


def exp_overlap(args):
    """How often a held-out test problem's worked solution is also a training problem's. The splits' question
    texts are disjoint (data._question_split), but a test question can be a training question with other names,
    items, phrasings and pronouns, and the same numbers and operations: the same solution string. Training
    problems: those of the task's SFT base (train.py sft: --sft-examples 20,000 of --seed, the base's conflict
    fraction); test problems: its held-out evaluation's (ONPOLICY_EVAL of them, --seed). No model; seconds."""
    out = os.path.join(args.out, "exp_overlap")
    os.makedirs(out, exist_ok=True)
    lines = ["| task | slice | test problems | solution also a training solution | distinct training solutions |",
             "|---|---|---|---|---|"]
    for task in args.tasks:
        flags = task_flags(task)
        sft_task = dataclasses.replace(flags, sft_conflict_frac=data.CALIBRATED_SFT_CONFLICT_FRAC)  # the base's
        train_problems = sft_task.problems(20000, args.seed, "train", use="sft")
        test = flags.problems(int(ONPOLICY_EVAL[task]), args.seed, "test")
        seen = {p.solution for p in train_problems}
        for sl in (["normal", "conflict"] if task == "shortcut" else ["all"]):
            chosen = [p for p in test if sl in ("all", p.slice)]
            shared = sum(p.solution in seen for p in chosen)
            lines.append(f"| {task} | {sl} | {len(chosen)} | {shared} ({shared / len(chosen):.1%}) | {len(seen)} |")
    write_table(out, lines + [f"\n20,000 training problems (seed {args.seed}) vs the held-out test problems "
                              f"(seed {args.seed}); `python experiments.py overlap`"])


# -------------------------------------------------------------------------------------------------------------
# Command line

EXPERIMENTS = {"offpolicy": exp_offpolicy, "iterated": exp_iterated, "baseline": exp_baseline,
               "verifier": exp_verifier, "onpolicy": exp_onpolicy, "gradnoise": exp_gradnoise, "errors": exp_errors,
               "stability": exp_stability, "reuse": exp_reuse, "composition": exp_composition, "credit": exp_credit,
               "overlap": exp_overlap, "regime": exp_regime, "onepass": exp_onepass, "tokencredit": exp_tokencredit}


@common.cli
def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("name", choices=list(EXPERIMENTS))
    p.add_argument("--sft", default=SFT, help="the SFT start (python train.py sft --out runs/sft)")
    p.add_argument("--out", default="runs")
    p.add_argument("--figures", default="figures")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--skip-done", action="store_true", help="reuse finished runs under --out")
    p.add_argument("--tasks", nargs="+", choices=list(ONPOLICY_BASES), default=list(ONPOLICY_BASES),
                   help="onpolicy, stability, reuse, composition, verifier: the tasks (each has its own SFT base)")
    p.add_argument("--seeds", type=int, nargs="+", default=SEEDS,
                   help="onpolicy, stability, reuse, regime, onepass: RL seeds")
    p.add_argument("--bases", nargs="+", choices=list(REGIME_BASES), default=None,
                   help="regime, onepass, tokencredit: only these SFT bases (default: regime all, the others "
                        "ONEPASS_BASES)")
    p.add_argument("--iterations", type=common.positive, default=ONPOLICY_ITERATIONS,
                   help="onpolicy: on-policy steps per run (RESULTS (f): 20)")
    p.add_argument("--lr", type=common.positive_float, default=ONPOLICY_LR,
                   help="onpolicy: learning rate (RL and sft_more)")
    p.add_argument("--methods", nargs="+", choices=sorted(set(ONPOLICY_METHODS_ALL) | set(OFF_LOSSES)), default=None,
                   help="onpolicy, stability: only these methods (default: all of the experiment's)")
    p.add_argument("--length-norm", choices=topr.LENGTH_NORMS, default="sequence",
                   help="onpolicy, stability: train.py rl --length-norm (not 'sequence': run folders get a suffix)")
    p.add_argument("--optimizer", choices=["adamw", "sgd"], default="adamw",
                   help="onpolicy, stability: train.py rl --optimizer (sgd: no gradient clipping; "
                        "folders get a suffix)")
    args = p.parse_args(argv)
    needs_sft = args.name in ("offpolicy", "iterated", "baseline") or (args.name == "verifier"
                                                                       and "default" in args.tasks)
    if needs_sft and not os.path.isfile(args.sft):
        raise UserError(f"SFT checkpoint {args.sft} not found; make it with: python train.py sft --out runs/sft")
    allowed = {"onpolicy": ONPOLICY_METHODS_ALL, "stability": list(OFF_LOSSES)}.get(args.name)
    if allowed is None and (args.methods or args.length_norm != "sequence" or args.optimizer != "adamw"):
        raise UserError(f"--methods, --length-norm and --optimizer apply to onpolicy and stability, not {args.name}")
    if args.methods and not set(args.methods) <= set(allowed):
        raise UserError(f"{args.name} --methods must be among {', '.join(allowed)}; got {' '.join(args.methods)}")
    if args.bases and args.name not in ("regime", "onepass", "tokencredit"):
        raise UserError(f"--bases applies to regime, onepass and tokencredit, not {args.name}")
    if args.name == "onpolicy" and args.methods == ["sft_more"]:
        raise UserError("onpolicy --methods needs an RL method next to sft_more (its start row comes from one)")
    os.makedirs(args.figures, exist_ok=True)
    t0 = time.process_time()
    EXPERIMENTS[args.name](args)
    print(f"experiments.py {args.name}: {(time.process_time() - t0) / 60:.1f} CPU-minutes", flush=True)


if __name__ == "__main__":
    main()
