"""
demo.py -- the end-to-end demo (the README's first command), 7 minutes on 2 CPU cores, and what it
teaches: a verdict table, each claim with its interval (RESULTS.md "The demo": which verdicts vary by machine).

  1. SFT: train a small GPT from scratch on worked solutions of the shortcut task (a cue word that gives
     the operation away, except in rare conflict problems), until its measured headroom is in BAND.
  2. RL in the TOPR paper's setting: one dataset sampled once from the SFT policy, one pass over it; TOPR
     and SFT on the positives (c = 0) with 3 RL seeds each, naive REINFORCE once; evaluated through the pass.
  3. GSN: the walkback DAE next to the DAE without walkback at equal compute (gsn_experiments.demo).
  4. The verdict table: each claim, its measured value with a t-based 95% interval, and "holds",
     "does not hold" or "within noise" by one rule (common.verdict: does the interval exclude 0?).

Why the band: the same recipe lands at other bases on other machines (1 vs 2 threads, another CPU or MKL
code path sum floats in another order, and a short training amplifies that). A step count would decide the
base's headroom by float order; a band measured on held-out problems decides it by what the lesson needs.
Exact numbers still differ between machines; the verdicts must not (RESULTS.md "The demo").

Everything goes under --out (default runs/demo). Each stage is a plain call of the same CLI you would type
yourself (printed before it runs). The top floor: it uses both towers, the GPT side (train, eval) and the
GSN side (gsn_experiments.demo).
"""
import argparse
import json
import os
import shlex
import sys
import time

import torch

import common
import data
import eval as ev
import gsn_experiments
import train

# RESULTS.md (k): TOPR's lead over SFT on the positives came with a small normal-slice price from the bases
# whose conflict pass@1 was 0.3-0.5 with a normal slice of 0.9 or more; from bases near 0.1 the price was
# 0.2 of the normal slice. The demo's base is stopped inside that band, whatever the machine.
BAND = ["conflict_pass@1=0.3:0.5", "normal_pass@1=0.9:1"]
RL_SEEDS = [0, 1, 2]  # a seed draws the RL prompts, the samples, their order and the test problems
EVAL_STEPS = 4        # an evaluation every 4 of the pass's 16 optimizer steps


def run(module, argv):
    print(f"\n$ python {module.__name__}.py {shlex.join(argv)}", flush=True)
    return module.main(argv)


def read_evals(runs):
    """runs[loss][seed] = run folder -> evals[loss][seed] = its held-out evaluation rows, read once."""
    return {loss: {s: [r for r in ev.read_metrics(d) if "test_pass@1" in r] for s, d in seeds.items()}
            for loss, seeds in runs.items()}


def curves(rows, key):
    """(steps, values) of a held-out metric through an RL run (its evaluation rows)."""
    return [r["step"] for r in rows], [r[f"test_{key}"] for r in rows]


def gpt_verdicts(evals):
    """The TOPR claims, each with its interval. evals[loss][seed] = a run's evaluation rows (read_evals). topr
    and sft_pos share, seed by seed, the base, the dataset and the test problems: their differences are paired
    (df = seeds - 1). REINFORCE ran once: its interval is over test problems (a binomial bound on the s.e. of a
    difference of two pass@1 on the same n problems, wider than the paired one), not over seeds."""
    end = lambda loss, key: [curves(evals[loss][s], key)[1][-1] for s in RL_SEEDS]
    gain = lambda loss, key: [v[-1] - v[0] for v in (curves(evals[loss][s], key)[1] for s in RL_SEEDS)]
    diff = lambda key: [a - b for a, b in zip(end("topr", key), end("sft_pos", key))]
    rows = [("TOPR raises the conflict slice (end - start)", gain("topr", "conflict_pass@1"), +1),
            ("TOPR gains more than SFT on the positives on the conflict slice (topr - sft_pos)",
             diff("conflict_pass@1"), +1),
            ("TOPR pays for it on the normal slice (topr - sft_pos)", diff("normal_pass@1"), -1)]
    table = []
    for claim, values, sign in rows:
        mean, half = common.t_interval(values)
        table.append(dict(claim=claim, value=mean, half=half, n=len(values), unit="RL seeds, one base",
                          verdict=common.verdict(mean, half, sign)))
    _, normal = curves(evals["reinforce"][RL_SEEDS[0]], "normal_pass@1")
    n = round(evals["reinforce"][RL_SEEDS[0]][-1]["test_n"] * (1 - data.Task.test_conflict_frac))
    p0, p1 = normal[0], normal[-1]
    half = 1.96 * ((p0 * (1 - p0) + p1 * (1 - p1)) / n) ** 0.5
    table.append(dict(claim="naive REINFORCE (c = 0) loses the normal slice (end - start)", value=p1 - p0, half=half,
                      n=n, unit="test problems, one RL seed", verdict=common.verdict(p1 - p0, half, -1)))
    return table


def figure(evals, table, path):
    """Both test slices through the pass: one line per loss, its band the t-interval over seeds at each point;
    the y-axis is the whole [0, 1] so that noise is not drawn as a trend; each panel's title gives the verdict."""
    plt = common.pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, key, row in zip(axes, ["conflict_pass@1", "normal_pass@1"], [table[1], table[2]]):
        for color, loss in zip(["C0", "C2", "C3"], evals):
            ys = [curves(evals[loss][s], key) for s in evals[loss]]
            steps = ys[0][0]
            if len(ys) == 1:
                ax.plot(steps, ys[0][1], color=color, ls="--", marker="o", ms=3, label=f"{loss} (1 seed)")
                continue
            stats = [common.t_interval(list(col)) for col in zip(*(v for _, v in ys))]
            mean = [m for m, _ in stats]
            ax.plot(steps, mean, color=color, marker="o", ms=3, label=f"{loss} ({len(ys)} seeds, 95% band)")
            ax.fill_between(steps, [m - h for m, h in stats], [m + h for m, h in stats], color=color, alpha=0.2)
        ax.set_ylim(0, 1)
        ax.set_xlabel("optimizer step (one pass over one dataset)")
        ax.set_title(f"{key.replace('_', ' slice ')}\ntopr - sft_pos at the end: {row['value']:+.3f} +- {row['half']:.3f}"
                     f" ({row['verdict']})", fontsize=9)
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    common.save_figure(fig, path)


def print_verdicts(table):
    print(f"\n{'claim':<84} {'value':>8} {'95% interval':>17} {'n':>4}  {'over':<28} verdict")
    for r in table:
        lo, hi = r["value"] - r["half"], r["value"] + r["half"]
        print(f"{r['claim']:<84} {r['value']:>+8.3f} [{lo:+.3f}, {hi:+.3f}] {r['n']:>4}  {r['unit']:<28} {r['verdict']}")


@common.cli
def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/demo")
    p.add_argument("--seed", type=int, default=0, help="the SFT base's and the GSN models' seed")
    p.add_argument("--quick", action="store_true", help="a much smaller version (seconds; for tests): its verdicts mean nothing")
    args = p.parse_args(argv)
    out, seed, q = args.out, str(args.seed), args.quick
    t0 = time.time()
    env = common.environment(torch.device("cpu"))
    print(f"[demo] environment: {json.dumps(env)}", flush=True)
    summary, times = {"env": env}, {}
    sft_dir = os.path.join(out, "sft")

    # ---- 1. SFT on the shortcut task: the question's cue word ("left" / "now") gives the operation away,
    #         except in rare conflict problems, where the verb decides. RESULTS (k)'s base recipe (3% conflicts,
    #         the lr decayed over 1,200 iterations, then held at its minimum), stopped once its held-out
    #         conflict and normal pass@1 are inside BAND (checked every 50 iterations; 1,600 the cap). The val
    #         loss beside each check reads 128 problems: the band, not the loss, decides when SFT stops.
    print(f"[demo 1/3] SFT on the shortcut task until {' '.join(BAND)}", flush=True)
    sft_args = ["sft", "--shortcut", "--out", sft_dir, "--seed", seed]
    if q:
        sft_args += ["--max-iters", "30", "--n-layer", "1", "--n-embd", "32", "--n-head", "2", "--sft-examples", "300",
                     "--val-examples", "32", "--eval-problems", "8", "--eval-k", "2", "--warmup", "5",
                     "--max-new-tokens", "12", "--eval-interval", "10", "--stop-when", "conflict_pass@1=0:1"]
    else:
        sft_args += ["--eval-problems", "256", "--eval-k", "4", "--batch-size", "32", "--lr-decay-iters", "1200",
                     "--max-iters", "1600", "--eval-interval", "50", "--stop-when", *BAND, "--val-examples", "128",
                     "--sft-conflict-frac", str(data.CALIBRATED_SFT_CONFLICT_FRAC)]
    summary["sft"] = run(train, sft_args)
    times["sft"] = time.time() - t0

    # ---- 2. RL as in the paper: ONE dataset sampled from the SFT policy, one pass over it (c = 0; conflict
    #         problems are half the prompts); topr and sft_pos from 3 seeds, reinforce from one
    print(f"\n[demo 2/3] RL: topr and sft_pos x {len(RL_SEEDS)} seeds, reinforce x 1 (elapsed {time.time() - t0:.0f}s)",
          flush=True)
    rl_common = ["rl", "--shortcut", "--init", os.path.join(sft_dir, "ckpt.pt"), "--iterations", "1", "--baseline", "0",
                 "--no-greedy-eval"]  # the verdicts read sampled pass@1 only: a quarter less time per evaluation
    if q:
        rl_common += ["--prompts", "4", "--k", "4", "--batch-size", "8", "--micro-batch", "8", "--eval-steps", "1",
                      "--eval-problems", "4", "--eval-k", "2", "--max-new-tokens", "8"]
    else:
        rl_common += ["--prompts", "128", "--k", "8", "--batch-size", "64", "--micro-batch", "64", "--lr", "1e-4",
                      "--eval-steps", str(EVAL_STEPS), "--eval-problems", "400", "--eval-k", "4"]
    runs = {"topr": {}, "sft_pos": {}, "reinforce": {}}
    for s in RL_SEEDS:
        for loss in runs:
            if loss != "reinforce" or s == RL_SEEDS[0]:
                runs[loss][s] = os.path.join(out, f"rl_{loss}_seed{s}")
                run(train, rl_common + ["--loss", loss, "--seed", str(s), "--out", runs[loss][s]])
    evals = read_evals(runs)
    table = gpt_verdicts(evals)
    figure(evals, table, os.path.join(out, "rl.png"))
    times["rl"] = time.time() - t0 - times["sft"]

    # ---- 3. GSN: does walkback help a denoising auto-encoder's chain, at equal compute?
    print(f"\n[demo 3/3] GSN (elapsed {time.time() - t0:.0f}s)", flush=True)
    summary["gsn"] = gsn_experiments.demo(os.path.join(out, "gsn"), seed=args.seed, quick=q)
    table += summary["gsn"]["verdicts"]
    times["gsn"] = time.time() - t0 - times["sft"] - times["rl"]

    summary["verdicts"], summary["seconds"] = table, {k: round(v) for k, v in times.items()}
    with open(os.path.join(out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1, default=str)
    print(f"\n===== demo done in {time.time() - t0:.0f}s (SFT {times['sft']:.0f}s, RL {times['rl']:.0f}s, "
          f"GSN {times['gsn']:.0f}s); figures and runs under {out}/, this table in {out}/summary.json =====")
    if not summary["sft"].get("in_band", True):
        print(f"warning: the SFT base is outside {' '.join(BAND)} (cap reached): the verdicts below are not the demo's")
    print_verdicts(table)
    return summary


if __name__ == "__main__":
    sys.exit(0 if main() is not None else 1)
