"""What every section of the TOPR experiments shares: starting a `train.py` run (skipped with --skip-done if
finished) and reading its held-out evaluations; the SFT bases of (f), which (f)-(j) start from; the off-policy
losses and flags of (g)-(l); the dataset train.py rl samples first (its seeds); tables and figures."""
import argparse
import math
import os
import shlex
import statistics
import time

import common
import data
import eval as ev
import train

# The experiments as data: the flags of their train.py runs. Numbers that go to train.py are strings, as
# typed on its command line. Each run adds its own --init, --out, --seed and the flags that vary across the
# experiment's runs (the loss, the baseline c, the epochs E, ...).
SFT_EVAL = ["--eval-problems", "256", "--eval-k", "4"]  # (a)-(d): held-out metrics, 256 test problems x 4 samples

# The SFT bases of (f), one per task, from scratch; (f)-(j) start from them.
SHORTCUT_SFT_CONFLICT = str(data.CALIBRATED_SFT_CONFLICT_FRAC)  # the calibrated base's SFT data (RESULTS.md)
ONPOLICY_SFT_DATA = {"default": [], "shortcut": ["--sft-conflict-frac", SHORTCUT_SFT_CONFLICT]}  # its worked solutions
SHORTCUT_SFT = ["--max-iters", "1200", "--batch-size", "32"]  # the shortcut bases' SFT budget (here and in (k))
ONPOLICY_BASES = {  # task -> the flags of its task, and of its SFT base (from scratch)
    "default": ([], []),
    "shortcut": (["--shortcut"], [*ONPOLICY_SFT_DATA["shortcut"], *SHORTCUT_SFT]),
}
ONPOLICY_EVAL = {"default": "1000", "shortcut": "2000"}  # held-out problems (shortcut: half per slice)
ONPOLICY_EVAL_K = "8"                                    # samples per held-out problem

# (g)-(l) Off-policy on both tasks (issue: off-policy TOPR on the shortcut task). Every run starts from the
# base of its task (the bases of (f)) and trains on ONE dataset sampled from it, or on a few.
OFF_LOSSES = {  # name -> flags: c = 0 wherever the loss has a baseline (the paper's off-policy setting)
    "topr": ["--loss", "topr", "--baseline", "0"], "reinforce": ["--loss", "reinforce", "--baseline", "0"],
    "tis": ["--loss", "tis", "--baseline", "0"], "ppo": ["--loss", "ppo", "--baseline", "0"],
    "sft_pos": ["--loss", "sft_pos"], "neg_only": ["--loss", "neg_only"],
}
OFF_COMMON = ["--k", "8", "--batch-size", "64", "--micro-batch", "64", "--lr", "1e-4", "--eval-problems", "400",
              "--eval-k", "4"]


# -------------------------------------------------------------------------------------------------------------
# Runs

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


def sft_base(folder, argv, retrain=False):
    """An SFT base, `train.py sft --out folder argv`: trained if missing, or if retrain (not --skip-done's rule:
    see f_onpolicy.exp_onpolicy) -> its checkpoint."""
    if retrain or not os.path.exists(os.path.join(folder, "ckpt.pt")):
        run_train(["sft", "--out", folder, *argv])
    return os.path.join(folder, "ckpt.pt")


def base_ckpt(args, task, retrain=False):
    """The SFT base of `task` (of `experiments.py onpolicy`): trained if missing, or if retrain."""
    task_args, base_args = ONPOLICY_BASES[task]
    flags = [*task_args, "--eval-problems", ONPOLICY_EVAL[task], "--eval-k", ONPOLICY_EVAL_K, *base_args]
    return sft_base(os.path.join(args.out, "exp_onpolicy", f"base_{task}"), flags, retrain)


def rl_run(args, folder, task, flags):
    """One off-policy `train.py rl` (OFF_COMMON) from the task's base into folder; its metrics rows."""
    return run_unless_done(args, folder, lambda: ["rl", "--init", base_ckpt(args, task), *ONPOLICY_BASES[task][0],
                                                  *OFF_COMMON, *flags])


def rl_dataset(policy, tok, task, prompts, k=8, max_new_tokens=48, seed=0, iteration=0):
    """The dataset that `train.py rl --seed seed` samples at `iteration` (train.rl, step 1): `prompts` training
    problems of seed seed * 1000 + iteration + 1, k samples each of seed seed * 1000 + iteration
    -> (problems, train.Rollout). The default: the first dataset of seed 0, which every method sees."""
    problems = task.problems(prompts, seed * 1000 + iteration + 1, "train", use="rl")
    return problems, train.sample_solutions(policy, tok, problems, k, max_new_tokens, seed=seed * 1000 + iteration)


def eval_rows(folder):
    """The held-out evaluation rows of a run folder's metrics (the rows with test_* keys; the start first)."""
    return [r for r in ev.read_metrics(folder) if "test_pass@1" in r]


# -------------------------------------------------------------------------------------------------------------
# Tasks, variants, tables and figures

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
    """--length-norm and --optimizer as train.py rl flags; SGD without gradient clipping (see
    f_onpolicy.exp_onpolicy)."""
    flags = ["--length-norm", args.length_norm, "--optimizer", args.optimizer]
    return flags + (["--grad-clip", "1e9"] if args.optimizer == "sgd" else [])


def mean_se(xs):
    m = statistics.fmean(xs)
    se = statistics.stdev(xs) / math.sqrt(len(xs)) if len(xs) > 1 else float("nan")
    return m, se


def write_table(out, lines, name="table.md"):
    text = "\n".join(lines)
    print("\n" + text)
    common.atomic_write(os.path.join(out, name), text + "\n")

