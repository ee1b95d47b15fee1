"""RESULTS.md (a) Strongly off-policy: naive REINFORCE collapses, TOPR does not (`experiments.py offpolicy`).
ONE dataset of 64 prompts x 8 samples from the SFT policy, 6 epochs over it, topr vs reinforce vs tis vs ppo vs
sft_pos at the constant baseline c = 0."""
import os

import eval as ev
from topr_experiments.runs import SFT_EVAL, eval_rows, run_unless_done, write_table

OFFPOLICY_LOSSES = ["topr", "reinforce", "tis", "ppo", "sft_pos"]
OFFPOLICY = ["--iterations", "1", "--epochs", "6", "--prompts", "64", "--k", "8", "--batch-size", "32",
             "--micro-batch", "32", "--lr", "3e-5", "--baseline", "0", *SFT_EVAL, "--eval-each-epoch"]


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
