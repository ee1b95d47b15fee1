"""
train.py -- GPT training on the word-problem task.

  python train.py sft --out runs/sft                          supervised: learn worked solutions
  python train.py rl --init runs/sft/ckpt.pt --loss topr      RL fine-tuning (TOPR and baselines)

Both write `ckpt.pt` (atomically) and `metrics.jsonl` (one JSON per line) under --out, and
continue from there with --resume.
"""
import argparse
import contextlib
import json
import math
import os
import sys
import time
from dataclasses import asdict

import torch
import torch.nn.functional as F

import data
from data import DataError
import topr
from model import GPT, GPTConfig, completion_mask, get_device, pack, sequence_logprobs

# -----------------------------------------------------------------------------
# Shared plumbing: device, metrics, checkpoints


def autocast_ctx(device):
    """bf16 autocast on CUDA (weights and optimizer stay fp32); plain fp32 elsewhere."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


class Metrics:
    """Appends one JSON object per line to out/metrics.jsonl and echoes a short line."""

    def __init__(self, out, resume):
        os.makedirs(out, exist_ok=True)
        self.f = open(os.path.join(out, "metrics.jsonl"), "a" if resume else "w")

    def log(self, **row):
        self.f.write(json.dumps(row) + "\n")
        self.f.flush()


def task_problems(args, n, seed, split):
    if getattr(args, "gsm8k", None):
        problems = data.load_gsm8k(args.gsm8k if split == "train" else args.gsm8k_test or args.gsm8k)
        return problems[:n]
    return data.make_problems(n, seed=seed, split=split, steps=tuple(args.steps), max_num=args.max_num, ops=args.ops)


def encode_example(tok, problem):
    """(prompt ids, completion ids ending in EOS) for one worked problem."""
    prompt = tok.encode(data.format_prompt(problem.question))
    completion = tok.encode(data.format_completion(problem.solution)) + [tok.eos_id]
    return prompt, completion


def sft_batch(examples, ix, pad_id, device):
    """Right-padded (x, y) for next-token prediction; loss only on completion tokens (y = -1 elsewhere)."""
    seqs = [examples[i] for i in ix]
    T = max(len(p) + len(c) for p, c in seqs) - 1
    x = torch.full((len(seqs), T), pad_id, dtype=torch.long)
    y = torch.full((len(seqs), T), -1, dtype=torch.long)
    for r, (p, c) in enumerate(seqs):
        s = torch.tensor(p + c)
        x[r, :len(s) - 1] = s[:-1]
        y[r, len(p) - 1:len(s) - 1] = s[len(p):]  # predict the completion only
    return x.to(device), y.to(device)


def lr_at(it, args):
    """Linear warm-up, then cosine decay from --lr to --min-lr over --max-iters."""
    if it < args.warmup:
        return args.lr * (it + 1) / args.warmup
    frac = min(1.0, (it - args.warmup) / max(1, args.max_iters - args.warmup))
    return args.min_lr + 0.5 * (1 + math.cos(math.pi * frac)) * (args.lr - args.min_lr)


def load_model(path, device):
    """(model, tokenizer, checkpoint dict) from a checkpoint written by this file."""
    ckpt = data.load_checkpoint(path)
    if "model_config" not in ckpt:
        raise DataError(f"{path} is not a GPT checkpoint of this repo (no model_config)")
    model = GPT(GPTConfig(**ckpt["model_config"]))
    model.load_state_dict(ckpt["model"])
    return model.to(device), data.get_tokenizer(ckpt.get("tokenizer", "byte")), ckpt


def plain_args(args):
    """The CLI flags as a dict of plain values (checkpoints load with weights_only=True)."""
    return {k: v for k, v in vars(args).items() if isinstance(v, (int, float, str, bool, list, type(None)))}


def check_finite(loss, step):
    if not torch.isfinite(loss):
        raise FloatingPointError(f"loss is {loss.item()} at step {step}; stopping (last good checkpoint kept)")


# -----------------------------------------------------------------------------
# SFT


def distributed(run, args):
    """run(args, rank, world, device) in this process's place: alone, or as one rank under torchrun."""
    rank, world, device = data.ddp_setup()
    try:
        out = run(args, rank, world, device or get_device(args.device))
    except BaseException:
        data.ddp_cleanup(ok=False)  # no barrier: the other ranks may never reach it
        raise
    data.ddp_cleanup()
    return out


def cmd_sft(args):
    torch.manual_seed(args.seed)
    return distributed(_sft, args)


def _sft(args, rank, world, device):
    from eval import evaluate_gpt
    master = rank == 0  # only rank 0 logs, evaluates and writes checkpoints
    tok = data.get_tokenizer(args.tokenizer)
    train = [encode_example(tok, p) for p in task_problems(args, args.sft_examples, args.seed, "train")]
    val = [encode_example(tok, p) for p in task_problems(args, args.val_examples, args.seed + 1000, "train")]
    test = task_problems(args, args.eval_problems, args.seed, "test")
    longest = max(len(p) + len(c) for p, c in train + val)
    if args.batch_size > len(train):
        raise DataError(f"--batch-size {args.batch_size} is larger than the training set ({len(train)} examples)")
    if args.batch_size % world:
        raise DataError(f"--batch-size {args.batch_size} must be divisible by the number of processes ({world})")
    cfg = GPTConfig(block_size=args.block_size, vocab_size=tok.vocab_size, n_layer=args.n_layer,
                    n_head=args.n_head, n_embd=args.n_embd, dropout=args.dropout, bias=True)
    init = None
    if args.init:  # continue SFT from a checkpoint's weights with a fresh optimizer (a baseline for RL)
        init = data.load_checkpoint(args.init)
        cfg = GPTConfig(**init["model_config"])
    if longest > cfg.block_size:
        raise DataError(f"longest example has {longest} tokens > --block-size {cfg.block_size}")
    model = GPT(cfg).to(device)
    if init is not None:
        model.load_state_dict(init["model"])
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.95), weight_decay=args.weight_decay)
    gen = torch.Generator().manual_seed(args.seed)  # the batch order
    it, best_val = 0, float("inf")
    ckpt_path = os.path.join(args.out, "ckpt.pt")
    if args.resume:
        ckpt = data.load_checkpoint(ckpt_path)
        if ckpt.get("model_config") != asdict(cfg):
            raise DataError(f"{ckpt_path} was trained with a different model config: {ckpt.get('model_config')}")
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        gen.set_state(ckpt["rng"]["batch"])
        data.set_rng_state(ckpt["rng"])
        it, best_val = ckpt["iter"], ckpt["best_val"]
        print(f"resumed from {ckpt_path} at iter {it}")
    metrics = Metrics(args.out, args.resume) if master else None
    stop = data.StopFlag()
    train_model = model
    if world > 1:  # gradients are averaged over processes inside backward()
        from torch.nn.parallel import DistributedDataParallel as DDP
        train_model = DDP(model, device_ids=[device.index] if device.type == "cuda" else None)
    if master:
        print(f"sft: {len(train)} examples, {model.get_num_params() / 1e6:.2f}M params, device {device} x {world}, "
              f"{args.max_iters} iters of batch {args.batch_size}", flush=True)

    def save():
        data.atomic_save(dict(model_config=asdict(cfg), model=model.state_dict(), optimizer=opt.state_dict(),
                              iter=it, best_val=best_val, tokenizer=args.tokenizer, args=plain_args(args),
                              rng=dict(batch=gen.get_state(), **data.rng_state())), ckpt_path)

    @torch.no_grad()
    def val_loss():
        model.eval()
        tot, n = 0.0, 0
        for s in range(0, len(val), 64):
            x, y = sft_batch(val, range(s, min(s + 64, len(val))), tok.pad_id, device)
            with autocast_ctx(device):
                _, loss = model(x, y)
            m = (y != -1).sum().item()
            tot, n = tot + loss.item() * m, n + m
        model.train()
        return tot / n

    t0, tokens, start_it = time.time(), 0, it
    stop_at = min(args.max_iters, args.stop_at or args.max_iters)
    model.train()
    while it < stop_at and not stop.stop:
        for g in opt.param_groups:
            g["lr"] = lr_at(it, args)
        # every process draws the same global batch and takes its share of rows
        ix = torch.randint(len(train), (args.batch_size,), generator=gen).tolist()
        n_tokens = sum(len(train[i][1]) for i in ix)  # predicted tokens in the GLOBAL batch
        x, y = sft_batch(train, ix[rank::world], tok.pad_id, device)
        with autocast_ctx(device):
            logits, _ = train_model(x)
        # sum over this share / tokens of the global batch, times world (DDP averages over processes):
        # exactly the single-process mean over the global batch
        loss_sum = F.cross_entropy(logits.float().view(-1, logits.size(-1)), y.view(-1), ignore_index=-1, reduction="sum")
        loss = loss_sum * world / n_tokens
        check_finite(loss, it + 1)  # 1-based, like the "iter N" log lines
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), args.grad_clip)
        opt.step()
        it += 1
        tokens += x.numel() * world
        if it % args.log_interval == 0 or it == args.max_iters:
            loss = loss.detach() / world  # this process's share of the global mean
            if world > 1:
                torch.distributed.all_reduce(loss)  # every process takes part in this collective
            el = time.time() - t0
            eta = el / (it - start_it) * (stop_at - it)
            if master:
                metrics.log(iter=it, loss=loss.item(), lr=opt.param_groups[0]["lr"], tok_per_s=tokens / el)
                print(f"iter {it:5d} | loss {loss.item():.4f} | lr {opt.param_groups[0]['lr']:.2e} | "
                      f"{tokens / el:.0f} tok/s | ETA {eta:.0f}s", flush=True)
        if master and (it % args.eval_interval == 0 or it == args.max_iters):
            vl = val_loss()
            best_val = min(best_val, vl)
            metrics.log(iter=it, val_loss=vl)
            print(f"iter {it:5d} | val loss {vl:.4f}", flush=True)
            save()
    if not master:
        return None
    save()
    if it < args.max_iters:
        print(f"stopped at iter {it}; continue with --resume", flush=True)
        return None
    model.eval()
    res = evaluate_gpt(model, tok, test, k=args.eval_k, max_new_tokens=args.max_new_tokens, seed=args.seed)
    metrics.log(iter=it, **{f"test_{k}": v for k, v in res.items()})
    print(f"sft done: {it} iters in {time.time() - t0:.0f}s | test greedy {res['greedy']:.3f} | "
          f"pass@1 {res['pass@1']:.3f} | invalid {res['invalid']:.3f} | ckpt {ckpt_path}", flush=True)
    return res


# -----------------------------------------------------------------------------
# RL: the paper's iterated off-policy scheme (TOPR Sec. 4; DESIGN s5)
#
#   for each iteration:
#       behaviour policy mu := current policy pi (frozen)
#       sample k completions per prompt at temperature 1, store (prompt, completion, log mu, reward)
#       --epochs passes of the chosen loss over that dataset (1 = mildly off-policy, several =
#       strongly off-policy; --iterations 1 = the fully offline setting)
#   No KL term; gradient clipping 1.0.


def in_chunks(n, size, rank, world, work):
    """Rows of work(c, start, end) for the chunks c of range(n) of `size` items. Process `rank` runs
    chunks rank, rank + world, ...; every process gets all the rows back, in chunk order."""
    chunks = [(c, work(c, s, min(s + size, n))) for c, s in enumerate(range(0, n, size)) if c % world == rank]
    if world > 1:
        gathered = [None] * world
        torch.distributed.all_gather_object(gathered, chunks)
        chunks = sorted((c for part in gathered for c in part), key=lambda c: c[0])
    return [row for _, rows in chunks for row in rows]


@torch.no_grad()
def rollout(policy, tok, problems, k, max_new_tokens, seed, rank=0, world=1, batch_prompts=64):
    """k samples per problem from the frozen policy: list of dicts, grouped by prompt (k consecutive rows).

    Prompts go in chunks of batch_prompts, each sampled with its own generator seeded by (seed, chunk),
    so the dataset does not depend on how many processes share the work (see in_chunks)."""
    policy.eval()

    def work(c, s, e):
        chunk = problems[s:e]
        prompts = [tok.encode(data.format_prompt(p.question)) for p in chunk]
        gen = torch.Generator(device=policy.lm_head.weight.device).manual_seed(seed * 100_003 + c)
        tokens, logp = policy.generate(prompts, max_new_tokens, temperature=1.0, eos_id=tok.eos_id,
                                       num_samples=k, generator=gen, pad_id=tok.pad_id)
        mask = completion_mask(tokens, tok.eos_id)
        tokens, logp, mask = tokens.cpu(), logp.cpu(), mask.cpu()
        rows = []
        for r in range(tokens.size(0)):
            p = chunk[r // k]
            comp = tokens[r][mask[r]].tolist()
            text = tok.decode([t for t in comp if t != tok.eos_id])
            rows.append(dict(prompt=prompts[r // k], completion=comp, group=s + r // k, text=text,
                             logp_behavior=logp[r][mask[r]].sum().item(),  # log mu(y|x), untempered
                             reward=data.reward(text, p.answer), invalid=data.is_invalid(text)))
        return rows

    rows = in_chunks(len(problems), batch_prompts, rank, world, work)
    policy.train()
    return rows


# The verifier (--task verify; TOPR Sec. 5): the same loop with another action. Candidates come from
# a frozen solver checkpoint (correct and wrong ones, at the rate it makes them); the verifier's
# action is ONE token, "Yes" or "No", after the verification prompt (data.format_verify_prompt),
# sampled from its next-token distribution restricted to those two tokens:
#
#     pi(v | x) = softmax([logit_Yes(x), logit_No(x)])[v]      reward = +1 if v is right, else -1
#
# Why restricted: a model trained only to solve puts ~0 probability on "Yes" after "Correct? ", so
# unrestricted sampling would never produce a positive sample (a cold start that an 8B instruction
# model, as in the paper, does not have). The restriction is constrained decoding: nothing else changes,
# and every loss of topr.py applies as is, with log pi = log pi(v | x) and length 1.


def check_verify_context(model, prompts):
    """A clear error (not a mid-run ValueError) when a verification prompt does not fit the context."""
    longest = max(len(p) for p in prompts)
    if longest >= model.config.block_size:
        raise DataError(f"a verification prompt has {longest} tokens, more than the verifier's context "
                        f"({model.config.block_size}); lower --max-new-tokens")


def verdict_logp(model, prompts, yes_no, pad_id, restricted=True):
    """(B, 2) [log pi(Yes | x), log pi(No | x)] for verification prompts (token lists), in one forward
    pass; gradients flow. restricted=False: the unrestricted next-token log-probs of the two tokens."""
    device = next(model.parameters()).device
    tokens, _, _ = pack(prompts, [[] for _ in prompts], pad_id)  # right-padded: causal attention ignores pads
    logits, _ = model(tokens.to(device))
    last = torch.tensor([len(p) - 1 for p in prompts], device=device)
    logits = logits[torch.arange(len(prompts), device=device), last].float()  # (B, vocab): next-token logits
    if restricted:
        return F.log_softmax(logits[:, list(yes_no)], dim=-1)
    return F.log_softmax(logits, dim=-1)[:, list(yes_no)]


@torch.no_grad()
def verify_rollout(verifier, solver, tok, problems, k, max_new_tokens, seed, rank=0, world=1, batch=128):
    """k candidates per problem from the frozen solver, then one verdict per candidate from the frozen
    verifier (the behaviour policy mu). Rows like rollout()'s, grouped by problem, where prompt = the
    verification prompt, completion = [verdict token], candidate_reward = +-1 (is the candidate right)."""
    cands = rollout(solver, tok, problems, k, max_new_tokens, seed, rank, world)
    yes_no = data.verdict_ids(tok)
    prompts = [tok.encode(data.format_verify_prompt(problems[r["group"]].question, r["text"])) for r in cands]
    check_verify_context(verifier, prompts)  # all of them, in every process, before the chunks' all_gather
    verifier.eval()

    def work(c, s, e):
        lp = verdict_logp(verifier, prompts[s:e], yes_no, tok.pad_id).cpu()
        gen = torch.Generator().manual_seed(seed * 100_003 + 50_000 + c)
        v = torch.multinomial(lp.exp(), 1, generator=gen).squeeze(1).tolist()  # 0 = Yes, 1 = No
        return [dict(prompt=prompts[i], completion=[yes_no[vi]], group=cands[i]["group"], text=data.VERDICTS[vi],
                     logp_behavior=lp[i - s, vi].item(), candidate_reward=cands[i]["reward"],
                     reward=data.verify_reward(data.VERDICTS[vi], cands[i]["text"], problems[cands[i]["group"]].answer),
                     invalid=cands[i]["invalid"])
                for i, vi in zip(range(s, e), v)]

    rows = in_chunks(len(cands), batch, rank, world, work)
    verifier.train()
    return rows


def policy_logp(model, mb, tok, task):
    """For rollout rows mb: log pi(completion | prompt) summed over its tokens (B,), the completion
    lengths (B,), and the summed per-token entropy of pi (for logging). Gradients flow."""
    device = next(model.parameters()).device
    if task == "verify":  # one action: the verdict, pi restricted to {Yes, No}
        yes_no = data.verdict_ids(tok)
        lp = verdict_logp(model, [r["prompt"] for r in mb], yes_no, tok.pad_id)
        chosen = torch.tensor([yes_no.index(r["completion"][0]) for r in mb], device=device)
        ent = -(lp.exp() * lp).sum().detach()
        return lp.gather(1, chosen[:, None]).squeeze(1), torch.ones(len(mb), device=device), ent
    tokens, pad_mask, compl = pack([r["prompt"] for r in mb], [r["completion"] for r in mb], tok.pad_id)
    tokens, pad_mask, compl = tokens.to(device), pad_mask.to(device), compl.to(device)
    tok_logp, ent = sequence_logprobs(model, tokens, pad_mask, compl, return_entropy=True)
    return topr.sequence_logp(tok_logp, compl), compl.sum(-1), ent.sum()


def rl_update(policy, train_model, opt, tok, batch, args, device, step, rank=0, world=1):
    """One optimizer step of the chosen loss on `batch` (the global list of rollout rows). This process
    takes rows rank, rank + world, ... in micro-batches; train_model is policy or its DDP wrapper."""
    opt.zero_grad(set_to_none=True)
    n = len(batch)
    mine = batch[rank::world]
    logps, ent, n_tok = [], 0.0, 0.0
    for s in range(0, len(mine), args.micro_batch):
        mb = mine[s:s + args.micro_batch]
        last = s + args.micro_batch >= len(mine)
        sync = contextlib.nullcontext() if (world == 1 or last) else train_model.no_sync()
        with sync:  # under DDP, all-reduce the gradients once, after the last micro-batch
            with autocast_ctx(device):
                logp, lengths, ent_sum = policy_logp(train_model, mb, tok, args.task)  # log pi(y|x)
            logp_b = torch.tensor([r["logp_behavior"] for r in mb], device=device)
            reward = torch.tensor([r["reward"] for r in mb], device=device)
            baseline = torch.tensor([r["baseline"] for r in mb], device=device)
            loss, _ = loss_fn(args)(logp, logp_b, reward, baseline=baseline, lengths=lengths,
                                    length_normalize=not args.no_length_norm)
            check_finite(loss, step)
            # the loss is a mean over samples: weight each micro-batch by its share of the GLOBAL batch
            # (times world, since DDP averages the processes' gradients)
            (loss * len(mb) / n * world).backward()
        logps += logp.detach().cpu().tolist()
        ent, n_tok = ent + ent_sum.item(), n_tok + lengths.sum().item()
    grad_norm = torch.nn.utils.clip_grad_norm_(policy.parameters(), args.grad_clip)
    opt.step()
    if world > 1:  # the stats below cover the whole global batch
        parts = [None] * world
        torch.distributed.all_gather_object(parts, (logps, ent, n_tok))
        logps = [None] * n
        for r, (lp, _, _) in enumerate(parts):
            logps[r::world] = lp
        ent, n_tok = sum(p[1] for p in parts), sum(p[2] for p in parts)
    _, stats = loss_fn(args)(torch.tensor(logps, device=device),
                             torch.tensor([r["logp_behavior"] for r in batch], device=device),
                             torch.tensor([r["reward"] for r in batch], device=device),
                             baseline=torch.tensor([r["baseline"] for r in batch], device=device),
                             lengths=torch.tensor([float(len(r["completion"])) for r in batch], device=device),
                             length_normalize=not args.no_length_norm)
    stats.update(entropy=ent / n_tok, grad_norm=grad_norm.item(),
                 length=sum(len(r["completion"]) for r in batch) / n,
                 invalid=sum(r["invalid"] for r in batch) / n)
    return stats


def loss_fn(args):
    """The chosen loss as f(logp, logp_behavior, reward, baseline=, lengths=, length_normalize=)."""
    if args.loss == "ppo":
        return lambda *a, **kw: topr.ppo_loss(*a, eps=args.ppo_eps, **kw)
    return lambda *a, **kw: topr.topr_loss(*a, name=args.loss, **kw)


def cmd_rl(args):
    if args.loss not in topr.LOSSES:
        raise DataError(f"unknown loss '{args.loss}'; choose from {', '.join(topr.LOSSES)}")
    if args.baseline != "group":
        try:
            args.baseline = float(args.baseline)
        except ValueError:
            raise DataError(f"--baseline must be 'group' or a number, got {args.baseline!r}") from None
    for flag, frac in (("--target-pos-frac", args.target_pos_frac), ("--candidate-pos-frac", args.candidate_pos_frac)):
        if frac is not None and not 0.0 < frac < 1.0:
            raise DataError(f"{flag} must be in (0, 1), got {frac}")
    if not args.resume and not args.init:
        raise DataError("rl needs --init <sft ckpt.pt> (or --resume)")
    if args.task == "verify":
        args.candidates = args.candidates or args.init
        if not args.candidates:
            raise DataError("rl --task verify needs --candidates <solver ckpt.pt> (default: --init)")
    elif args.candidate_pos_frac is not None or args.candidates:
        raise DataError("--candidates and --candidate-pos-frac only apply to --task verify")
    return distributed(_rl, args)


def _rl(args, rank, world, device):
    from eval import evaluate_gpt, sample_answers, score_candidates, verifier_metrics
    master = rank == 0  # only rank 0 evaluates, logs and writes checkpoints
    torch.manual_seed(args.seed)
    ckpt_path = os.path.join(args.out, "ckpt.pt")
    policy, tok, init = load_model(args.resume and ckpt_path or args.init, device)
    opt = torch.optim.AdamW(policy.parameters(), lr=args.lr, betas=(0.9, 0.95), weight_decay=0.0)
    itr, step, samples = 0, 0, 0
    if args.resume:
        if init.get("kind") != "rl":
            raise DataError(f"{ckpt_path} is not an RL checkpoint")
        opt.load_state_dict(init["optimizer"])
        itr, step, samples = init["iteration"], init["step"], init["samples"]
        data.set_rng_state(init["rng"])
        if master:
            print(f"resumed from {ckpt_path} at iteration {itr}")
    start_itr = itr
    train_model = policy
    if world > 1:  # gradients are averaged over processes inside backward()
        from torch.nn.parallel import DistributedDataParallel as DDP
        train_model = DDP(policy, device_ids=[device.index] if device.type == "cuda" else None)
    test = task_problems(args, args.eval_problems, args.seed, "test")
    metrics = Metrics(args.out, args.resume) if master else None
    stop = data.StopFlag()
    solver = None
    if args.task == "verify":  # candidates come from a frozen solver; held-out ones are sampled once
        solver, solver_tok, _ = load_model(args.candidates, device)
        if solver_tok.name != tok.name:
            raise DataError(f"--candidates uses tokenizer {solver_tok.name!r}, the verifier {tok.name!r}")
        solver.requires_grad_(False)
        if master:
            test_texts, _ = sample_answers(solver, tok, test, args.eval_k, 1.0, args.max_new_tokens,
                                           torch.Generator(device=device).manual_seed(args.seed))
    baseline_desc = "group mean" if args.baseline == "group" else f"c={args.baseline}"
    if master:
        print(f"rl: task {args.task}, loss {args.loss}, {args.iterations} iterations x {args.prompts} prompts x "
              f"{args.k} samples, {args.epochs} epoch(s), baseline {baseline_desc}, lr {args.lr}, "
              f"device {device} x {world}", flush=True)

    def evaluate():
        if not master:
            return
        K = args.eval_k
        if args.task == "verify":
            res = verifier_metrics(test, test_texts, score_candidates(policy, tok, test, test_texts))
            line = (f"verifier acc {res['verifier_acc']:.3f} (candidates right {res['candidates_correct']:.3f}) "
                    f"ece {res['ece']:.3f} | maj@{K} {res[f'maj@{K}']:.3f} weighted maj@{K} {res[f'weighted_maj@{K}']:.3f} "
                    f"best-of-{K} {res[f'best_of@{K}']:.3f}")
        else:
            res = evaluate_gpt(policy, tok, test, k=K, max_new_tokens=args.max_new_tokens, seed=args.seed)
            line = (f"test pass@1 {res['pass@1']:.3f} greedy {res['greedy']:.3f} maj@{K} {res[f'maj@{K}']:.3f} "
                    f"invalid {res['invalid']:.3f}")
        metrics.log(iteration=itr, step=step, samples=samples, **{f"test_{k}": v for k, v in res.items()})
        print(f"iter {itr:3d} | samples {samples:6d} | {line}", flush=True)

    def save():
        if master:
            data.atomic_save(dict(kind="rl", model_config=asdict(policy.config), model=policy.state_dict(),
                                  optimizer=opt.state_dict(), iteration=itr, step=step, samples=samples,
                                  tokenizer=tok.name, args=plain_args(args), rng=data.rng_state()),
                             ckpt_path)

    if itr == 0:
        evaluate()  # the SFT start
    t0 = time.time()
    while itr < args.iterations and not stop.stop:
        # 1. fresh prompts (answers only) and k samples each from the frozen behaviour policy mu = pi.
        #    Seeds depend only on (seed, iteration): every method sees the same first dataset.
        t_roll = time.time()
        problems = task_problems(args, args.prompts, args.seed * 1000 + itr + 1, "train")
        if args.task == "verify":  # k candidates per prompt from the solver, one verdict each from mu
            rows = verify_rollout(policy, solver, tok, problems, args.k, args.max_new_tokens, args.seed * 1000 + itr,
                                  rank, world)
        else:
            rows = rollout(policy, tok, problems, args.k, args.max_new_tokens, args.seed * 1000 + itr, rank, world)
        t_roll = time.time() - t_roll
        rewards = torch.tensor([r["reward"] for r in rows])
        # 2. baseline: per-prompt group mean, or a constant c (which sets the effective positive fraction)
        if args.baseline == "group":
            base = topr.group_baseline(rewards, args.k)
        else:
            base = torch.full_like(rewards, float(args.baseline))
        for r, b in zip(rows, base.tolist()):
            r["baseline"] = b
        # curation: keep a fraction of positive samples (--target-pos-frac), or for the verifier of
        # correct candidates (--candidate-pos-frac, e.g. 0.5 = as many right as wrong solutions to judge)
        for key, frac in (("candidate_reward", args.candidate_pos_frac), ("reward", args.target_pos_frac)):
            if frac is None:
                continue
            try:
                values = torch.tensor([r[key] for r in rows])
                keep = topr.curate(values, frac, generator=torch.Generator().manual_seed(args.seed + itr))
                rows = [rows[i] for i in keep.tolist()]
            except ValueError as e:  # e.g. no positive at all in this dataset: train on it as it is
                if master:
                    print(f"iter {itr}: not curated to {key} fraction {frac} ({e})", flush=True)
        p_pos = sum(r["reward"] > 0 for r in rows) / len(rows)
        if master:
            extra = {}
            if args.task == "verify":
                extra["dataset_candidates_correct"] = sum(r["candidate_reward"] > 0 for r in rows) / len(rows)
            metrics.log(iteration=itr, dataset_size=len(rows), dataset_pos_frac=p_pos,
                        rollout_invalid=sum(r["invalid"] for r in rows) / len(rows), rollout_s=t_roll, **extra)
        # 3. --epochs passes over the stored dataset with the chosen loss
        t_upd = time.time()
        order_gen = torch.Generator().manual_seed(args.seed * 1000 + itr)
        for epoch in range(args.epochs):
            order = torch.randperm(len(rows), generator=order_gen).tolist()
            for s in range(0, len(order), args.batch_size):
                batch = [rows[i] for i in order[s:s + args.batch_size]]
                batch = batch[:len(batch) - len(batch) % world]  # every process needs a share (DDP only)
                if not batch:
                    continue
                stats = rl_update(policy, train_model, opt, tok, batch, args, device, step + 1, rank, world)
                step += 1
                samples += len(batch)  # samples seen by the optimizer (a reused sample counts again)
                if master:
                    metrics.log(iteration=itr, epoch=epoch, step=step, samples=samples, **stats)
            if args.eval_each_epoch and epoch + 1 < args.epochs:
                evaluate()
        itr += 1
        t_upd = time.time() - t_upd
        el = time.time() - t0
        if master:
            print(f"iter {itr:3d} | pos frac {p_pos:.3f} | loss {stats['loss']:.4f} | mean alpha {stats['mean_alpha']:.3f} | "
                  f"logp+ {stats['logp_reward_pos']:.2f} logp- {stats['logp_reward_neg']:.2f} | rollout {t_roll:.1f}s "
                  f"update {t_upd:.1f}s | ETA {el / (itr - start_itr) * (args.iterations - itr):.0f}s", flush=True)
        if itr % args.eval_every == 0 or itr == args.iterations:
            evaluate()
        save()
    return None


def add_rl_parser(sub):
    p = sub.add_parser("rl", help="RL fine-tuning from an SFT checkpoint (TOPR and baselines)")
    add_task_args(p)
    p.add_argument("--init", help="SFT checkpoint to start from (required unless --resume)")
    p.add_argument("--task", choices=["solve", "verify"], default="solve",
                   help="solve: learn to solve; verify: learn to judge a solver's candidates (Yes/No)")
    p.add_argument("--candidates", default=None, help="verify: solver checkpoint that writes the candidates (default: --init)")
    p.add_argument("--candidate-pos-frac", type=float, default=None,
                   help="verify: curate each dataset to this fraction of correct candidates")
    p.add_argument("--loss", default="topr", help=f"one of {', '.join(topr.LOSSES)}")
    p.add_argument("--iterations", type=positive("--iterations"), default=8, help="sample-then-train rounds")
    p.add_argument("--epochs", type=positive("--epochs"), default=1, help="passes over each generated dataset")
    p.add_argument("--prompts", type=positive("--prompts"), default=64, help="fresh prompts per iteration")
    p.add_argument("--k", type=positive("--k"), default=16, help="samples per prompt (verify: candidates per problem)")
    p.add_argument("--batch-size", type=positive("--batch-size"), default=512, help="sequences per optimizer step")
    p.add_argument("--micro-batch", type=positive("--micro-batch"), default=128, help="sequences per forward pass")
    p.add_argument("--lr", type=positive("--lr", float), default=3e-5)
    p.add_argument("--baseline", default="group", help="'group' (per-prompt mean reward) or a constant c")
    p.add_argument("--target-pos-frac", type=float, default=None, help="curate each dataset to this positive fraction")
    p.add_argument("--no-length-norm", action="store_true", help="sum log-probs instead of dividing by length")
    p.add_argument("--ppo-eps", type=float, default=0.2)
    p.add_argument("--grad-clip", type=float, default=1.0)
    p.add_argument("--eval-every", type=positive("--eval-every"), default=1, help="iterations between evaluations")
    p.add_argument("--eval-each-epoch", action="store_true", help="also evaluate after every epoch")
    p.set_defaults(func=cmd_rl)


# -----------------------------------------------------------------------------


def add_task_args(p):
    p.add_argument("--tokenizer", default="byte", help="byte (offline) or gpt2 (needs tiktoken's cached files)")
    p.add_argument("--steps", type=int, nargs="+", default=[1, 2], help="operations per problem")
    p.add_argument("--max-num", type=int, default=10, help="largest number in a question")
    p.add_argument("--ops", default="+-", help="subset of +-*/")
    p.add_argument("--gsm8k", default=None, help="train on a GSM8K jsonl file instead of the procedural task")
    p.add_argument("--gsm8k-test", default=None, help="GSM8K test jsonl (default: --gsm8k)")
    p.add_argument("--eval-problems", type=int, default=256, help="held-out test problems")
    p.add_argument("--eval-k", type=int, default=8, help="samples per test problem for pass@1/maj@k")
    p.add_argument("--max-new-tokens", type=int, default=48)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--out", required=True)
    p.add_argument("--resume", action="store_true")


def positive(name, kind=int, allow_zero=False):
    def parse(s):
        v = kind(s)
        if v < 0 or (v == 0 and not allow_zero):
            raise argparse.ArgumentTypeError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, got {s}")
        return v
    return parse


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("sft", help="supervised training on worked solutions")
    add_task_args(p)
    p.add_argument("--init", default=None, help="start from this checkpoint's weights (fresh optimizer)")
    p.add_argument("--sft-examples", type=positive("--sft-examples"), default=20000, help="size of the worked-solution set")
    p.add_argument("--val-examples", type=positive("--val-examples"), default=512)
    p.add_argument("--n-layer", type=positive("--n-layer"), default=4)
    p.add_argument("--n-head", type=positive("--n-head"), default=4)
    p.add_argument("--n-embd", type=positive("--n-embd"), default=128)
    p.add_argument("--block-size", type=positive("--block-size"), default=256)
    p.add_argument("--dropout", type=float, default=0.0)
    p.add_argument("--batch-size", type=positive("--batch-size"), default=24)
    p.add_argument("--max-iters", type=positive("--max-iters"), default=600, help="length of the lr schedule")
    p.add_argument("--stop-at", type=positive("--stop-at"), default=None, help="stop (and save) at this iter; --resume continues")
    p.add_argument("--lr", type=positive("--lr", float), default=3e-3)
    p.add_argument("--min-lr", type=positive("--min-lr", float, True), default=3e-4)
    p.add_argument("--warmup", type=positive("--warmup", int, True), default=100)
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--grad-clip", type=float, default=1.0)
    p.add_argument("--log-interval", type=int, default=25)
    p.add_argument("--eval-interval", type=int, default=100)
    p.set_defaults(func=cmd_sft)
    for name, obj in list(globals().items()):  # other sections register their subcommands
        if name.startswith("add_") and name.endswith("_parser"):
            obj(sub)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (DataError, ValueError, FloatingPointError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
