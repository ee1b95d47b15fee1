"""
eval.py -- evaluation and figures.

  python eval.py gpt --ckpt runs/sft/ckpt.pt      GPT accuracy: pass@1, maj@k, pass@k, invalid rate, greedy
      [--verifier runs/verifier/ckpt.pt]          ... and verifier accuracy, calibration, weighted voting
  python eval.py compare runs/a runs/b ...        one figure comparing RL runs (metrics.jsonl)
  python eval.py gsn --ckpt runs/gsn/ckpt.pt      GSN: Parzen log-likelihood, chain and inpainting figures
"""
import argparse
import collections
import json
import os
import sys

import torch

import data
from data import DataError
from model import completion_mask, get_device

# =============================================================================
# GPT evaluation (eval.py gpt) and run comparison (eval.py compare)
# =============================================================================

def decode_completions(tok, tokens):
    """Rows of generated ids -> (texts cut at the first EOS, lengths in tokens incl. EOS)."""
    mask = completion_mask(tokens, tok.eos_id)
    texts, lengths = [], []
    for row, m in zip(tokens.tolist(), mask.tolist()):
        ids = [t for t, keep in zip(row, m) if keep]
        lengths.append(len(ids))
        texts.append(tok.decode([t for t in ids if t != tok.eos_id]))
    return texts, lengths


def is_right(answer, problem):
    """Is an extracted answer (a number string, or None = invalid) the problem's answer?"""
    return answer is not None and data.reward(f"#### {answer}", problem.answer) > 0


def majority_vote(answers):
    """Most common valid answer (None = invalid, never wins); ties go to the answer seen first."""
    counts = collections.Counter(a for a in answers if a is not None)
    if not counts:
        return None
    best = max(counts.values())
    return next(a for a in answers if a is not None and counts[a] == best)


@torch.no_grad()
def sample_answers(model, tok, problems, k, temperature, max_new_tokens, generator, batch_prompts=64):
    """k completions per problem: (texts, lengths), both lists of lists [problem][sample]."""
    texts, lengths = [], []
    for s in range(0, len(problems), batch_prompts):
        chunk = problems[s:s + batch_prompts]
        prompts = [tok.encode(data.format_prompt(p.question)) for p in chunk]
        tokens, _ = model.generate(prompts, max_new_tokens, temperature=temperature, eos_id=tok.eos_id,
                                   num_samples=k, generator=generator, pad_id=tok.pad_id)
        t, n = decode_completions(tok, tokens.cpu())
        texts += [t[i * k:(i + 1) * k] for i in range(len(chunk))]
        lengths += [n[i * k:(i + 1) * k] for i in range(len(chunk))]
    return texts, lengths


def evaluate_gpt(model, tok, problems, k=8, temperature=1.0, max_new_tokens=48, seed=0, return_samples=False):
    """Held-out metrics: greedy accuracy; and from k samples per problem at `temperature`:
    pass@1 (mean correctness over samples), maj@k, pass@k, invalid rate, mean length (tokens).
    return_samples: also return the sampled texts [problem][sample]."""
    was_training = model.training
    model.eval()
    gen = torch.Generator(device=model.lm_head.weight.device).manual_seed(seed)
    greedy, _ = sample_answers(model, tok, problems, 1, 0.0, max_new_tokens, gen)
    sampled, lengths = sample_answers(model, tok, problems, k, temperature, max_new_tokens, gen)
    model.train(was_training)
    n = len(problems)
    correct = [[data.reward(t, p.answer) > 0 for t in ts] for ts, p in zip(sampled, problems)]
    answers = [[data.extract_answer(t) for t in ts] for ts in sampled]
    maj = [majority_vote(a) for a in answers]
    res = {
        "n": n, "k": k,
        "greedy": sum(data.reward(g[0], p.answer) > 0 for g, p in zip(greedy, problems)) / n,
        "pass@1": sum(sum(c) / k for c in correct) / n,
        f"maj@{k}": sum(is_right(m, p) for m, p in zip(maj, problems)) / n,
        f"pass@{k}": sum(any(c) for c in correct) / n,
        "invalid": sum(data.is_invalid(t) for ts in sampled for t in ts) / (n * k),
        "greedy_invalid": sum(data.is_invalid(g[0]) for g in greedy) / n,
        "mean_len": sum(sum(l) for l in lengths) / (n * k),
    }
    return (res, sampled) if return_samples else res


# -----------------------------------------------------------------------------
# Verifier-weighted voting (TOPR Sec. 5): k candidates per problem, each scored by the verifier's
# P(Yes | problem, candidate); the chosen answer is
#   majority:           the most frequent valid answer
#   weighted majority:  the valid answer with the largest SUM of P(Yes) over the candidates giving it
#   best-of-k:          the answer of the single candidate with the largest P(Yes) (may be invalid)
# An invalid candidate (no '#### N') never wins a vote; a problem whose k candidates are all invalid
# gets no answer (counted wrong).


def weighted_majority_vote(answers, weights):
    """The valid answer (not None) with the largest total weight; ties go to the answer seen first;
    None if every answer is invalid. With all weights equal it is majority_vote."""
    totals = {}
    for a, w in zip(answers, weights):
        if a is not None:
            totals[a] = totals.get(a, 0.0) + w  # dicts keep first-seen order: max() picks the first of a tie
    return max(totals, key=totals.get) if totals else None


def best_of(answers, weights):
    """The answer of the highest-weight candidate (the first one on a tie), invalid (None) or not."""
    return answers[max(range(len(answers)), key=lambda i: weights[i])]


@torch.no_grad()
def score_candidates(verifier, tok, problems, texts, batch=128):
    """P(Yes) of the verifier (restricted to Yes/No) for texts[problem][candidate]: same nesting."""
    from train import check_verify_context, verdict_logp
    was_training = verifier.training
    verifier.eval()
    flat = [(p, t) for p, ts in zip(problems, texts) for t in ts]
    prompts = [tok.encode(data.format_verify_prompt(p.question, t)) for p, t in flat]
    if prompts:
        check_verify_context(verifier, prompts)
    p_yes = []
    for s in range(0, len(prompts), batch):
        p_yes += verdict_logp(verifier, prompts[s:s + batch], data.verdict_ids(tok), tok.pad_id)[:, 0].exp().tolist()
    verifier.train(was_training)
    out, i = [], 0
    for ts in texts:
        out.append(p_yes[i:i + len(ts)])
        i += len(ts)
    return out


def verifier_metrics(problems, texts, p_yes, ks=None, bins=10):
    """Verifier quality and voting accuracy from K candidates per problem (texts) and their P(Yes).

    verifier_acc: fraction of candidates judged right by the verdict P(Yes) >= 0.5 (compare with
    1 - candidates_correct, the accuracy of always saying No); ece: expected calibration error of
    P(Yes) over `bins` equal-width bins; brier: mean (P(Yes) - correct)^2. For each k in ks (default
    1, 2, 4, ..., K): maj@k, weighted_maj@k, best_of@k, pass@k (any right: the ceiling) and the rate
    of invalid chosen answers, each averaged over the K // k disjoint groups of k candidates."""
    K = len(texts[0])
    ks = ks or sorted({2 ** i for i in range(K.bit_length()) if 2 ** i <= K} | {K})
    correct = [[data.reward(t, p.answer) > 0 for t in ts] for ts, p in zip(texts, problems)]
    answers = [[data.extract_answer(t) for t in ts] for ts in texts]
    flat_c = [c for cs in correct for c in cs]
    flat_p = [p for ps in p_yes for p in ps]
    N = len(flat_c)
    ece = 0.0
    for b in range(bins):
        idx = [i for i, p in enumerate(flat_p) if min(int(p * bins), bins - 1) == b]
        if idx:
            ece += len(idx) / N * abs(sum(flat_p[i] for i in idx) / len(idx) - sum(flat_c[i] for i in idx) / len(idx))
    right = [sum(flat_p[i] for i in range(N) if flat_c[i] == c) / max(1, sum(x == c for x in flat_c)) for c in (True, False)]
    res = {"n": len(problems), "K": K, "candidates_correct": sum(flat_c) / N,
           "verifier_acc": sum((p >= 0.5) == c for p, c in zip(flat_p, flat_c)) / N,
           "ece": ece, "brier": sum((p - c) ** 2 for p, c in zip(flat_p, flat_c)) / N,
           "p_yes_correct": right[0], "p_yes_wrong": right[1]}
    for k in ks:
        groups = [(p, a[g:g + k], w[g:g + k], c[g:g + k]) for p, a, w, c in zip(problems, answers, p_yes, correct)
                  for g in range(0, K - k + 1, k)]
        picks = {"maj": [majority_vote(a) for _, a, _, _ in groups],
                 "weighted_maj": [weighted_majority_vote(a, w) for _, a, w, _ in groups],
                 "best_of": [best_of(a, w) for _, a, w, _ in groups]}
        for name, chosen in picks.items():
            res[f"{name}@{k}"] = sum(is_right(a, g[0]) for a, g in zip(chosen, groups)) / len(groups)
            res[f"{name}_invalid@{k}"] = sum(a is None for a in chosen) / len(groups)
        res[f"pass@{k}"] = sum(any(c) for _, _, _, c in groups) / len(groups)
    return res


def cmd_gpt(args):
    from train import load_model, task_problems
    device = get_device(args.device)
    model, tok, ckpt = load_model(args.ckpt, device)
    problems = task_problems(args, args.n, args.seed, "test")
    res, texts = evaluate_gpt(model, tok, problems, k=args.k, temperature=args.temperature,
                              max_new_tokens=args.max_new_tokens, seed=args.seed, return_samples=True)
    if args.verifier:  # score the same k samples with the verifier
        verifier, vtok, _ = load_model(args.verifier, device)
        if vtok.name != tok.name:
            raise DataError(f"--verifier uses tokenizer {vtok.name!r}, --ckpt {tok.name!r}")
        res["verifier"] = verifier_metrics(problems, texts, score_candidates(verifier, tok, problems, texts))
    print(json.dumps({"ckpt": args.ckpt, "verifier_ckpt": args.verifier, **res}))
    print(f"\n{'metric':<16}value   ({res['n']} held-out problems, k={res['k']}, T={args.temperature})")
    for key, v in res.items():
        if key not in ("n", "k", "verifier"):
            print(f"{key:<16}{v:.4f}" if isinstance(v, float) else f"{key:<16}{v}")
    if args.verifier:
        print(verifier_table(res["verifier"]))
    return res


def verifier_table(v):
    """The verifier part of `eval.py gpt --verifier` as text: judgement quality, then voting against k."""
    lines = [f"\nverifier: accuracy {v['verifier_acc']:.4f} on {v['n'] * v['K']} candidates "
             f"({v['candidates_correct']:.4f} of them right; always-No scores {1 - v['candidates_correct']:.4f}) | "
             f"ECE {v['ece']:.4f} | Brier {v['brier']:.4f} | mean P(Yes): right {v['p_yes_correct']:.3f}, "
             f"wrong {v['p_yes_wrong']:.3f}",
             f"{'k':>4}{'majority':>10}{'weighted':>10}{'best-of-k':>11}{'pass@k':>8}{'invalid maj':>13}{'invalid best':>14}"]
    for k in sorted(int(key.split("@")[1]) for key in v if key.startswith("maj@")):
        lines.append(f"{k:>4}{v[f'maj@{k}']:>10.4f}{v[f'weighted_maj@{k}']:>10.4f}{v[f'best_of@{k}']:>11.4f}"
                     f"{v[f'pass@{k}']:>8.4f}{v[f'maj_invalid@{k}']:>13.4f}{v[f'best_of_invalid@{k}']:>14.4f}")
    return "\n".join(lines)


def add_gpt_parser(sub):
    p = sub.add_parser("gpt", help="held-out accuracy of a GPT checkpoint (and of verifier-weighted voting)")
    p.add_argument("--ckpt", required=True)
    p.add_argument("--verifier", default=None, help="a verifier checkpoint (train.py rl --task verify): score the k samples")
    p.add_argument("--n", type=int, default=512, help="held-out problems")
    p.add_argument("--k", type=int, default=8, help="samples per problem")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--max-new-tokens", type=int, default=48)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--steps", type=int, nargs="+", default=[1, 2])
    p.add_argument("--max-num", type=int, default=10)
    p.add_argument("--ops", default="+-")
    p.add_argument("--gsm8k", default=None, help="a GSM8K jsonl file to evaluate on instead")
    p.add_argument("--gsm8k-test", default=None)
    p.set_defaults(func=cmd_gpt)


def read_metrics(folder):
    path = os.path.join(folder, "metrics.jsonl")
    if not os.path.isfile(path):
        raise DataError(f"no metrics.jsonl in {folder}")
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def cmd_compare(args):
    """One figure: held-out pass@1, invalid rate, and mean log pi of positive / negative samples,
    against samples seen, one line per run (label = folder name, or --labels)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    labels = args.labels or [os.path.basename(os.path.normpath(r)) for r in args.runs]
    if len(labels) != len(args.runs):
        raise DataError(f"{len(args.labels)} labels for {len(args.runs)} runs")
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.6))
    summary = []
    for run, label in zip(args.runs, labels):
        rows = read_metrics(run)
        ev_rows = [r for r in rows if "test_pass@1" in r]
        st_rows = [r for r in rows if "logp_reward_neg" in r]
        if not ev_rows:
            raise DataError(f"{run}/metrics.jsonl has no evaluation rows (is it an RL run?)")
        x = [r["samples"] for r in ev_rows]
        (line,) = axes[0].plot(x, [r["test_pass@1"] for r in ev_rows], marker="o", ms=3, label=label)
        axes[1].plot(x, [r["test_invalid"] for r in ev_rows], marker="o", ms=3, color=line.get_color())
        xs = [r["samples"] for r in st_rows]
        axes[2].plot(xs, [r["logp_reward_pos"] for r in st_rows], color=line.get_color())
        axes[3].plot(xs, [r["logp_reward_neg"] for r in st_rows], color=line.get_color())
        summary.append(dict(run=label, start_pass1=ev_rows[0]["test_pass@1"], final_pass1=ev_rows[-1]["test_pass@1"],
                            final_greedy=ev_rows[-1]["test_greedy"], final_invalid=ev_rows[-1]["test_invalid"],
                            samples=x[-1]))
    for ax, title in zip(axes, ["held-out pass@1", "held-out invalid rate", "mean log pi, positive samples",
                                "mean log pi, negative samples"]):
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("samples seen")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    if args.title:
        fig.suptitle(args.title, fontsize=11)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    fig.savefig(args.out, dpi=80)
    print(f"wrote {args.out}")
    print(f"{'run':<24}{'pass@1 start':>14}{'pass@1 end':>12}{'greedy end':>12}{'invalid end':>13}{'samples':>9}")
    for s in summary:
        print(f"{s['run']:<24}{s['start_pass1']:>14.3f}{s['final_pass1']:>12.3f}{s['final_greedy']:>12.3f}"
              f"{s['final_invalid']:>13.3f}{s['samples']:>9d}")
    return summary


def add_compare_parser(sub):
    p = sub.add_parser("compare", help="one figure comparing RL runs")
    p.add_argument("runs", nargs="+", help="run folders (each with metrics.jsonl)")
    p.add_argument("--labels", nargs="+", default=None)
    p.add_argument("--title", default=None)
    p.add_argument("--out", default="runs/compare.png")
    p.set_defaults(func=cmd_compare)

# =============================================================================
# GSN evaluation (eval.py gsn) -- owned by the GSN work
# =============================================================================

# Protocol (DESIGN sec. 7, gsn-reference.md sec. 4): for each model, ONE chain of 10,000 consecutive
# steps started from the first held-out validation digit corrupted by salt-and-pepper noise (as [C],
# which starts from test_X[0]; we use a validation digit so no test image is a Parzen centre), all
# training noise on, no burn-in, recording the means p(X|H). Parzen sigma is chosen on the 1000
# held-out validation images (never trained on) from GSN_SIGMAS; test log-likelihood +- standard error
# is reported at that sigma and at [C]'s fixed sigma = 0.2. Reference rows are scored the same way.

GSN_SIGMAS = [float(s) for s in __import__("numpy").logspace(-1.3, -0.3, 21)]  # 0.05 .. 0.5, fine grid


def gsn_samples(model, start, n_samples, seed=0):
    """n_samples consecutive chain means of one chain started from `start` (a clean (784,) image)."""
    import gsn
    import torch
    torch.manual_seed(seed)
    return gsn.sample_chain(model, 1, n_samples, start=torch.as_tensor(start)[None])[:, 0]


def gsn_chain_figure(model, starts, path, n_steps=60, seed=0):
    """Several chains (one per row, its clean start digit first), n_steps consecutive means each."""
    import gsn
    import numpy as np
    import torch
    torch.manual_seed(seed)
    ch = gsn.sample_chain(model, len(starts), n_steps - 1, start=starts).numpy()           # (T, C, 784)
    grid = np.concatenate([np.asarray(starts)[None], ch], 0).transpose(1, 0, 2).reshape(-1, 784)
    gsn.save_image(path, gsn.tile(grid, len(starts), n_steps))


def gsn_inpaint_figure(model, images, path, seed=0):
    """Each row: the true digit, then the chain with the right half clamped ([C]: free half starts as
    U(0,1) noise, 49 steps): init and the means after 1, 2, 3, 5, 10, 20, 30, 40, 49 steps."""
    import gsn
    import numpy as np
    import torch
    torch.manual_seed(seed)
    x = torch.as_tensor(images)
    steps = gsn.inpaint(model, x, gsn.right_half_mask(len(x)), n_steps=49).numpy()
    keep = [0, 1, 2, 3, 5, 10, 20, 30, 40, 49]
    grid = np.concatenate([x.numpy()[None], steps[keep]], 0).transpose(1, 0, 2).reshape(-1, 784)
    gsn.save_image(path, gsn.tile(grid, len(x), len(keep) + 1))


def one_per_class(X, y, seed=2):
    """[C]: the first test digit of each class 0-9 after shuffling with numpy seed 2."""
    import numpy as np
    perm = np.random.RandomState(seed).permutation(len(y))
    return X[[perm[np.nonzero(y[perm] == c)[0][0]] for c in range(10) if (y == c).any()]]


def gsn_report(runs, out, data_spec="procedural", seed=1, device=None, n_samples=10000, train_seconds=None,
               references=True):
    """Parzen table for [(name, ckpt path), ...] plus the reference rows; chain, inpainting and sample
    figures per model under out/. Prints a readable table and one JSON line; returns the rows."""
    import json
    import os
    import time

    import numpy as np
    import torch

    import data
    import gsn
    os.makedirs(out, exist_ok=True)
    train_X, valid, test = gsn.load_data(data_spec)
    if data_spec == "procedural":
        test_y = data.load_digits("test")[1]
    else:
        test_y = data.load_mnist(data_spec)["test"][1]
    digits = one_per_class(test, test_y)
    rows = []
    protocol = (f"Parzen centres: one chain of {n_samples} consecutive means p(X|H) per model, started from the "
                f"first held-out validation digit corrupted by salt-and-pepper noise, all noise on, no burn-in; "
                f"sigma tuned on {len(valid)} held-out validation images over logspace(-1.3,-0.3,21), also sigma=0.2; "
                f"{len(test)} test images, mean +- standard error")
    print(protocol, flush=True)

    def score(name, samples, note, **extra):
        t0 = time.time()
        r = gsn.parzen_evaluate(torch.as_tensor(samples), valid, test, GSN_SIGMAS)
        r.update(name=name, note=note, n_samples=len(samples), parzen_s=round(time.time() - t0, 1), **extra)
        rows.append(r)
        print(f"  {name}: log-lik {r['ll']:.1f} +- {r['se']:.1f} (sigma {r['sigma']:.3f}); "
              f"{r['ll_fixed']:.1f} +- {r['se_fixed']:.1f} at sigma 0.2", flush=True)

    for name, ckpt in runs:
        model, cfg = gsn.load_model(ckpt, device)
        state = data.load_checkpoint(ckpt)
        print(f"[{name}] sampling a {n_samples}-step chain ...", flush=True)
        t0 = time.time()
        s = gsn_samples(model, valid[0], n_samples, seed=seed)
        t_chain = time.time() - t0
        gsn_chain_figure(model, valid[:8], os.path.join(out, f"{name}-chains.png"), seed=seed)
        gsn_inpaint_figure(model, digits, os.path.join(out, f"{name}-inpainting.png"), seed=seed)
        if len(s) >= 400:  # [C]'s figure: the first 400 consecutive means, 20 x 20
            gsn.save_image(os.path.join(out, f"{name}-chain400.png"), gsn.tile(s[:400].numpy(), 20, 20))
        desc = (f"{cfg['model']} K={cfg['layers']} h={cfg['hidden']} walkbacks={cfg['walkbacks']} "
                f"{cfg['optimizer']} steps={state['step']}")
        score(name, s, desc, chain_s=round(t_chain, 1), step=state["step"],
              epochs=round(state["step"] * cfg["batch_size"] / len(train_X), 2),
              train_s=round((train_seconds or {}).get(name, float("nan")), 1))
    if references:
        rng = np.random.RandomState(seed)
        real = train_X[:n_samples]
        score("real training images", real, f"{len(real)} training images as centres (upper reference)")
        means = train_X.mean(0)
        score("independent pixels", (rng.rand(n_samples, 784) < means).astype(np.float32),
              "Bernoulli(training pixel means) samples")
    # the readable table and one JSON line
    lines = ["| model | Parzen log-lik (tuned sigma) | sigma | log-lik at sigma=0.2 | training | setting |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        tr = f"{r['step']} steps ({r['epochs']} ep, {r['train_s']:.0f} s)" if "step" in r else "-"
        lines.append(f"| {r['name']} | {r['ll']:.1f} +- {r['se']:.1f} | {r['sigma']:.3f} | "
                     f"{r['ll_fixed']:.1f} +- {r['se_fixed']:.1f} | {tr} | {r['note']} |")
    table = "\n".join(lines)
    print(table)
    with open(os.path.join(out, "results.md"), "w") as f:
        f.write(table + "\n\n" + protocol + "\n")
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump({"data": data_spec, "seed": seed, "protocol": protocol, "rows": rows}, f, indent=1)
    print(json.dumps({"gsn_parzen": [{k: r[k] for k in ("name", "ll", "se", "sigma", "ll_fixed", "se_fixed")}
                                     for r in rows]}))
    return rows


def add_gsn_parser(sub):
    p = sub.add_parser("gsn", help="GSN: Parzen log-likelihood, chain and inpainting figures")
    p.add_argument("--ckpt", nargs="+", required=True, help="one or more gsn.py checkpoints (name=path allowed)")
    p.add_argument("--dae-ckpt", default=None, help="a DAE trained without walkback, scored as a reference row")
    p.add_argument("--data", default=None, help="override the data the first checkpoint was trained on")
    p.add_argument("--out", default=None, help="figures/results folder (default: the first ckpt's folder)")
    p.add_argument("--n-samples", type=int, default=10000, help="consecutive chain means used as Parzen centres")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--device", default=None)
    p.add_argument("--no-references", action="store_true", help="skip the real-images and pixel rows")
    p.set_defaults(func=cmd_gsn)


def cmd_gsn(args):
    import os

    import data
    if args.n_samples < 1:
        raise DataError(f"--n-samples must be >= 1, got {args.n_samples}")
    runs = []
    for c in args.ckpt + ([f"dae-no-walkback={args.dae_ckpt}"] if args.dae_ckpt else []):
        name, _, path = c.rpartition("=") if "=" in c else (None, None, c)
        runs.append((name or os.path.basename(os.path.dirname(os.path.abspath(path))), path))
    cfg = data.load_checkpoint(runs[0][1]).get("config")
    if not isinstance(cfg, dict):
        raise DataError(f"{runs[0][1]} is not a gsn.py checkpoint")
    out = args.out or os.path.dirname(os.path.abspath(runs[0][1]))
    gsn_report(runs, out, data_spec=args.data or cfg["data"], seed=args.seed, device=args.device,
               n_samples=args.n_samples, references=not args.no_references)

# =============================================================================

def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    for name, obj in list(globals().items()):
        if name.startswith("add_") and name.endswith("_parser"):
            obj(sub)  # each section registers its subcommand and sets func=
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (DataError, ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
