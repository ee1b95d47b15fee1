"""
demo.py -- the end-to-end demo (the README's first command), a few minutes on 2 CPU cores:

  1. SFT: train a small GPT from scratch on worked solutions of the shortcut task (a cue word that
     gives the operation away, except in rare conflict problems).
  2. RL in the TOPR paper's setting: one dataset generated once from the SFT policy, one pass over it (each
     sample used once), TOPR vs naive REINFORCE vs SFT on the positives (c = 0), from the same checkpoint and
     the same dataset; a figure per test slice. RESULTS.md (k) maps where TOPR's negatives help.
  3. GSN: the walkback DAE and the DAE without walkback at equal compute on the procedural MNIST-like
     digits; the Parzen gap over a few chain pairs with its 95% interval and verdict, the chains side by side.

Everything goes under --out (default runs/demo). Each stage is a plain call of the same CLI
you would type yourself (printed before it runs). The top floor: it uses both towers, the GPT side
(train, eval) and the GSN side (gsn_experiments.demo).

  run     print a stage's command line, then run that script's main on it
  main    the three stages, and a JSON summary
"""
import argparse
import json
import os
import shlex
import sys
import time

import common
import data
import eval as ev
import gsn_experiments
import train


def run(module, argv):
    print(f"\n$ python {module.__name__}.py {shlex.join(argv)}", flush=True)
    return module.main(argv)


@common.cli
def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/demo")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="a much smaller version (seconds; for tests)")
    args = p.parse_args(argv)
    out, seed, q = args.out, str(args.seed), args.quick
    t0 = time.time()
    summary = {}
    sft_dir, gsn_dir = os.path.join(out, "sft"), os.path.join(out, "gsn")
    losses = ["topr", "reinforce", "sft_pos"]
    rl_dirs = [os.path.join(out, f"rl_{name}") for name in losses]

    # ---- 1. SFT on the shortcut task: the question's cue word ("left" / "now") gives the operation away,
    #         except in rare conflict problems, where the verb decides
    print(f"[demo 1/3] SFT on the shortcut task (elapsed {time.time() - t0:.0f}s)", flush=True)
    sft_args = ["sft", "--shortcut", "--out", sft_dir, "--seed", seed]
    if q:
        sft_args += ["--max-iters", "30", "--n-layer", "1", "--n-embd", "32", "--n-head", "2", "--sft-examples", "300",
                     "--val-examples", "32", "--eval-problems", "8", "--eval-k", "2", "--warmup", "5",
                     "--max-new-tokens", "12", "--eval-interval", "30"]
    else:  # the calibrated base's recipe at 2/3 of its budget: right on normal problems, mostly wrong on conflict
        sft_args += ["--eval-problems", "256", "--eval-k", "4", "--max-iters", "800", "--batch-size", "32",
                     "--sft-conflict-frac", str(data.CALIBRATED_SFT_CONFLICT_FRAC)]
    summary["sft"] = run(train, sft_args)

    # ---- 2. RL as in the paper: ONE dataset sampled from the SFT policy, one pass over it, the same data for
    #         topr, reinforce and sft_pos (c = 0; conflict problems are half the prompts)
    print(f"\n[demo 2/3] RL: topr vs reinforce vs sft_pos (elapsed {time.time() - t0:.0f}s)", flush=True)
    rl_common = ["rl", "--shortcut", "--init", os.path.join(sft_dir, "ckpt.pt"), "--seed", seed, "--iterations", "1",
                 "--baseline", "0", "--eval-every", "1"]
    if q:
        rl_common += ["--prompts", "4", "--k", "4", "--epochs", "2", "--batch-size", "8", "--micro-batch", "8",
                      "--eval-problems", "4", "--eval-k", "2", "--max-new-tokens", "8"]
    else:
        rl_common += ["--prompts", "128", "--k", "8", "--epochs", "1", "--batch-size", "64", "--micro-batch", "64",
                      "--lr", "1e-4", "--eval-problems", "400", "--eval-k", "4"]
    for name, d in zip(losses, rl_dirs):
        run(train, rl_common + ["--loss", name, "--out", d])
    summary["rl"] = run(ev, ["compare", *rl_dirs, "--labels", *losses, "--out", os.path.join(out, "rl.png"),
                                   "--title", "shortcut task: one dataset of 1,024 samples, one pass, c = 0"])

    # ---- 3. GSN
    print(f"\n[demo 3/3] GSN (elapsed {time.time() - t0:.0f}s)", flush=True)
    summary["gsn"] = gsn_experiments.demo(gsn_dir, seed=args.seed, quick=q)

    print(f"\n===== demo done in {time.time() - t0:.0f}s; everything is under {out}/ =====")
    print(json.dumps(summary, indent=1, default=str))
    return summary


if __name__ == "__main__":
    sys.exit(0 if main() is not None else 1)
