"""RESULTS.md (b, d) Negatives matter? Several iterations of sample-then-train (`experiments.py iterated`).
3 iterations of 32 prompts x 16 samples from the SFT model, group-mean baseline, topr vs sft_pos vs reinforce,
seeds 0 1 2; next to "continue SFT" on worked solutions for the same number of optimizer samples."""
import os
import statistics

import eval as ev
from topr_experiments.runs import SFT_EVAL, eval_rows, mean_se, run_unless_done, write_table

# 3 x (32 prompts x 16 samples), one step on all 512, group mean
ITERATED_LOSSES = ["topr", "sft_pos", "reinforce"]
ITERATED_SEEDS = [0, 1, 2]
ITERATED = ["--iterations", "3", "--epochs", "1", "--prompts", "32", "--k", "16", "--batch-size", "512",
            "--micro-batch", "128", "--lr", "3e-5", "--baseline", "group", *SFT_EVAL]
# "continue SFT" on worked solutions for as many optimizer samples (48 x 32 = 3 x 512), same lr and
# optimizer: does RL beat simply training longer on the data SFT already had?
ITERATED_SFT_MORE = ["--max-iters", "48", "--batch-size", "32", "--lr", "3e-5", "--min-lr", "3e-5", "--warmup", "0",
                     *SFT_EVAL, "--eval-interval", "48"]
ITERATED_SFT_MORE_SAMPLES = 48 * 32


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
