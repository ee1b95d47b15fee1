"""
gsn_experiments.py -- the GSN experiments of RESULTS.md, one command each, on top of gsn.py (the paper's
concept: the model, its training, sampling and Parzen estimate). Each command trains and/or scores
several models and writes a table and figures.

  python gsn_experiments.py report --ckpt runs/gsn/ckpt.pt [--dae-ckpt runs/dae/ckpt.pt]
        Parzen log-likelihood table, chain and inpainting figures of one or more checkpoints
  python gsn_experiments.py experiment      deep GSN vs walkback DAE vs DAE, equal compute (~30 CPU-minutes)
  python gsn_experiments.py curve           Parzen against training budget; a stopped curve continues

  GSN_SIGMAS, report, add_report_args, report_from_args    the scoring protocol, its table and flags
  EXPERIMENT, run_experiment                               equal compute: deep GSN vs walkback DAE vs DAE
  CURVE, CURVE_SEED2_UNITS, run_curve, curve_report        Parzen against training budget
  demo                                                     demo.py's GSN stage
  add_run_args, main                                       the command line

The GSN tower's top: imports gsn (and common) only, never the GPT side (tests/test_layers.py).
"""
import argparse
import json
import math
import os
import shutil
import time

import numpy as np
import torch

import common
import gsn

# -----------------------------------------------------------------------------
# The report: Parzen table and figures of one or more checkpoints (`gsn_experiments.py report`, and
# the last stage of `experiment` and of every `curve` point)
#
# Protocol ([C]'s likelihood_estimation_parzen.py): for each model, ONE chain of n_samples (10,000)
# consecutive steps started from the first held-out validation digit corrupted by salt-and-pepper noise (as [C], which
# starts from test_X[0]; a validation digit keeps every test image out of the Parzen centres), all
# training noise on, no burn-in, recording the means p(X|H). Parzen sigma is chosen on the 1000
# held-out validation images (never trained on) from GSN_SIGMAS, as the GAN paper does; the test
# log-likelihood +- standard error is reported at that sigma and at [C]'s fixed sigma = 0.2.
# Reference rows (real training images, independent pixels) are scored the same way.

GSN_SIGMAS = [float(s) for s in np.logspace(-1.3, -0.3, 21)]  # 0.05 .. 0.5, fine grid


def report(runs, out, *, data_spec=None, seed=1, device=None, n_samples=10000, train_seconds=None,
           references=True):
    """Parzen table for runs = [(name, ckpt path), ...] plus the reference rows; per model the chain,
    inpainting and 400-mean figures under out/. data_spec None: the first checkpoint's data. Writes
    out/results.md and out/results.json, prints the table and one JSON line; returns the rows."""
    models = [(name, *gsn.load_model(path, device)) for name, path in runs]  # a bad checkpoint fails first
    data_spec = data_spec or models[0][2].data
    common.make_out_dir(out)
    train_X, valid, test, test_y = gsn.load_data(data_spec)
    protocol = (f"Parzen centres: one chain of {n_samples} consecutive means p(X|H) per model, started from the "
                f"first held-out validation digit corrupted by salt-and-pepper noise, all noise on, no burn-in; "
                f"sigma tuned on {len(valid)} held-out validation images over logspace(-1.3,-0.3,21), also sigma=0.2; "
                f"{len(test)} test images, mean +- standard error")
    print(protocol, flush=True)
    rows = []

    def score(name, samples, note, **extra):
        t0 = time.time()
        r = gsn.parzen_evaluate(torch.as_tensor(samples), valid, test, GSN_SIGMAS)
        r.update(name=name, note=note, n_samples=len(samples), parzen_s=round(time.time() - t0, 1), **extra)
        rows.append(r)
        print(f"  {name}: log-lik {r['ll']:.1f} +- {r['se']:.1f} (sigma {r['sigma']:.3f}); "
              f"{r['ll_fixed']:.1f} +- {r['se_fixed']:.1f} at sigma 0.2", flush=True)

    for name, model, cfg, ckpt in models:
        step = ckpt["step"]
        print(f"[{name}] sampling a {n_samples}-step chain ...", flush=True)
        t0 = time.time()
        torch.manual_seed(seed)
        s = gsn.sample_chain(model, 1, n_samples, start=torch.as_tensor(valid[:1]))[:, 0]    # (n_samples, 784)
        t_chain = time.time() - t0
        gsn.chain_figure(model, valid[:8], os.path.join(out, f"{name}-chains.png"), seed=seed)
        gsn.inpaint_figure(model, gsn.one_per_class(test, test_y), os.path.join(out, f"{name}-inpainting.png"), seed=seed)
        if len(s) >= 400:  # [C]'s figure: the first 400 consecutive means, 20 x 20
            gsn.save_image(os.path.join(out, f"{name}-chain400.png"), gsn.tile(s[:400].numpy(), 20, 20))
        desc = f"{cfg.model} K={cfg.layers} h={cfg.hidden} walkbacks={cfg.walkbacks} {cfg.optimizer} steps={step}"
        train_s = (train_seconds or {}).get(name)  # None (JSON null) when the report did not train it
        score(name, s, desc, chain_s=round(t_chain, 1), step=step,
              epochs=round(step * cfg.batch_size / len(train_X), 2),
              train_s=None if train_s is None else round(train_s, 1))
    if references:
        rng = np.random.RandomState(seed)
        real = train_X[:n_samples]
        score("real training images", real, f"{len(real)} training images as centres (upper reference)")
        score("independent pixels", (rng.rand(n_samples, 784) < train_X.mean(0)).astype(np.float32),
              "Bernoulli(training pixel means) samples")
    lines = ["| model | Parzen log-lik (tuned sigma) | sigma | log-lik at sigma=0.2 | training | setting |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        tr = "-"
        if "step" in r:
            took = "" if r["train_s"] is None else f", {r['train_s']:.0f} s"
            tr = f"{r['step']} steps ({r['epochs']} ep{took})"
        lines.append(f"| {r['name']} | {r['ll']:.1f} +- {r['se']:.1f} | {r['sigma']:.3f} | "
                     f"{r['ll_fixed']:.1f} +- {r['se_fixed']:.1f} | {tr} | {r['note']} |")
    table = "\n".join(lines)
    print(table)
    common.atomic_write(os.path.join(out, "results.md"), table + "\n\n" + protocol + "\n")
    common.atomic_write(os.path.join(out, "results.json"),
                        json.dumps({"data": data_spec, "seed": seed, "protocol": protocol, "rows": rows}, indent=1))
    print(json.dumps({"gsn_parzen": [{k: r[k] for k in ("name", "ll", "se", "sigma", "ll_fixed", "se_fixed")}
                                     for r in rows]}))
    return rows


def add_report_args(p):
    """The flags of `gsn_experiments.py report` (report_from_args runs it)."""
    p.add_argument("--ckpt", nargs="+", required=True, help="one or more gsn.py checkpoints (name=path allowed)")
    p.add_argument("--dae-ckpt", default=None, help="a DAE trained without walkback, scored as a reference row")
    p.add_argument("--data", type=gsn.data_flag, default=None, help="override the data the first checkpoint was trained on")
    p.add_argument("--out", default=None, help="figures/results folder (default: the first ckpt's folder)")
    p.add_argument("--n-samples", type=common.positive, default=10000, help="consecutive chain means used as Parzen centres")
    p.add_argument("--seed", type=int, default=1)
    common.add_device_arg(p)
    p.add_argument("--threads", type=common.positive, default=None, help="torch.set_num_threads")
    p.add_argument("--no-references", action="store_true", help="skip the real-images and pixel rows")


def report_from_args(args):
    """Run report() for flags declared by add_report_args. A run is named by `name=path` or its folder."""
    runs = []
    for c in args.ckpt + ([f"dae-no-walkback={args.dae_ckpt}"] if args.dae_ckpt else []):
        name, _, path = c.rpartition("=")
        runs.append((name or os.path.basename(os.path.dirname(os.path.abspath(path))), path))
    return report(runs, args.out or os.path.dirname(os.path.abspath(runs[0][1])), data_spec=args.data,
                  seed=args.seed, device=args.device, n_samples=args.n_samples, references=not args.no_references)


# -----------------------------------------------------------------------------
# The experiment: deep GSN vs walkback DAE vs DAE without walkback, equal CPU minutes each

# name, GSNConfig.for_model settings (on top of the model's defaults). Budgets are fixed step counts
# (reproducible, unlike wall time on a shared machine) chosen for EQUAL matmul FLOPs, i.e. about equal CPU
# time (~8 one-core minutes each): per step, GSN-2/500 x 4 walkbacks = 4 x 1.28M weights touched,
# DAE/1000 x 5 = 5 x 1.57M, x 1 = 1.57M.
EXPERIMENT = [
    ("gsn2-500", dict(model="gsn", layers=2, hidden=500, max_steps=3600)),
    ("dae-walkback-1000", dict(model="dae", hidden=1000, walkbacks=5, max_steps=2360)),
    ("dae-no-walkback-1000", dict(model="dae", hidden=1000, walkbacks=1, max_steps=11800)),
]


def run_experiment(a):
    """Train the three models (EXPERIMENT, steps x --budget-scale), then report() on them: writes
    <out>/results.json, results.md and the figures."""
    runs, seconds = [], {}
    for name, settings in EXPERIMENT:
        run_out = os.path.join(a.out, name)
        cfg = gsn.GSNConfig.for_model(**settings, data=a.data, seed=a.seed)
        cfg.max_steps = max(1, round(cfg.max_steps * a.budget_scale))  # e.g. 0.1 for a quick look
        print(f"=== experiment: training {name} ===", flush=True)
        t0 = time.time()
        gsn.train(cfg, run_out, device=a.device)
        runs.append((name, os.path.join(run_out, "ckpt.pt")))
        seconds[name] = time.time() - t0
    return report(runs, a.out, data_spec=a.data, seed=a.seed, device=a.device, n_samples=a.parzen_samples,
                  train_seconds=seconds)


# -----------------------------------------------------------------------------
# The curve: Parzen log-likelihood against training budget. One point per model says little when
# the models learn at different speeds: does the deep GSN lose, or only learn slower?

# name, GSNConfig.for_model settings, steps per budget unit (1/8 of the model's `experiment` budget, ~0.4
# CPU-minutes), the longest budget in units (64 = 8 times the `experiment` budget); checkpoints at 1, 2, 4, ... units
CURVE = [
    ("gsn2-500", dict(model="gsn"), 450, 64),
    ("dae-walkback-1000", dict(model="dae", hidden=1000, walkbacks=5), 295, 64),
    # [C]'s optimiser: SGD lr 0.25, momentum 0.5 (dampening 0.5), lr x 0.995 per epoch. Real-valued
    # targets, tanh and hidden noise sigma 2 are already the GSN defaults; 1500 units would cost 4x.
    ("gsn2-500-original", dict(model="gsn", optimizer="sgd"), 450, 16),
]
CURVE_SEED2_UNITS = 4  # the second seed stops here (the first three checkpoints)


def run_curve(a):
    """Train each CURVE model once, evaluating a copy of the checkpoint at 1, 2, 4, 8, ... budget units
    (the run continues from that checkpoint: one run gives the curve). Seed a.seed goes to the model's
    longest budget, seed a.seed + 1 to CURVE_SEED2_UNITS. Training CPU time (time.process_time) is summed up
    to each point. Finished points are read back from <out>/<run>/point_<u>.json, so a stopped curve
    continues where it was."""
    rows = []
    for name, settings, unit, longest in CURVE:
        for seed, last in ((a.seed, longest), (a.seed + 1, CURVE_SEED2_UNITS)):
            units = [2 ** i for i in range(int(math.log2(last)) + 1)]
            run_out = os.path.join(a.out, f"{name}-s{seed}")
            cpu = 0.0
            for u in units:
                point = os.path.join(run_out, f"point_{u}.json")
                if os.path.exists(point):
                    with open(point) as f:
                        rows.append(json.load(f))
                    cpu = rows[-1]["cpu_s"]
                    continue
                steps = max(1, round(u * unit * a.budget_scale))
                cfg = gsn.GSNConfig.for_model(**settings, data=a.data, seed=seed, max_steps=steps, n_train=a.n_train)
                t0 = time.process_time()
                gsn.train(cfg, run_out, resume=os.path.exists(os.path.join(run_out, "ckpt.pt")),
                          device=a.device, quiet=True, figures=False)
                cpu += time.process_time() - t0
                ckpt = os.path.join(run_out, f"ckpt_{u}.pt")
                os.replace(os.path.join(run_out, "ckpt.pt"), ckpt)  # the next point resumes from a copy
                with open(ckpt, "rb") as src:
                    common.atomic_write(os.path.join(run_out, "ckpt.pt"), lambda f: shutil.copyfileobj(src, f), binary=True)
                refs = os.path.join(a.out, "references.json")
                r = report([(f"{name}-s{seed}-{u}", ckpt)], os.path.join(run_out, f"report_{u}"), data_spec=a.data,
                           seed=a.seed, device=a.device, n_samples=a.parzen_samples, references=not os.path.exists(refs))
                if len(r) > 1:  # the reference rows (real training images, independent pixels), once
                    common.atomic_write(refs, json.dumps(r[1:]))
                rows.append(dict(model=name, seed=seed, units=u, steps=steps, cpu_s=round(cpu, 3),
                                 **{k: r[0][k] for k in ("ll", "se", "sigma", "ll_fixed", "se_fixed")}))
                common.atomic_write(point, json.dumps(rows[-1]))  # whole or absent: a stopped curve reads it back
                print(f"[curve {time.strftime('%H:%M:%S')}] {name} seed {seed}: {u} units = {steps} steps, "
                      f"{cpu / 60:.1f} CPU-min, Parzen {rows[-1]['ll']:.1f} +- {rows[-1]['se']:.1f}", flush=True)
    with open(os.path.join(a.out, "references.json")) as f:
        rows += [dict(r, reference=True) for r in json.load(f)]
    common.atomic_write(os.path.join(a.out, "curve.json"), json.dumps(rows, indent=1))
    curve_report(rows, a.out)
    return rows


def curve_report(rows, out):
    """Table and figure: Parzen (tuned sigma, and sigma = 0.2) against training CPU-minutes, mean over
    the seeds at each budget; error bar = sqrt(seed variance / n + mean test-image variance / n)."""
    plt = common.pyplot()
    points = {}
    for r in rows:
        if "model" in r:
            points.setdefault((r["model"], r["units"]), []).append(r)
    lines = ["| model | units | steps | seeds | CPU-min (mean) | Parzen, tuned sigma | Parzen at sigma = 0.2 |",
             "|---|---|---|---|---|---|---|"]
    stats = {}
    for (model, u), rs in points.items():
        n = len(rs)
        cell = {}
        for key, se_key in (("ll", "se"), ("ll_fixed", "se_fixed")):
            vals = [r[key] for r in rs]
            var_seed = float(np.var(vals, ddof=1)) if n > 1 else 0.0
            cell[key] = (float(np.mean(vals)), math.sqrt(var_seed / n + np.mean([r[se_key] ** 2 for r in rs]) / n))
        stats[model, u] = (float(np.mean([r["cpu_s"] for r in rs])) / 60, cell)
        lines.append(f"| {model} | {u} | {rs[0]['steps']} | {n} | {stats[model, u][0]:.1f} | "
                     f"{cell['ll'][0]:.1f} +- {cell['ll'][1]:.1f} | {cell['ll_fixed'][0]:.1f} +- {cell['ll_fixed'][1]:.1f} |")
    refs = [r for r in rows if r.get("reference")]
    lines += [f"| *reference:* {r['name']} | | | | | {r['ll']:.1f} +- {r['se']:.1f} | {r['ll_fixed']:.1f} +- {r['se_fixed']:.1f} |"
              for r in refs]
    table = "\n".join(lines)
    print(table)
    common.atomic_write(os.path.join(out, "curve.md"), table + "\n")
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, key, title in zip(axes, ("ll", "ll_fixed"), ("sigma tuned on validation", "sigma = 0.2")):
        for model in dict.fromkeys(m for m, _ in points):
            us = sorted(u for m, u in points if m == model)
            ax.errorbar([stats[model, u][0] for u in us], [stats[model, u][1][key][0] for u in us],
                        yerr=[stats[model, u][1][key][1] for u in us], marker="o", ms=3, capsize=2, label=model)
        for r, ls in zip(refs, ("--", ":")):
            ax.axhline(r[key], color="gray", ls=ls, lw=1, label=r["name"])
        ax.set_xscale("log", base=2)
        ax.set_xlabel("training CPU-minutes (one core)")
        ax.set_title(f"Parzen log-likelihood, {title}", fontsize=10)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("test log-likelihood (nats)")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    common.atomic_write(os.path.join(out, "curve.png"), lambda f: fig.savefig(f, format="png", dpi=80), binary=True)
    plt.close(fig)


# -----------------------------------------------------------------------------
# The end-to-end demo's GSN stage (demo.py)

def demo(out, seed=0, quick=False):
    """The end-to-end demo's GSN stage: the default deep GSN for 800 steps (~1.5-2 CPU minutes; digits
    already recognisable), then its chain and inpainting figures. quick=True: a seconds-long toy run.
    Returns a small summary dict."""
    argv = ["--out", out, "--seed", str(seed), "--max-steps", "800"]
    if quick:
        argv = ["--out", out, "--seed", str(seed), "--max-steps", "20", "--hidden", "32", "--n-train", "200"]
    print(f"$ python gsn.py {' '.join(argv)}", flush=True)
    a = gsn.parse_args(argv)
    t0 = time.time()
    _, losses = gsn.train(gsn.config_from_args(a), out, device=a.device)
    return {"steps": len(losses), "loss_first": losses[0], "loss_last": losses[-1],
            "train_seconds": round(time.time() - t0, 1), "ckpt": os.path.join(out, "ckpt.pt"),
            "samples": os.path.join(out, "samples.png"), "inpainting": os.path.join(out, "inpainting.png")}


# -----------------------------------------------------------------------------
# CLI

def add_run_args(p, out):
    """The flags of `experiment` and `curve`; each model's own settings are EXPERIMENT's and CURVE's."""
    p.add_argument("--data", type=gsn.data_flag, default=gsn.GSNConfig.data, help="'procedural' or a folder with MNIST IDX files")
    p.add_argument("--seed", type=int, default=gsn.GSNConfig.seed, help="every model's training seed (curve: and seed + 1)")
    p.add_argument("--out", default=out)
    common.add_device_arg(p)
    p.add_argument("--threads", type=common.positive, default=None, help="torch.set_num_threads")
    p.add_argument("--budget-scale", type=common.positive_float, default=1.0, help="multiply every model's steps")
    p.add_argument("--parzen-samples", type=common.positive, default=10000, help="chain means used as Parzen centres")


@common.cli
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)

    p = sub.add_parser("report", help="Parzen log-likelihood, chain and inpainting figures of gsn.py checkpoints")
    add_report_args(p)
    p.set_defaults(func=report_from_args)

    p = sub.add_parser("experiment", help="train gsn vs walkback dae vs dae, then the Parzen table")
    add_run_args(p, "runs/gsn-experiment")
    p.set_defaults(func=run_experiment)

    p = sub.add_parser("curve", help="Parzen against training budget: gsn vs walkback dae vs gsn with sgd")
    add_run_args(p, "runs/gsn-curve")
    p.add_argument("--n-train", type=common.positive, default=None, help="use only this many training images (quick runs)")
    p.set_defaults(func=run_curve)

    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    return args.func(args)


if __name__ == "__main__":
    main()
