"""
experiments.py -- the TOPR experiments of RESULTS.md, one command each, fixed seeds: python experiments.py NAME.
The code behind each RESULTS.md section is one file of topr_experiments/ (its docstring names the section):

  NAME         section   file (topr_experiments/)   what it runs
  overlap      SFT       sft_overlap.py             how often a held-out test problem's worked solution is a
                                                    training problem's (no model)
  offpolicy    (a)       a_offpolicy.py             strongly off-policy: ONE generated dataset, 6 epochs over it,
                                                    topr vs reinforce vs tis vs ppo vs sft_pos (constant c = 0)
  iterated     (b, d)    bd_iterated.py             3 iterations of sample-then-train, group-mean baseline, topr
                                                    vs sft_pos vs reinforce, seeds 0 1 2, plus "continue SFT" on
                                                    worked solutions for the same number of optimizer samples
  baseline     (c)       c_baseline.py              topr with a constant baseline c: accuracy against the
                                                    effective positive fraction p_eff = p(1-c) / (1+c(1-2p))
  verifier     (e), (j)  ej_verifier.py             the SFT model trained as a generative verifier (topr vs
                                                    reinforce vs sft_pos); majority vs verifier-weighted majority
                                                    vs best-of-k; (j) --tasks shortcut: where majority voting is
                                                    systematically wrong
  onpolicy     (f)       f_onpolicy.py              on-policy, shortcut task vs default task: reinforce (= topr),
                                                    sft_pos, neg_only, group baseline, continued SFT; 3 seeds
                                                    (trains both bases); (f') its --length-norm and --optimizer
  gradnoise    (f')      f_onpolicy.py              the noise of each on-policy estimator on one rollout of each base
  stability    (g)       g_stability.py             off-policy on both tasks: ONE dataset, 8 epochs, topr, reinforce,
                                                    tis, ppo, sft_pos, neg_only (c = 0); seeds --seeds
  errors       (f, g)    g_stability.py             what the shortcut base (and each stability run) answers, per slice
  credit       (g)       g_stability.py             where the push lands: log pi per token group (operator, operands,
                                                    result)
  reuse        (h)       hi_reuse_composition.py    sample reuse at equal samples generated: E = 1, 2, 4, 8 epochs
                                                    per dataset
  composition  (i)       hi_reuse_composition.py    TOPR's p_eff by the baseline c and by curation, on (g)'s dataset
  regime       (k)       k_regime.py                the regime map: 4 SFT bases (headroom, conflict direction), one
                                                    dataset, 4 epochs, topr vs sft_pos vs tis vs reinforce (c = 0),
                                                    seeds --seeds
  onepass      (k)       k_regime.py                the paper's setting: one pass over 4x the samples, the same steps
  replicates   (k')      k_replicates.py            SFT seeds as replicates: 3 recipes x --base-seeds, topr vs sft_pos
                                                    x --seeds in --settings; the base as the unit of the interval
  peff         (k')      k_replicates.py            topr at matched effective positive fractions from the same bases
  tokencredit  (l)       l_tokencredit.py           where a negative's push lands: --credit first_error and prefix
  (shared)               runs.py                    starting a train.py run (skipped with --skip-done if finished),
                                                    the SFT bases of (f), the off-policy losses of (g)-(l), train.py
                                                    rl's first dataset (its seeds), tables and figures

(a)-(e) start from the SFT checkpoint --sft (default runs/sft/ckpt.pt, made by `python train.py sft --out
runs/sft`); (f)-(j) from the two bases of (f), which `onpolicy` trains (and any other command that needs a missing
one); (k)-(l) from the bases of k_regime.REGIME_BASES, trained when missing. Each run is a plain `train.py` call,
printed before it runs; results go under runs/exp_<name>/, the figure to figures/, and a markdown table to stdout
and runs/exp_<name>/table.md. This file: the command line (EXPERIMENTS: NAME -> function).
"""
import argparse
import os
import time

import common
import topr
from common import UserError
from topr_experiments import (a_offpolicy, bd_iterated, c_baseline, ej_verifier, f_onpolicy, g_stability,
                              hi_reuse_composition, k_regime, k_replicates, l_tokencredit, sft_overlap)
from topr_experiments.runs import OFF_LOSSES, ONPOLICY_BASES

SFT = "runs/sft/ckpt.pt"  # (a)-(e): the start, `python train.py sft --out runs/sft` (--sft)
SEEDS = [0, 1, 2]         # the RL seeds (--seeds)

EXPERIMENTS = {"offpolicy": a_offpolicy.exp_offpolicy, "iterated": bd_iterated.exp_iterated,
               "baseline": c_baseline.exp_baseline, "verifier": ej_verifier.exp_verifier,
               "onpolicy": f_onpolicy.exp_onpolicy, "gradnoise": f_onpolicy.exp_gradnoise,
               "errors": g_stability.exp_errors, "stability": g_stability.exp_stability,
               "reuse": hi_reuse_composition.exp_reuse, "composition": hi_reuse_composition.exp_composition,
               "credit": g_stability.exp_credit, "overlap": sft_overlap.exp_overlap, "regime": k_regime.exp_regime,
               "onepass": k_regime.exp_onepass, "tokencredit": l_tokencredit.exp_tokencredit,
               "replicates": k_replicates.exp_replicates, "peff": k_replicates.exp_peff}
# flag -> the commands that read it: anywhere else it is refused, not silently ignored
SCOPED_FLAGS = {"--methods": ["onpolicy", "stability"], "--length-norm": ["onpolicy", "stability"],
                "--optimizer": ["onpolicy", "stability"], "--bases": ["regime", "onepass", "tokencredit", "replicates", "peff"],
                "--base-seeds": ["replicates", "peff"], "--settings": ["replicates"],
                "--iterations": ["onpolicy"], "--lr": ["onpolicy"]}


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
                   help="the tasks, each with its own SFT base (onpolicy, gradnoise, stability, reuse, composition, "
                        "verifier, overlap; tokencredit: whether the default task is added)")
    p.add_argument("--seeds", type=int, nargs="+", default=SEEDS,
                   help="onpolicy, stability, reuse, regime, onepass, tokencredit, replicates, peff: RL seeds")
    p.add_argument("--base-seeds", type=int, nargs="+", default=k_replicates.BASE_SEEDS,
                   help="replicates, peff: the SFT seeds of each base's recipe (0: the base of regime)")
    p.add_argument("--settings", nargs="+", choices=list(k_replicates.SETTINGS), default=list(k_replicates.SETTINGS),
                   help="replicates: reuse (4 epochs over one dataset) and/or onepass (one pass over 4x the samples)")
    p.add_argument("--bases", nargs="+", choices=list(k_regime.REGIME_BASES), default=None,
                   help="regime, onepass, tokencredit, replicates, peff: only these SFT bases (default: regime all, "
                        "replicates and peff REPLICATE_BASES, the others ONEPASS_BASES)")
    p.add_argument("--iterations", type=common.positive, default=None,
                   help=f"onpolicy: on-policy steps per run (default {f_onpolicy.ONPOLICY_ITERATIONS}, RESULTS (f))")
    p.add_argument("--lr", type=common.positive_float, default=None,
                   help=f"onpolicy: learning rate, RL and sft_more (default {f_onpolicy.ONPOLICY_LR})")
    p.add_argument("--methods", nargs="+", choices=sorted(set(f_onpolicy.ONPOLICY_METHODS_ALL) | set(OFF_LOSSES)),
                   default=None, help="onpolicy, stability: only these methods (default: all of the experiment's)")
    p.add_argument("--length-norm", choices=topr.LENGTH_NORMS, default="sequence",
                   help="onpolicy, stability: train.py rl --length-norm (not 'sequence': run folders get a suffix)")
    p.add_argument("--optimizer", choices=["adamw", "sgd"], default="adamw",
                   help="onpolicy, stability: train.py rl --optimizer (sgd: no gradient clipping; "
                        "folders get a suffix)")
    args = p.parse_args(argv)
    for flag, names in SCOPED_FLAGS.items():
        dest = flag[2:].replace("-", "_")
        if args.name not in names and getattr(args, dest) != p.get_default(dest):
            raise UserError(f"{flag} applies to {', '.join(names)}, not {args.name}")
    needs_sft = args.name in ("offpolicy", "iterated", "baseline") or (args.name == "verifier"
                                                                       and "default" in args.tasks)
    if needs_sft and not os.path.isfile(args.sft):
        raise UserError(f"SFT checkpoint {args.sft} not found; make it with: python train.py sft --out runs/sft")
    allowed = {"onpolicy": f_onpolicy.ONPOLICY_METHODS_ALL, "stability": list(OFF_LOSSES)}.get(args.name)
    if args.methods and not set(args.methods) <= set(allowed):
        raise UserError(f"{args.name} --methods must be among {', '.join(allowed)}; got {' '.join(args.methods)}")
    if args.name == "onpolicy" and args.methods == ["sft_more"]:
        raise UserError("onpolicy --methods needs an RL method next to sft_more (its start row comes from one)")
    if args.name == "onpolicy":
        args.iterations = f_onpolicy.ONPOLICY_ITERATIONS if args.iterations is None else args.iterations
        args.lr = f_onpolicy.ONPOLICY_LR if args.lr is None else args.lr
    os.makedirs(args.figures, exist_ok=True)
    t0 = time.process_time()
    EXPERIMENTS[args.name](args)
    print(f"experiments.py {args.name}: {(time.process_time() - t0) / 60:.1f} CPU-minutes", flush=True)


if __name__ == "__main__":
    main()
