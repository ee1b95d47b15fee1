"""
eval.py -- GPT evaluation and the figure that compares RL runs (the GPT tower; GSN: gsn_experiments.py).

  python eval.py gpt --ckpt runs/sft/ckpt.pt      GPT accuracy: pass@1, maj@k, pass@k, invalid rate, greedy
      [--verifier runs/verifier/ckpt.pt]          ... and verifier accuracy, calibration, weighted voting
  python eval.py compare runs/a runs/b ...        one figure comparing RL runs (metrics.jsonl)

  1. load_gpt, check_fits, add_task_args (the task flags of train.py and eval.py; defaults: data.Task)
  2. Solver accuracy: sample_completions (the one sample-and-decode core, also train.py's rollouts, in the
     training precision: common.autocast), prompts_per_call (generate_bytes: how many prompts one generate call
     holds), decode_completions, sample_answers, evaluate_gpt, accuracy, by_slice, majority_vote, evaluate_solver
  3. The generative verifier: score_candidates (P(Yes)), weighted_majority_vote, best_of, verifier_metrics
  4. The command line: gpt, compare (read_metrics, verifier_table)
"""
import argparse
import collections
import json
import os

import torch

import common
import data
from common import UserError
from model import GPT, GPTConfig, completion_mask, verdict_logp


# -----------------------------------------------------------------------------
# 1. Checkpoints and the task flags

def load_gpt(path, device):
    """(model, tokenizer, checkpoint dict) from a checkpoint written by train.py. The model is in eval mode
    (dropout off): every caller samples from it or scores with it; one that trains it calls .train() itself."""
    ckpt = common.load_checkpoint(path, kind="gpt")
    model = GPT(GPTConfig(**ckpt["config"]))
    model.load_state_dict(ckpt["model"])
    return model.to(device).eval(), data.get_tokenizer(ckpt.get("tokenizer", "byte")), ckpt


def check_fits(model, prompts, max_new_tokens, what="a prompt"):
    """A clear error before any work (not a ValueError from the model mid-run) when the longest prompt
    plus max_new_tokens does not fit the model's context."""
    longest = max(len(p) for p in prompts)
    if longest + max_new_tokens > model.config.block_size:
        raise UserError(f"{what} has {longest} tokens (+ {max_new_tokens} to generate), more than the model's "
                        f"context ({model.config.block_size}); lower --max-new-tokens")


def add_task_args(p):
    """The task's flags (defaults: data.Task), the same for train.py sft / rl and eval.py gpt."""
    t = data.Task()
    p.add_argument("--steps", type=common.positive, nargs="+", default=list(t.steps), help="operations per problem")
    p.add_argument("--max-num", type=common.positive, default=t.max_num, help="largest number in a question")
    p.add_argument("--ops", default=t.ops, help="subset of +-*/")
    p.add_argument("--gsm8k", default=None, help="train on a GSM8K jsonl file instead of the procedural task")
    p.add_argument("--gsm8k-test", default=None, help="GSM8K test jsonl (required with --gsm8k)")
    p.add_argument("--shortcut", action="store_true",
                   help="the shortcut task: one-step problems whose question cue ('left' / 'now') gives the "
                        "operation away, except in conflict problems (test sets: half of each slice)")
    p.add_argument("--conflict-direction", choices=list(data.CONFLICT_DIRECTIONS), default=None,
                   help="--shortcut: the conflicts' verbs: both (default), add (addition verbs with the 'left' "
                        "cue) or sub (subtraction verbs with the 'now' cue)")


# -----------------------------------------------------------------------------
# 2. Solver accuracy

def decode_completions(tok, tokens):
    """Rows of generated ids -> (each row's completion ids up to and with its first EOS, their texts without EOS)."""
    mask = completion_mask(tokens, tok.eos_id)
    ids = [[t for t, keep in zip(row, m) if keep] for row, m in zip(tokens.tolist(), mask.tolist())]
    return ids, [tok.decode([t for t in r if t != tok.eos_id]) for r in ids]


def sample_completions(model, tok, prompts, k, max_new_tokens, temperature, generator):
    """The one sample-and-decode core (evaluation here, rollouts in train.py): k completions of each prompt
    (token lists), prompt-major -> rows of (completion ids up to and with EOS, its text without EOS, the
    log-prob of each of its tokens under the untempered model: log mu's terms, a (len,) tensor). In the training
    precision (common.autocast: on CUDA bf16 or fp16 with the KV cache in that dtype, the attention kernel the
    updates use; fp32 on CPU)."""
    with common.autocast(model.lm_head.weight.device):
        tokens, logp = model.generate(prompts, max_new_tokens, temperature=temperature, eos_id=tok.eos_id,
                                      num_samples=k, generator=generator, pad_id=tok.pad_id)
    ids, texts = decode_completions(tok, tokens.cpu())
    logp = logp.cpu()  # a completion is a prefix of its row (completion_mask): its log mu, the first len(ids)
    return [(r, text, logp[i, :len(r)].clone()) for i, (r, text) in enumerate(zip(ids, texts))]  # clone: its own
    # storage, not the whole chunk's (a row is pickled when processes share rollouts)


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


# Prompts per generate call: BATCH_PROMPTS at most -- always on the CPU, where every sample behind RESULTS.md
# was drawn in chunks of 64 from one generator (another chunking draws other samples) -- fewer on a GPU whose
# free memory cannot hold that many: GENERATE_MEMORY_FRACTION of it, the rest left to what generate_bytes
# leaves out (the allocator's fragmentation, cuBLAS's workspace).
BATCH_PROMPTS = 64
GENERATE_MEMORY_FRACTION = 0.7
DECODE_LOGIT_COPIES = 6  # fp32 (rows, vocabulary) tensors of a decode step: logits, log mu, tempered, probs, race x 2


def generate_bytes(config, k, positions, cache_bytes):
    """The bytes one prompt's share of a generate call holds at its peak (k samples, `positions` = prompt +
    max_new_tokens, the KV cache's dtype of cache_bytes: 2 under bf16 or fp16 autocast, 4 in fp32): its KV cache,
    n_layer x (K, V) x n_embd per row and position, for k rows and, when k > 1, the prefill's row that they are
    copied from (KVCache.repeat_rows: both alive at once); a decode step's fp32 tensors of the vocabulary's width
    per row; and the prefill's activations, about 12 n_embd fp32 values per position. GPT-2 124M (12 x 768,
    vocabulary 50,304 rows), block 512, bf16, k = 8: 198 MB; 64 prompts, 12.7 GB."""
    kv_row = config.n_layer * 2 * config.n_embd * positions * cache_bytes
    cache_rows = k + 1 if k > 1 else 1
    return cache_rows * kv_row + k * DECODE_LOGIT_COPIES * config.vocab_rows * 4 + 12 * config.n_embd * positions * 4


def prompts_that_fit(bytes_per_prompt, budget):
    """Prompts per generate call: BATCH_PROMPTS, or as many as `budget` bytes hold if fewer (at least 1);
    budget None (the CPU): BATCH_PROMPTS."""
    if budget is None:
        return BATCH_PROMPTS
    return int(max(1, min(BATCH_PROMPTS, budget // bytes_per_prompt)))


def generate_budget(device):
    """The bytes a generate call may take: on CUDA GENERATE_MEMORY_FRACTION of the free memory, counting as free
    what torch's allocator holds unused (after a training step, gigabytes that mem_get_info counts as taken);
    None elsewhere (the CPU keeps BATCH_PROMPTS)."""
    if device.type != "cuda":
        return None
    free, _ = torch.cuda.mem_get_info(device)
    return GENERATE_MEMORY_FRACTION * (free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device))


def prompts_per_call(model, k, positions):
    """How many prompts (k samples each, `positions` long at most) one generate call of `model` takes, under
    common.autocast on the model's device: prompts_that_fit(generate_bytes(...), generate_budget(device))."""
    device = model.lm_head.weight.device
    cache_bytes = torch.finfo(common.amp_dtype(device) or model.lm_head.weight.dtype).bits // 8
    return prompts_that_fit(generate_bytes(model.config, k, positions, cache_bytes), generate_budget(device))


@torch.no_grad()
def sample_answers(model, tok, problems, k, temperature, max_new_tokens, generator, batch_prompts=None):
    """k completions per problem: (texts, lengths), both lists of lists [problem][sample]. batch_prompts: prompts
    per generate call (default: prompts_per_call, BATCH_PROMPTS on the CPU)."""
    texts, lengths = [], []
    encoded = [tok.encode(data.format_prompt(p.question)) for p in problems]
    check_fits(model, encoded, max_new_tokens)
    batch_prompts = batch_prompts or prompts_per_call(model, k, max(map(len, encoded)) + max_new_tokens)
    for s in range(0, len(problems), batch_prompts):
        chunk, prompts = problems[s:s + batch_prompts], encoded[s:s + batch_prompts]
        rows = sample_completions(model, tok, prompts, k, max_new_tokens, temperature, generator)
        texts += [[text for _, text, _ in rows[i * k:(i + 1) * k]] for i in range(len(chunk))]
        lengths += [[len(ids) for ids, _, _ in rows[i * k:(i + 1) * k]] for i in range(len(chunk))]
    return texts, lengths


def evaluate_gpt(model, tok, problems, k=8, temperature=1.0, max_new_tokens=48, seed=0, return_samples=False,
                 greedy=True):
    """Held-out metrics: greedy accuracy; and from k samples per problem at `temperature`:
    pass@1 (mean correctness over samples), maj@k, pass@k, invalid rate, mean length (tokens).
    Problems with slices (the shortcut task) also get every metric per slice: "conflict_pass@1", ...
    return_samples: also return the sampled texts [problem][sample]. greedy=False: no greedy decode (a quarter
    of the time at k = 4; its keys left out); the sampled metrics are the same, as greedy draws no random number."""
    was_training = model.training
    model.eval()
    gen = torch.Generator(device=model.lm_head.weight.device).manual_seed(seed)
    greedy_texts = sample_answers(model, tok, problems, 1, 0.0, max_new_tokens, gen)[0] if greedy else None
    sampled, lengths = sample_answers(model, tok, problems, k, temperature, max_new_tokens, gen)
    model.train(was_training)
    res = {"n": len(problems), "k": k, **accuracy(problems, greedy_texts, sampled, lengths, k)}
    res.update(by_slice(lambda *cols: accuracy(*cols, k), problems, greedy_texts, sampled, lengths))
    if any(p.slice != "all" for p in problems):
        res.update(answer_breakdown(problems, sampled))
    return (res, sampled) if return_samples else res


def by_slice(metrics, problems, *columns):
    """metrics(problems, *columns) on each slice of the shortcut task ("normal", "conflict"), its keys
    prefixed by the slice's name; {} for tasks without slices. columns: lists aligned with problems."""
    res = {}
    for name in sorted({p.slice for p in problems} - {"all"}):
        idx = [i for i, p in enumerate(problems) if p.slice == name]
        cols = (col if col is None else [col[i] for i in idx] for col in (problems, *columns))  # None: not measured
        res.update({f"{name}_{key}": v for key, v in metrics(*cols).items()})
    return res


def accuracy(problems, greedy, sampled, lengths, k):
    """The metrics of evaluate_gpt from the texts: greedy[problem][0] (None: not decoded, its keys left out),
    sampled[problem][sample]."""
    n = len(problems)
    correct = [[data.reward(t, p.answer) > 0 for t in ts] for ts, p in zip(sampled, problems)]
    maj = [majority_vote([data.extract_answer(t) for t in ts]) for ts in sampled]
    res = {} if greedy is None else {
        "greedy": sum(data.reward(g[0], p.answer) > 0 for g, p in zip(greedy, problems)) / n,
        "greedy_invalid": sum(data.is_invalid(g[0]) for g in greedy) / n}
    return {
        **res,
        "pass@1": sum(sum(c) / k for c in correct) / n,
        f"maj@{k}": sum(is_right(m, p) for m, p in zip(maj, problems)) / n,
        f"pass@{k}": sum(any(c) for c in correct) / n,
        "invalid": sum(data.is_invalid(t) for ts in sampled for t in ts) / (n * k),
        "mean_len": sum(sum(l) for l in lengths) / (n * k),
    }


ANSWER_KINDS = ["right", "other_op", "swapped", "other_number", "invalid"]


def other_op_result(problem):
    """The result of a one-step problem "a<op>b" under the other operation: on a conflict problem the cue's
    operation (the shortcut), on a normal problem the opposite of both cue and verb. Negative if impossible."""
    a, op, b, _ = data.parse_step(problem.solution)
    return int(a) - int(b) if op == "+" else int(a) + int(b)


def answer_kind(problem, text):
    """What one completion of a one-step problem answers (ANSWER_KINDS): right; other_op, the other
    operation's result; swapped, |a-b| where the other operation's a-b is negative (the shortcut with its
    operands swapped, the nearest number the model has seen written); other_number; or invalid. Numbers compare
    as data.reward compares them ('12.0' == '012' == '12'), so the share of "right" is pass@1."""
    if data.is_invalid(text):
        return "invalid"
    if data.reward(text, problem.answer) > 0:
        return "right"
    other = other_op_result(problem)
    says = lambda x: data.reward(text, x) > 0  # the first "#### N" is x, numerically
    return "other_op" if says(other) else "swapped" if other < 0 and says(-other) else "other_number"


def answer_breakdown(problems, sampled):
    """The fraction of each ANSWER_KINDS among the samples of each slice, split by whether the other operation
    was possible (its result >= 0): keys "{slice}_{possible|impossible}_{kind}", and "..._n" (problems)."""
    res = {}
    for p, texts in zip(problems, sampled):
        group = f"{p.slice}_{'possible' if other_op_result(p) >= 0 else 'impossible'}"
        res[f"{group}_n"] = res.get(f"{group}_n", 0) + 1
        for t in texts:
            key = f"{group}_{answer_kind(p, t)}"
            res[key] = res.get(key, 0) + 1
    for group in {k.rsplit("_", 1)[0] for k in res if k.endswith("_n")}:
        n = sum(res.get(f"{group}_{kind}", 0) for kind in ANSWER_KINDS)
        res.update({f"{group}_{kind}": res.get(f"{group}_{kind}", 0) / n for kind in ANSWER_KINDS})
    return res


def evaluate_solver(model, tok, problems, k, max_new_tokens, seed, greedy=True):
    """evaluate_gpt's metrics and a one-line summary (what train.py rl logs after each iteration)."""
    res = evaluate_gpt(model, tok, problems, k=k, max_new_tokens=max_new_tokens, seed=seed, greedy=greedy)
    g = lambda pre: f" greedy {res[f'{pre}greedy']:.3f}" if greedy else ""
    slices = "".join(f" | {name} pass@1 {res[f'{name}_pass@1']:.3f}{g(name + '_')}"
                     for name in ("normal", "conflict") if f"{name}_pass@1" in res)
    return res, (f"test pass@1 {res['pass@1']:.3f}{g('')} maj@{k} {res[f'maj@{k}']:.3f} "
                 f"invalid {res['invalid']:.3f}{slices}")


# -----------------------------------------------------------------------------
# 3. The generative verifier (TOPR Sec. 5)
#
# Verifier-weighted voting: k candidates per problem, each scored by the verifier's
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
    was_training = verifier.training
    verifier.eval()
    flat = [(p, t) for p, ts in zip(problems, texts) for t in ts]
    prompts = [tok.encode(data.format_verify_prompt(p.question, t)) for p, t in flat]
    if prompts:
        check_fits(verifier, prompts, 1, "a verification prompt")  # + 1: the verdict
    p_yes = []
    for s in range(0, len(prompts), batch):
        with common.autocast(verifier.lm_head.weight.device):  # the training precision, as the verifier's updates
            logp = verdict_logp(verifier, prompts[s:s + batch], data.verdict_ids(tok), tok.pad_id)
        p_yes += logp[:, 0].exp().tolist()
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


def evaluate_verifier(verifier, tok, problems, texts, k):
    """verifier_metrics of the candidates texts[problem][sample] and a one-line summary (train.py rl)."""
    p_yes = score_candidates(verifier, tok, problems, texts)
    res = verifier_metrics(problems, texts, p_yes)
    res.update(by_slice(verifier_metrics, problems, texts, p_yes))
    return res, (f"verifier acc {res['verifier_acc']:.3f} (candidates right {res['candidates_correct']:.3f}) "
                 f"ece {res['ece']:.3f} | maj@{k} {res[f'maj@{k}']:.3f} weighted maj@{k} {res[f'weighted_maj@{k}']:.3f} "
                 f"best-of-{k} {res[f'best_of@{k}']:.3f}")


# -----------------------------------------------------------------------------
# 4. The command line

def cmd_gpt(args):
    device = common.get_device(args.device)
    model, tok, ckpt = load_gpt(args.ckpt, device)
    problems = data.Task.from_args(args).problems(args.n, args.seed, "test")
    res, texts = evaluate_gpt(model, tok, problems, k=args.k, temperature=args.temperature,
                              max_new_tokens=args.max_new_tokens, seed=args.seed, return_samples=True)
    if args.verifier:  # score the same k samples with the verifier
        verifier, vtok, _ = load_gpt(args.verifier, device)
        if vtok.name != tok.name:
            raise UserError(f"--verifier uses tokenizer {vtok.name!r}, --ckpt {tok.name!r}")
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


def read_metrics(folder):
    path = os.path.join(folder, "metrics.jsonl")
    if not os.path.isfile(path):
        raise UserError(f"no metrics.jsonl in {folder}")
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def cmd_compare(args):
    """One figure: held-out pass@1 (per slice on the shortcut task), invalid rate, and mean log pi of
    positive / negative samples, against samples seen, one line per run (label = folder name, or --labels)."""
    plt = common.pyplot()
    labels = args.labels or [os.path.basename(os.path.normpath(r)) for r in args.runs]
    if len(labels) != len(args.runs):
        raise UserError(f"{len(args.labels)} labels for {len(args.runs)} runs")
    runs = [read_metrics(run) for run in args.runs]
    for run, rows in zip(args.runs, runs):
        if not any("test_pass@1" in r for r in rows):
            raise UserError(f"{run}/metrics.jsonl has no evaluation rows (is it an RL run?)")
    sliced = all("test_conflict_pass@1" in r for rows in runs for r in rows if "test_pass@1" in r)
    accuracy = [("conflict_", "conflict slice"), ("normal_", "normal slice")] if sliced else [("", "held-out")]
    panels = [(f"test_{s}pass@1", f"{t} pass@1") for s, t in accuracy] + [
        ("test_invalid", "held-out invalid rate"), ("logp_reward_pos", "mean log pi, positive samples"),
        ("logp_reward_neg", "mean log pi, negative samples")]
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.6))
    summary = []
    for rows, label in zip(runs, labels):
        ev_rows = [r for r in rows if "test_pass@1" in r]
        st_rows = [r for r in rows if "logp_reward_neg" in r]
        color = None
        for ax, (key, _) in zip(axes, panels):
            pts = ev_rows if key.startswith("test_") else st_rows
            (line,) = ax.plot([r["samples"] for r in pts], [r[key] for r in pts], marker="o" if pts is ev_rows else None,
                              ms=3, color=color, label=label)
            color = line.get_color()
        summary.append(dict(run=label, samples=ev_rows[-1]["samples"], **{
            f"{s}pass@1 {when}": r[f"test_{s}pass@1"] for s, _ in accuracy
            for when, r in (("start", ev_rows[0]), ("end", ev_rows[-1]))}, invalid_end=ev_rows[-1]["test_invalid"]))
    for ax, (_, title) in zip(axes, panels):
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("samples seen")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    if args.title:
        fig.suptitle(args.title, fontsize=11)
    fig.tight_layout()
    common.save_figure(fig, args.out)
    print(f"wrote {args.out}")
    keys = [k for k in summary[0] if k != "run"]
    print(f"{'run':<16}" + "".join(f"{k:>22}" for k in keys))
    for s in summary:
        print(f"{s['run']:<16}" + "".join(f"{s[k]:>22.3f}" if isinstance(s[k], float) else f"{s[k]:>22}" for k in keys))
    return summary


@common.cli
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)

    p = sub.add_parser("gpt", help="held-out accuracy of a GPT checkpoint (and of verifier-weighted voting)")
    p.add_argument("--ckpt", required=True, help="a train.py checkpoint")
    p.add_argument("--verifier", default=None, help="a verifier checkpoint (train.py rl --task verify): score the k samples")
    p.add_argument("--n", type=common.positive, default=512, help="held-out problems")
    p.add_argument("--k", type=common.positive, default=8, help="samples per problem")
    p.add_argument("--temperature", type=common.flag(float, min=0.0), default=1.0, help="0 = greedy")
    p.add_argument("--max-new-tokens", type=common.positive, default=48, help="longest completion")
    p.add_argument("--seed", type=int, default=0)
    common.add_device_arg(p)
    add_task_args(p)
    p.set_defaults(func=cmd_gpt)

    p = sub.add_parser("compare", help="one figure comparing RL runs")
    p.add_argument("runs", nargs="+", help="run folders (each with metrics.jsonl)")
    p.add_argument("--labels", nargs="+", default=None, help="one label per run (default: folder names)")
    p.add_argument("--title", default=None)
    p.add_argument("--out", default="runs/compare.png", help="the figure")
    p.set_defaults(func=cmd_compare)

    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    main()
