"""
gsn_experiments.py -- the GSN figures and the experiments of RESULTS.md, one command each, on top of gsn.py
(the paper's concept: the model, its training, sampling and inpainting) and parzen.py (how a chain is
scored). Each experiment trains and/or scores several models and writes a table and figures.

  python gsn_experiments.py figures --ckpt runs/gsn/ckpt.pt      its chains and inpainting, beside the checkpoint
  python gsn_experiments.py report --ckpt runs/gsn/ckpt.pt [--dae-ckpt runs/dae/ckpt.pt]
        Parzen log-likelihood table, chain and inpainting figures of one or more checkpoints
  python gsn_experiments.py experiment      deep GSN vs walkback DAE vs DAE, equal compute (~30 CPU-minutes)
  python gsn_experiments.py curve           Parzen against training budget; a stopped curve continues
  python gsn_experiments.py errorbars       the curve's GSN and DAE: seeds x chains per budget, error bars by source

  one_per_class, tile, save_image, save_rows,              the figures (grey PNG): a row per chain, or
    chain_figure, INPAINT_SHOWN, inpaint_figure, figures   one per inpainted digit
  report, add_report_args, report_from_args    Parzen table: each model's chain, then (unless --no-references)
                                               the reference rows, as many centres as a chain has means: the
                                               first training images, k-means centroids of the training
                                               images, independent-pixel samples (parzen.reference_sets)
  EXPERIMENT, step_flops, equal_compute_steps, run_experiment   equal compute: deep GSN vs walkback DAE vs DAE
  CURVE, CURVE_SEED2_UNITS, train_to, run_curve, curve_report   Parzen against training budget
  ERRORBAR_MODELS, score_chains, run_errorbars, saved_points,   seeds x chains per budget, the error bar by
    check_settings, score_references, errorbars_report          source (parzen.error_components)
  DEMO_MODELS, DEMO_CLAIM, DEMO, demo, demo_figure          demo.py's GSN stage: one claim with an interval
  add_run_args, main                                       the command line

The GSN tower's top: imports gsn, parzen (and common) only, never the GPT side (tests/test_layers.py).
"""
import argparse
import glob
import json
import math
import os
import shutil
import time

import numpy as np
import torch

import common
import gsn
import parzen
from common import UserError

# -----------------------------------------------------------------------------
# Figures: chains and inpainting of one model (`gsn_experiments.py figures`, `report` and the demo)

def one_per_class(X, y, seed=2):
    """[C]: the first test digit of each class 0-9 after shuffling with numpy seed 2."""
    perm = np.random.RandomState(seed).permutation(len(y))
    return X[[perm[np.nonzero(y[perm] == c)[0][0]] for c in range(10) if (y == c).any()]]


def tile(frames, rows, cols, pad=1):
    """(rows*cols, 784) -> one (rows*29-1, cols*29-1) image, with thin grey gaps."""
    frames = np.asarray(frames, dtype=np.float32).reshape(rows, cols, 28, 28)
    out = np.full((rows * (28 + pad) - pad, cols * (28 + pad) - pad), 0.5, np.float32)
    for r in range(rows):
        for c in range(cols):
            out[r * (28 + pad):r * (28 + pad) + 28, c * (28 + pad):c * (28 + pad) + 28] = frames[r, c]
    return out


def save_image(path, img):
    """Grey-level 8-bit PNG (4x smaller than matplotlib's RGBA imsave; Pillow comes with matplotlib),
    written whole or not at all (common.atomic_write)."""
    from PIL import Image
    png = Image.fromarray((np.clip(img, 0, 1) * 255).round().astype(np.uint8))
    common.atomic_write(path, lambda f: png.save(f, format="PNG", optimize=True), binary=True)


def save_rows(path, frames):
    """(T, C, 784) frames -> one image, a row per chain C, time running left to right."""
    T, C = frames.shape[:2]
    save_image(path, tile(np.asarray(frames).transpose(1, 0, 2).reshape(-1, 784), C, T))


def chain_figure(model, starts, path, n_steps=60, seed=0):
    """Each row: one chain, its clean start digit, then n_steps - 1 consecutive means (sample_chain)."""
    torch.manual_seed(seed)
    chains = gsn.sample_chain(model, len(starts), n_steps - 1, start=starts).numpy()       # (T, C, 784)
    save_rows(path, np.concatenate([np.asarray(starts)[None], chains], 0))


INPAINT_SHOWN = [0, 1, 2, 3, 5, 10, 20, 30, 40, 49]  # the start, then the means after these steps


def inpaint_figure(model, digits, path, seed=0):
    """Each row: the true digit, then the chain with the right half clamped ([C]: free half starts as
    U(0,1) noise, 49 steps) at INPAINT_SHOWN."""
    torch.manual_seed(seed)
    x = torch.as_tensor(digits)
    steps = gsn.inpaint(model, x, gsn.right_half_mask(len(x)), n_steps=INPAINT_SHOWN[-1]).numpy()
    save_rows(path, np.concatenate([x.numpy()[None], steps[INPAINT_SHOWN]], 0))


def figures(ckpt, out=None, data_spec=None, device=None):
    """out/samples.png (10 chains from validation digits, 29 means each: chain_figure) and out/inpainting.png
    (inpaint_figure) of a gsn.py checkpoint, on the digits it was trained with (data_spec None: its --data and
    --n-train). out None: the checkpoint's folder. Returns the two paths."""
    model, cfg, _ = gsn.load_model(ckpt, device)
    _, valid, test, test_y = gsn.load_data(data_spec or cfg.data, n_train=cfg.n_train)
    out = out or os.path.dirname(os.path.abspath(ckpt))
    common.make_out_dir(out)
    paths = os.path.join(out, "samples.png"), os.path.join(out, "inpainting.png")
    chain_figure(model, valid[:10], paths[0], n_steps=30)
    inpaint_figure(model, one_per_class(test, test_y), paths[1])
    print(f"wrote {paths[0]}, {paths[1]}")
    return paths


# -----------------------------------------------------------------------------
# The report: Parzen table and figures of one or more checkpoints (`gsn_experiments.py report`, and
# the last stage of `experiment` and of every `curve` point)
#
# Protocol ([C]'s likelihood_estimation_parzen.py): for each model, ONE chain of n_samples (10,000)
# consecutive steps started from the first held-out validation digit corrupted by salt-and-pepper noise (as [C], which
# starts from test_X[0]; a validation digit keeps every test image out of the Parzen centres), all
# training noise on, no burn-in, recording the means p(X|H). Parzen sigma is chosen on the 1000
# held-out validation images (never trained on) from parzen.GSN_SIGMAS, as the GAN paper's code does; the test
# log-likelihood +- standard error is reported at that sigma and at [C]'s fixed sigma = 0.2.
# The reference rows (parzen.reference_sets: the first training images, k-means centroids, independent pixels;
# as many as the chain's means) are scored the same way.
# Next to every Parzen number: the mean squared distance from a test image to its nearest centre (no sigma).

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
                f"{len(test)} test images, mean +- standard error; nearest sq. distance: mean over the test images of "
                f"the squared distance to the nearest centre (no sigma)")
    print(protocol, flush=True)
    rows = []

    def score(name, samples, note, **extra):
        t0 = time.time()
        r = parzen.parzen_evaluate(torch.as_tensor(samples), valid, test, parzen.GSN_SIGMAS)
        r.update(name=name, note=note, n_samples=len(samples), parzen_s=round(time.time() - t0, 1), **extra)
        rows.append(r)
        print(f"  {name}: log-lik {r['ll']:.1f} +- {r['se']:.1f} (sigma {r['sigma']:.3f}); "
              f"{r['ll_fixed']:.1f} +- {r['se_fixed']:.1f} at sigma 0.2; nearest sq. distance {r['nearest']:.2f}", flush=True)

    for name, model, cfg, ckpt in models:
        step = ckpt["step"]
        print(f"[{name}] sampling a {n_samples}-step chain ...", flush=True)
        t0 = time.time()
        torch.manual_seed(seed)
        s = gsn.sample_chain(model, 1, n_samples, start=torch.as_tensor(valid[:1]))[:, 0]    # (n_samples, 784)
        t_chain = time.time() - t0
        chain_figure(model, valid[:8], os.path.join(out, f"{name}-chains.png"), seed=seed)
        inpaint_figure(model, one_per_class(test, test_y), os.path.join(out, f"{name}-inpainting.png"), seed=seed)
        if len(s) >= 400:  # [C]'s figure: the first 400 consecutive means, 20 x 20
            save_image(os.path.join(out, f"{name}-chain400.png"), tile(s[:400].numpy(), 20, 20))
        desc = f"{cfg.model} K={cfg.layers} h={cfg.hidden} walkbacks={cfg.walkbacks} {cfg.optimizer} steps={step}"
        train_s = (train_seconds or {}).get(name)  # None (JSON null) when the report did not train it
        score(name, s, desc, chain_s=round(t_chain, 1), step=step,
              epochs=round(step * cfg.batch_size / len(train_X), 2),
              train_s=None if train_s is None else round(train_s, 1))
    if references:
        for name, centres, note in parzen.reference_sets(train_X, n_samples, seed):
            score(name, centres, note)
    lines = ["| model | Parzen log-lik (tuned sigma) | sigma | log-lik at sigma=0.2 | nearest sq. distance | training | setting |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        tr = "-"
        if "step" in r:
            took = "" if r["train_s"] is None else f", {r['train_s']:.0f} s"
            tr = f"{r['step']} steps ({r['epochs']} ep{took})"
        lines.append(f"| {r['name']} | {r['ll']:.1f} +- {r['se']:.1f} | {r['sigma']:.3f} | "
                     f"{r['ll_fixed']:.1f} +- {r['se_fixed']:.1f} | {r['nearest']:.2f} +- {r['nearest_se']:.2f} | "
                     f"{tr} | {r['note']} |")
    table = "\n".join(lines)
    print(table)
    common.atomic_write(os.path.join(out, "results.md"), table + "\n\n" + protocol + "\n")
    common.atomic_write(os.path.join(out, "results.json"),
                        json.dumps({"data": data_spec, "seed": seed, "protocol": protocol, "rows": rows}, indent=1))
    print(json.dumps({"gsn_parzen": [{k: r[k] for k in ("name", "ll", "se", "sigma", "ll_fixed", "se_fixed", "nearest")}
                                     for r in rows]}))
    return rows


def add_report_args(p):
    """The flags of `gsn_experiments.py report` (report_from_args runs it)."""
    p.add_argument("--ckpt", nargs="+", required=True, help="one or more gsn.py checkpoints (name=path allowed)")
    p.add_argument("--dae-ckpt", default=None, help="one more checkpoint, scored and drawn as the others, named dae-no-walkback")
    p.add_argument("--data", type=gsn.data_flag, default=None, help="override the data the first checkpoint was trained on")
    p.add_argument("--out", default=None, help="figures/results folder (default: the first ckpt's folder)")
    p.add_argument("--n-samples", type=common.positive, default=10000, help="consecutive chain means used as Parzen centres")
    p.add_argument("--seed", type=int, default=1)
    common.add_device_arg(p)
    p.add_argument("--threads", type=common.positive, default=None, help="torch.set_num_threads")
    p.add_argument("--no-references", action="store_true", help="skip the real-images, k-means and pixel rows")


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
# DAE/1000 x 5 = 5 x 1.57M, x 1 = 1.57M (equal_compute_steps from the GSN's 3600, rounded to tens).
EXPERIMENT = [
    ("gsn2-500", dict(model="gsn", layers=2, hidden=500, max_steps=3600)),
    ("dae-walkback-1000", dict(model="dae", hidden=1000, walkbacks=5, max_steps=2360)),
    ("dae-no-walkback-1000", dict(model="dae", hidden=1000, walkbacks=1, max_steps=11800)),
]


def step_flops(settings):
    """Matmul FLOPs of one training step of GSNConfig.for_model(**settings) (gsn.train_flops)."""
    cfg = gsn.GSNConfig.for_model(**settings)
    return gsn.train_flops([784] + [cfg.hidden] * cfg.layers, cfg.walkbacks, cfg.batch_size)


def equal_compute_steps(settings, ref_settings, ref_steps):
    """The steps that give the model of `settings` the matmul FLOPs of ref_steps steps of ref_settings'
    (EXPERIMENT's rule: a DAE without walkback gets 5x the steps of the 5-walkback one)."""
    return max(1, round(ref_steps * step_flops(ref_settings) / step_flops(settings)))


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


def train_to(settings, seed, steps, run_out, u, a):
    """Start or continue the run in run_out (GSNConfig.for_model(**settings) with a's --data, --n-train and
    --device) up to `steps` steps, and keep a copy as run_out/ckpt_<u>.pt (the next point resumes from
    ckpt.pt). Returns (the copy's path, training CPU seconds of this call: time.process_time)."""
    last = os.path.join(run_out, "ckpt.pt")
    if os.path.exists(last) and gsn.read_checkpoint(last)[0]["step"] > steps:
        raise UserError(f"{last} is past {steps} steps: a point before it was deleted; delete the run folder")
    cfg = gsn.GSNConfig.for_model(**settings, data=a.data, seed=seed, max_steps=steps, n_train=a.n_train)
    t0 = time.process_time()
    gsn.train(cfg, run_out, resume=os.path.exists(last), device=a.device, quiet=True)
    took = time.process_time() - t0
    ckpt = os.path.join(run_out, f"ckpt_{u}.pt")
    os.replace(last, ckpt)
    with open(ckpt, "rb") as src:
        common.atomic_write(last, lambda f: shutil.copyfileobj(src, f), binary=True)
    return ckpt, took


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
                ckpt, took = train_to(settings, seed, steps, run_out, u, a)
                cpu += took
                refs = os.path.join(a.out, "references.json")
                r = report([(f"{name}-s{seed}-{u}", ckpt)], os.path.join(run_out, f"report_{u}"), data_spec=a.data,
                           seed=a.seed, device=a.device, n_samples=a.parzen_samples, references=not os.path.exists(refs))
                if len(r) > 1:  # the reference rows: scored at the first point only (references.json)
                    common.atomic_write(refs, json.dumps(r[1:]))
                rows.append(dict(model=name, seed=seed, units=u, steps=steps, cpu_s=round(cpu, 3),
                                 **{k: r[0][k] for k in ("ll", "se", "sigma", "ll_fixed", "se_fixed", "nearest")}))
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
    the seeds at each budget; error bar: parzen.seeds_mean_se (seed and test-set terms, as parzen.error_components)."""
    plt = common.pyplot()
    points = {}
    for r in rows:
        if "model" in r:
            points.setdefault((r["model"], r["units"]), []).append(r)
    lines = ["| model | units | steps | seeds | CPU-min (mean) | Parzen, tuned sigma | Parzen at sigma = 0.2 | nearest sq. distance |",
             "|---|---|---|---|---|---|---|---|"]
    stats = {}
    for (model, u), rs in points.items():
        n = len(rs)
        cell = {key: parzen.seeds_mean_se([r[key] for r in rs], [r[se_key] for r in rs])[:2]
                for key, se_key in (("ll", "se"), ("ll_fixed", "se_fixed"))}
        stats[model, u] = (float(np.mean([r["cpu_s"] for r in rs])) / 60, cell)
        near = [r["nearest"] for r in rs if "nearest" in r]  # points written before it was measured lack it
        lines.append(f"| {model} | {u} | {rs[0]['steps']} | {n} | {stats[model, u][0]:.1f} | "
                     f"{cell['ll'][0]:.1f} +- {cell['ll'][1]:.1f} | {cell['ll_fixed'][0]:.1f} +- {cell['ll_fixed'][1]:.1f} | "
                     f"{f'{np.mean(near):.2f}' if len(near) == n else '-'} |")
    refs = [r for r in rows if r.get("reference")]
    for r in refs:
        near = f"{r['nearest']:.2f}" if "nearest" in r else "-"
        lines.append(f"| *reference:* {r['name']} | | | | | {r['ll']:.1f} +- {r['se']:.1f} | "
                     f"{r['ll_fixed']:.1f} +- {r['se_fixed']:.1f} | {near} |")
    table = "\n".join(lines)
    print(table)
    common.atomic_write(os.path.join(out, "curve.md"), table + "\n")
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, key, title in zip(axes, ("ll", "ll_fixed"), ("sigma tuned on validation", "sigma = 0.2")):
        for model in dict.fromkeys(m for m, _ in points):
            us = sorted(u for m, u in points if m == model)
            ax.errorbar([stats[model, u][0] for u in us], [stats[model, u][1][key][0] for u in us],
                        yerr=[stats[model, u][1][key][1] for u in us], marker="o", ms=3, capsize=2, label=model)
        for r, ls in zip(refs, ("--", "-.", ":")):  # real images, k-means centroids, independent pixels
            ax.axhline(r[key], color="gray", ls=ls, lw=1, label=r["name"])
        ax.set_xscale("log", base=2)
        ax.set_xlabel("training CPU-minutes (one core)")
        ax.set_title(f"Parzen log-likelihood, {title}", fontsize=10)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("test log-likelihood (nats)")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    common.save_figure(fig, os.path.join(out, "curve.png"))


# -----------------------------------------------------------------------------
# Error bars: a curve point is one training seed and one chain, and its +- is the test-set standard error
# only, while two seeds (or two chains) of one model can differ by far more. Here each budget gets S seeds
# x C chains, and the error bar of their mean is split into its three sources.

ERRORBAR_MODELS = {name: (settings, unit) for name, settings, unit, _ in CURVE
                   if name in ("gsn2-500", "dae-walkback-1000")}  # the curve's deep GSN and walkback DAE


def score_chains(ckpt, valid, test, n_samples, chains, chain_seed, figure=None):
    """The report's protocol, `chains` times on one checkpoint: chain c is the noise seed chain_seed + c
    (chain 0 with chain_seed 1 is the chain `report` scores). Returns ([per-chain summary dicts], (chains,
    n_test) log-likelihoods at each chain's tuned sigma). figure: a path for chain 0's first 400 means."""
    model = gsn.load_model(ckpt)[0]
    rows, lls = [], []
    for c in range(chains):
        t0 = time.process_time()
        torch.manual_seed(chain_seed + c)
        s = gsn.sample_chain(model, 1, n_samples, start=torch.as_tensor(valid[:1]))[:, 0]
        if figure and c == 0 and len(s) >= 400:
            save_image(figure, tile(s[:400].numpy(), 20, 20))
        r = parzen.parzen_evaluate(s, valid, test, parzen.GSN_SIGMAS, per_image=True)
        lls.append(r.pop("ll_images"))
        rows.append(dict(r, chain_seed=chain_seed + c, eval_cpu_s=round(time.process_time() - t0, 1)))
    return rows, np.stack(lls)


def run_errorbars(a):
    """Train each of a.models (ERRORBAR_MODELS) with each of a.seeds, evaluating a copy of the checkpoint at
    each of a.units budget units (one run per model and seed, continued from point to point: train_to) with
    a.chains independent chains (score_chains); then, if a.models is every model, the reference rows
    (score_references; once, after the models) and the table, JSON and figure of errorbars_report. Budgets
    run smallest first over all seeds, so a stopped run has whole budgets; finished points are read back
    from <run>/point_<u>.json and .npy, each with the flags that made it (check_settings: other flags in the same
    --out are refused at the start). A point's CPU time counts its run's training from the start, whichever
    call's --units saved the points before it. Returns the table's rows (with a subset of the models: the points)."""
    for flag, vals in (("--seeds", a.seeds), ("--units", a.units), ("--models", a.models)):
        if len(set(vals)) < len(vals):
            raise UserError(f"{flag} lists a value twice: {' '.join(map(str, vals))}")
    common.make_out_dir(a.out)
    train_X, valid, test, _ = gsn.load_data(a.data, n_train=a.n_train)
    if len(train_X) < a.parzen_samples:  # k-means would fail only after every model has trained
        what = f"--n-train {a.n_train}" if a.n_train is not None else f"--data {a.data}"
        raise UserError(f"--parzen-samples {a.parzen_samples} needs as many training images for the reference rows "
                        f"(real images, k-means centroids); {what} gives {len(train_X)}")
    # the flags that decide a point's numbers, stored with it and with the reference rows: before any training,
    # a point or reference saved in this --out under other flags is refused (it would mix into one table)
    flags = dict(data=os.path.normpath(a.data), n_train=a.n_train, budget_scale=a.budget_scale,
                 parzen_samples=a.parzen_samples, chains=a.chains, chain_seed=a.chain_seed)
    ref_flags = {k: flags[k] for k in ("data", "n_train", "parzen_samples", "chain_seed")}
    refs_path = os.path.join(a.out, "references.json")
    if os.path.exists(refs_path):
        with open(refs_path) as f:
            for r in json.load(f):
                check_settings(refs_path, r.get("settings"), ref_flags)
    for seed in a.seeds:
        for name in a.models:
            for path in saved_points(os.path.join(a.out, f"{name}-s{seed}")).values():
                with open(path) as f:
                    check_settings(path, json.load(f).get("settings"), flags)
    points = []
    for u in sorted(a.units):
        for seed in a.seeds:
            for name in a.models:
                settings, unit = ERRORBAR_MODELS[name]
                run_out = os.path.join(a.out, f"{name}-s{seed}")
                path = os.path.join(run_out, f"point_{u}")
                if not os.path.exists(path + ".json"):
                    steps = max(1, round(u * unit * a.budget_scale))
                    # the run continues from its last point, whichever call's --units saved it: its CPU time counts
                    saved = saved_points(run_out)
                    earlier = [v for v in saved if v < u]
                    cpu = 0.0
                    if earlier:
                        with open(saved[max(earlier)]) as f:
                            cpu = json.load(f)["cpu_s"]
                    ckpt, took = train_to(settings, seed, steps, run_out, u, a)
                    chains, ll = score_chains(ckpt, valid, test, a.parzen_samples, a.chains, a.chain_seed,
                                              figure=os.path.join(run_out, f"chain400_{u}.png"))
                    common.atomic_write(path + ".npy", lambda f: np.save(f, ll), binary=True)
                    common.atomic_write(path + ".json", json.dumps(dict(model=name, seed=seed, units=u, steps=steps,
                                                                        cpu_s=round(cpu + took, 3), chains=chains,
                                                                        settings=flags)))
                    print(f"[errorbars {time.strftime('%H:%M:%S')}] {name} seed {seed}: {u} units = {steps} steps, "
                          f"{(cpu + took) / 60:.1f} CPU-min; Parzen of its {a.chains} chains: "
                          + " ".join(f"{c['ll']:.1f}" for c in chains), flush=True)
                with open(path + ".json") as f:
                    points.append(dict(json.load(f), ll=np.load(path + ".npy")))
    if set(a.models) != set(ERRORBAR_MODELS):  # one process per model: the call with all of them writes the table
        print(f"[errorbars] {len(points)} points of {' '.join(a.models)}; the table: the same command with every model")
        return points
    # after the models: a run stopped early has its model points first
    refs = score_references(refs_path, train_X, valid, test, a.parzen_samples, a.chain_seed, ref_flags)
    return errorbars_report(points, refs, a.out)


def saved_points(run_out):
    """{units: path} of the points saved in one run folder (<run_out>/point_<units>.json), whatever --units saved them."""
    return {int(os.path.basename(p)[len("point_"):-len(".json")]): p
            for p in glob.glob(os.path.join(glob.escape(run_out), "point_*.json"))}


def check_settings(path, saved, settings):
    """A one-line UserError naming the first flag whose value in `saved` (the settings stored in path) is not
    this call's (`settings`). A file written before settings were stored (saved None) is not checked."""
    for key, want in settings.items():
        if saved is not None and key in saved and saved[key] != want:
            flag = "--" + key.replace("_", "-")
            value = lambda v: f"no {flag}" if v is None else f"{flag} {v}"
            raise UserError(f"{path}: saved with {value(saved[key])}, asked for {value(want)}; "
                            f"use another --out or the same flag")


def score_references(path, train_X, valid, test, n, seed, settings):
    """The reference rows (reference_sets, n centres each) scored by parzen_evaluate, once: read back from
    path (JSON) when it exists. settings: the flags they were made with, stored in each row (check_settings)."""
    if not os.path.exists(path):
        refs = []
        for name, centres, note in parzen.reference_sets(train_X, n, seed):
            refs.append(dict(parzen.parzen_evaluate(torch.as_tensor(centres), valid, test, parzen.GSN_SIGMAS), name=name, note=note,
                             settings=settings))
            print(f"[errorbars] reference {name}: Parzen {refs[-1]['ll']:.1f} +- {refs[-1]['se']:.1f}, "
                  f"nearest sq. distance {refs[-1]['nearest']:.2f}", flush=True)
        common.atomic_write(path, json.dumps(refs, indent=1))
    with open(path) as f:
        return json.load(f)


def errorbars_report(points, refs, out):
    """Table (<out>/errorbars.md), JSON (errorbars.json) and figure (errorbars.png) of run_errorbars' points:
    per model and budget the pooled mean and error_components; per budget the gap between the first two
    models (gap_components); the reference rows with their test-set s.e. Returns the table's rows."""
    plt = common.pyplot()
    fmt = lambda v, d=1: "n/a" if v is None else f"{v:.{d}f}"
    groups = {}
    for p in points:
        groups.setdefault((p["model"], p["units"]), []).append(p)
    rows, comps = [], {}
    lines = ["| model | units | steps | CPU-min | seeds x chains | Parzen (mean) | total s.e. | seed s.e. | chain s.e. | "
             "test s.e. | sd of one seed / one chain | nearest sq. distance |", "|---" * 12 + "|"]
    for (model, u), ps in groups.items():
        r, images = parzen.error_components(np.stack([p["ll"] for p in ps]))
        comps[model, u] = (r, images)
        near = [c["nearest"] for p in ps for c in p["chains"]]
        r.update(model=model, units=u, steps=ps[0]["steps"], cpu_min=float(np.mean([p["cpu_s"] for p in ps])) / 60,
                 seed_list=[p["seed"] for p in ps], nearest=float(np.mean(near)), nearest_sd=float(np.std(near)),
                 chain_ll=[[c["ll"] for c in p["chains"]] for p in ps], sigmas=[[c["sigma"] for c in p["chains"]] for p in ps])
        rows.append(r)
        lines.append(f"| {model} | {u} | {r['steps']} | {r['cpu_min']:.1f} | {r['seeds']} x {r['chains']} | {r['mean']:.1f} | "
                     f"{r['total']:.1f} | {fmt(r['seed'])} | {fmt(r['chain'])} | {r['test']:.1f} | "
                     f"{fmt(r['sd_seed'])} / {fmt(r['sd_chain'])} | {r['nearest']:.2f} (sd {r['nearest_sd']:.2f}) |")
    models = list(dict.fromkeys(m for m, _ in groups))
    gaps = []
    if len(models) >= 2:
        for u in sorted({u for _, u in groups}):
            if (models[0], u) in comps and (models[1], u) in comps:
                g = parzen.gap_components(comps[models[0], u], comps[models[1], u])
                g.update(units=u, name=f"{models[0]} - {models[1]}")
                gaps.append(g)
                lines.append(f"| *gap:* {g['name']} | {u} | | | | {g['mean']:+.1f} | {g['total']:.1f} | {fmt(g['seed'])} | "
                             f"{fmt(g['chain'])} | {g['test']:.1f} (paired) | | |")
    for r in refs:
        lines.append(f"| *reference:* {r['name']} | | | | | {r['ll']:.1f} | {r['se']:.1f} | | | {r['se']:.1f} | | "
                     f"{r['nearest']:.2f} |")
    table = "\n".join(lines)
    print(table)
    common.atomic_write(os.path.join(out, "errorbars.md"), table + "\n")
    common.atomic_write(os.path.join(out, "errorbars.json"), json.dumps({"rows": rows, "gaps": gaps, "references": refs},
                                                                        indent=1))
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    rng = np.random.RandomState(0)
    for k, model in enumerate(models):
        us = sorted(u for m, u in groups if m == model)
        for r in (r for r in rows if r["model"] == model):  # every chain: one dot, one marker per seed
            for j, lls in enumerate(r["chain_ll"]):
                x = math.log2(r["units"]) + 0.12 * (k - (len(models) - 1) / 2) + rng.uniform(-0.03, 0.03, len(lls))
                ax.scatter(x, lls, s=9, color=f"C{k}", alpha=0.5, marker="os^Dv"[j % 5], lw=0)
        x = [math.log2(u) + 0.12 * (k - (len(models) - 1) / 2) for u in us]
        ax.errorbar(x, [comps[model, u][0]["mean"] for u in us], yerr=[2 * comps[model, u][0]["total"] for u in us],
                    color=f"C{k}", marker="_", ms=14, capsize=3, lw=1.5, label=f"{model}: mean +- 2 total s.e.")
    us = sorted({u for _, u in groups})
    ax.set_xticks([math.log2(u) for u in us], [str(u) for u in us])
    ax.set_xlabel("budget units (8 = the equal-compute experiment's steps)")
    ax.set_ylabel("Parzen test log-likelihood (nats)")
    ax.set_title("each dot: one chain (marker: training seed)", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    common.save_figure(fig, os.path.join(out, "errorbars.png"))
    return rows


# -----------------------------------------------------------------------------
# The end-to-end demo's GSN stage (demo.py): one claim with an interval, in about a CPU-minute
#
# The claim of the equal-compute experiment (RESULTS: +443 and +282 nats in two seeds, ~7 CPU-minutes per
# model): the walkback DAE beats the DAE without walkback at equal matmul FLOPs. Here at 1/8 of that
# budget (the curve's first unit: 295 walkback steps; the DAE without walkback gets equal_compute_steps of
# them, 5x), on 10,000 training digits, and a smaller Parzen protocol than report's: per model C chains of
# 2,000 means (not one of 10,000), sigma tuned on the 1,000 validation digits as in report, and each chain
# pair scored on its own 1,000 test digits (not all 10,000 for one chain).

DEMO_MODELS = [("dae-walkback", dict(model="dae", hidden=1000, walkbacks=5)),
               ("dae-no-walkback", dict(model="dae", hidden=1000, walkbacks=1))]  # the claim: first - second
DEMO_CLAIM = "walkback DAE > DAE without walkback at equal compute (Parzen, nats)"
DEMO = dict(n_train=10000, steps=295, chains=5, chain_steps=2000, test_per_chain=1000)
DEMO_QUICK = dict(n_train=200, hidden=16, steps=4, chains=3, chain_steps=50, test_per_chain=100)  # tests
DEMO_FIGURE = (200, 20)  # chains.png: every chain's first 200 means, 20 of them (every 10th)


def demo(out, seed=0, quick=False):
    """The end-to-end demo's GSN stage: trains the DEMO_MODELS at equal compute (training seed `seed`),
    scores C chains of each (score_chains), and gives the gap's t-based 95% interval over the C chain pairs
    and its verdict (common.t_interval, common.verdict). Writes out/chains.png (each model's C chains side by
    side) and out/inpainting.png (the walkback DAE). quick=True: a seconds-long toy run of the same steps.
    Returns a summary dict: verdicts (rows of the demo's verdict table), Parzen per model and chain, steps,
    seconds (wall) and cpu_seconds (time.process_time, every thread) per part."""
    p = DEMO_QUICK if quick else DEMO
    C, T = p["chains"], p["test_per_chain"]
    common.make_out_dir(out)
    wall, cpu = {}, {}

    def took(part, t0, c0):
        wall[part], cpu[part] = round(time.time() - t0, 1), round(time.process_time() - c0, 1)
        return time.time(), time.process_time()

    t, c = start = time.time(), time.process_time()
    _, valid, test, test_y = gsn.load_data("procedural", n_train=p["n_train"])  # made the first time, then cached
    t, c = took("data", t, c)
    settings = [(name, dict(s, hidden=p.get("hidden", s["hidden"]))) for name, s in DEMO_MODELS]
    steps = {name: equal_compute_steps(s, settings[0][1], p["steps"]) for name, s in settings}
    ckpts = {}
    for name, s in settings:
        run_out = os.path.join(out, name)
        argv = ["--model", s["model"], "--hidden", str(s["hidden"]), "--walkbacks", str(s["walkbacks"]),
                "--max-steps", str(steps[name]), "--n-train", str(p["n_train"]), "--seed", str(seed), "--out", run_out]
        print(f"$ python gsn.py {' '.join(argv)}", flush=True)
        a = gsn.parse_args(argv)
        gsn.train(gsn.config_from_args(a), run_out, device=a.device)
        ckpts[name] = os.path.join(run_out, "ckpt.pt")
    t, c = took("train", t, c)

    # Chain pair i: chain seed 1 + i in both models, scored on test block i in both (paired). The interval
    # covers what varies between the pairs: the chains' noise and which test digits score them, for ONE
    # training seed of each model. It does not cover training seeds, which move one model's score by 40-400
    # nats in RESULTS' experiment: a "holds" here is about these two trained models.
    blocks = np.random.RandomState(seed).permutation(len(test))[:C * T].reshape(C, T)
    ll = {}
    for name, _ in settings:
        ll[name] = [score_chains(ckpts[name], valid, test[blocks[i]], p["chain_steps"], 1, 1 + i)[0][0]["ll"]
                    for i in range(C)]
    (wb, wb_ll), (nowb, nowb_ll) = ll.items()
    gaps = [a - b for a, b in zip(wb_ll, nowb_ll)]
    mean, half = common.t_interval(gaps)
    verdicts = [{"claim": DEMO_CLAIM, "value": mean, "half": half, "n": C, "unit": "chains (one training seed)",
                 "verdict": common.verdict(mean, half)}]
    t, c = took("chains_parzen", t, c)

    # the figure: the scored chains again (same seeds, so the same means), every model's C chains one row each
    n_steps, shown = DEMO_FIGURE if not quick else (p["chain_steps"], DEMO_FIGURE[1])
    panels = []
    for name, s in settings:
        model = gsn.load_model(ckpts[name])[0]
        rows = []
        for i in range(C):
            torch.manual_seed(1 + i)
            rows.append(gsn.sample_chain(model, 1, n_steps, start=torch.as_tensor(valid[:1]))[::n_steps // shown][:shown, 0])
        title = (f"{name} ({steps[name]} steps): Parzen {np.mean(ll[name]):.0f} nats; a row per chain, its "
                 f"first {n_steps} means, every {n_steps // shown}")
        panels.append((title, torch.stack(rows).numpy()))
        if name == wb:
            inpaint_figure(model, one_per_class(test, test_y), os.path.join(out, "inpainting.png"))
    figure = os.path.join(out, "chains.png")
    demo_figure(panels, figure)
    took("figures", t, c)
    took("total", *start)

    print(f"Parzen log-likelihood (nats) per chain pair: {C} chains of {p['chain_steps']} means per model, sigma tuned "
          f"on {len(valid)} validation digits, each pair on its own {T} test digits")
    for i in range(C):
        print(f"  chain {i} (seed {1 + i}): {wb} {wb_ll[i]:.1f}, {nowb} {nowb_ll[i]:.1f}, gap {gaps[i]:+.1f}")
    print(f"{DEMO_CLAIM}: {mean:+.1f} +- {half:.1f} (95%, t, {C} chain pairs of one training seed): "
          f"{verdicts[0]['verdict']}")
    note = (f"the interval is over {C} chain pairs (each its own noise seed and test digits) of ONE training seed per "
            f"model, not over training seeds; RESULTS' equal-compute experiment (+443 and +282 nats) gives the walkback DAE "
            f"{dict(EXPERIMENT)['dae-walkback-1000']['max_steps']} steps, here {p['steps']}")
    print(f"({note})\nseconds: {wall}; CPU seconds: {cpu}", flush=True)
    return {"verdicts": verdicts, "note": note, "parzen": {name: float(np.mean(v)) for name, v in ll.items()}, "parzen_chains": ll,
            "gaps": gaps, "steps": steps, "hidden": settings[0][1]["hidden"], "n_train": p["n_train"],
            "chain_steps": p["chain_steps"], "test_per_chain": T, "seconds": wall, "cpu_seconds": cpu,
            "threads": torch.get_num_threads(), "ckpts": ckpts, "chains": figure,
            "inpainting": os.path.join(out, "inpainting.png")}


def demo_figure(panels, path):
    """panels: [(title, (rows, cols, 784) means)] -> one grey PNG (save_image: a few times smaller than
    matplotlib's RGBA), the panels one above the other."""
    plt = common.pyplot()
    fig, axes = plt.subplots(len(panels), 1, figsize=(7.4, 1.9 * len(panels)), squeeze=False)
    for ax, (title, frames) in zip(axes[:, 0], panels):
        ax.imshow(tile(frames.reshape(-1, 784), *frames.shape[:2]), cmap="gray", vmin=0, vmax=1,
                  interpolation="nearest")
        ax.set_title(title, fontsize=7)
        ax.axis("off")
    fig.tight_layout()
    fig.set_dpi(80)
    fig.canvas.draw()
    save_image(path, np.asarray(fig.canvas.buffer_rgba())[..., 0] / 255.0)  # grey: every channel is equal
    plt.close(fig)


# -----------------------------------------------------------------------------
# CLI

def add_run_args(p, out, seed=True):
    """The flags of `experiment`, `curve` and `errorbars` (seed=False: it has --seeds); each model's own
    settings are EXPERIMENT's and CURVE's."""
    p.add_argument("--data", type=gsn.data_flag, default=gsn.GSNConfig.data, help="'procedural' or a folder with MNIST IDX files")
    if seed:
        p.add_argument("--seed", type=int, default=gsn.GSNConfig.seed, help="every model's training seed (curve: and seed + 1)")
    p.add_argument("--out", default=out, help="output folder (every run, point, table and figure)")
    common.add_device_arg(p)
    p.add_argument("--threads", type=common.positive, default=None, help="torch.set_num_threads")
    p.add_argument("--budget-scale", type=common.positive_float, default=1.0, help="multiply every model's steps")
    p.add_argument("--parzen-samples", type=common.positive, default=10000, help="chain means used as Parzen centres")


@common.cli
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)

    p = sub.add_parser("figures", help="samples.png and inpainting.png of a gsn.py checkpoint")
    p.add_argument("--ckpt", required=True, help="a gsn.py checkpoint")
    p.add_argument("--out", default=None, help="folder of the two PNGs (default: the checkpoint's)")
    p.add_argument("--data", type=gsn.data_flag, default=None, help="override the data the checkpoint was trained on")
    common.add_device_arg(p)
    p.add_argument("--threads", type=common.positive, default=None, help="torch.set_num_threads")
    p.set_defaults(func=lambda a: figures(a.ckpt, a.out, data_spec=a.data, device=a.device))

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

    p = sub.add_parser("errorbars", help="the curve's deep GSN and walkback DAE: seeds x chains per budget, error bars by source")
    add_run_args(p, "runs/gsn-errorbars", seed=False)
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3], help="training seeds, one run per model and seed")
    p.add_argument("--units", type=common.positive, nargs="+", default=[8, 16, 32, 64],
                   help="budgets to score, in the curve's units (1/8 of the experiment's steps; each run continues)")
    p.add_argument("--chains", type=common.positive, default=5,
                   help="independent chains scored per checkpoint (noise seeds --chain-seed, +1, ...)")
    p.add_argument("--chain-seed", type=int, default=1, help="the first chain's noise seed (1: the chain `report` scores)")
    p.add_argument("--models", nargs="+", choices=list(ERRORBAR_MODELS), default=list(ERRORBAR_MODELS),
                   help="which models (one process per model can share a machine; a last call with all writes the table)")
    p.add_argument("--n-train", type=common.positive, default=None, help="use only this many training images (quick runs)")
    p.set_defaults(func=run_errorbars)

    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    return args.func(args)


if __name__ == "__main__":
    main()
