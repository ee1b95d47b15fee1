"""
train.py -- GPT training on the word-problem task.

  python train.py sft --out runs/sft                          supervised: learn worked solutions
  python train.py rl --init runs/sft/ckpt.pt --loss topr      RL fine-tuning (TOPR and baselines)

Both write `ckpt.pt` (atomically, common.Run's one schema) and `metrics.jsonl` (one JSON per line) under --out,
continue from there with --resume, and run as they are under torchrun (rank 0 logs, evaluates and saves).
Read `sft` and `rl` top to bottom: each is its algorithm's loop in one function, its helpers above it
(rl's iteration: prepare, then update_step per minibatch).

  1. SFT: sft_batch, sft_step (--grad-accum), SFT_DEFAULTS / sft_schedule (the lr: from scratch or fine-tuning),
     lr_at, sft_fitting (over-long examples dropped), band_check (--stop-when), pretrained (--init-from),
     plain_args (the flags, as a checkpoint stores them), sft
  2. RL's data: Rollout (a dataset), on_device / on_tokens (a dataset on the device once), in_chunks (rollouts
     shared by the processes), sample_solutions / first_departure /
     solution_logp (--task solve), sample_verdicts / verdict_policy_logp (--task verify), curated, minibatches,
     behavior_steps / behavior_logp (log mu), rl_task, token_advantages (--credit)
  3. RL's loop: step_stats, LOGIT_BYTES / MICRO_BATCH_LOGITS / ACTIVATION_BYTES / FREE_SHARE / default_micro_batch /
     row_bytes (--micro-batch), PEAK_FLOPS / peak_flops / device_peak / flops_per_token / mfu (model FLOPs utilization),
     rl_policy, rl_device (precision, loss scaler, micro-batch, peak FLOP/s), rl_objective (the loss of a
     micro-batch), prepare (an iteration's dataset), zero_std_share / mismatch (its statistics), ddp_sync,
     update_step (one optimizer step), describe (the start-up line), speed (tokens/s and MFU), report (an
     iteration's lines), rl
  4. The command line: main, add_run_args, add_init_from_arg, baseline_flag, band_flag, check_args
"""
import argparse
import contextlib
import dataclasses
import math
import os
import re
import time
from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F

import common
import data
import eval as ev
import topr
from common import UserError
from model import GPT, GPTConfig, pack, sequence_logprobs, verdict_logp, verdict_logp_at

# -----------------------------------------------------------------------------
# SFT: next-token prediction on worked solutions


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
    return common.to_device(x, device), common.to_device(y, device)  # on CUDA: queued, the host does not wait


def sft_step(model, train, ix, micro_steps, pad_id, rank, world, device, scaler):
    """Forward and backward of one optimizer step over the global batch ix (the same rows in every process), in
    micro_steps equal parts (--grad-accum). The loss is the mean over the completion tokens of the WHOLE batch: each
    part's summed loss is divided by the batch's token count, so the parts' gradients add up to the big batch's
    (a part with more tokens weighs more, as it does there), never to a mean of the parts' means. In each part,
    process `rank` takes rows rank, rank + world, ... and scales by world (DDP averages over the processes), and
    DDP all-reduces once, on the last part (ddp_sync). scaler: common.grad_scaler (fp16 cards: each part's loss
    scaled up for its backward pass; elsewhere a no-op). Returns (this process's share of the loss x world, on
    the device; the tokens the step read, padding included)."""
    n_tokens = sum(len(train[i][1]) for i in ix)  # predicted tokens in the GLOBAL batch
    size = len(ix) // micro_steps
    loss, tokens = 0.0, 0
    for j in range(micro_steps):
        x, y = sft_batch(train, ix[j * size:(j + 1) * size][rank::world], pad_id, device)
        with ddp_sync(model, world, last=j == micro_steps - 1):
            with common.autocast(device):
                logits, _ = model(x)
            # sum over this share / tokens of the global batch, times world (DDP averages over processes):
            # exactly the single-process mean over the global batch
            part = F.cross_entropy(logits.float().view(-1, logits.size(-1)), y.view(-1), ignore_index=-1,
                                   reduction="sum") * world / n_tokens
            scaler.scale(part).backward()
        loss, tokens = loss + part.detach(), tokens + x.numel() * world
    return loss, tokens


# sft's schedule when --lr, --min-lr, --warmup are not given (min_lr None: --lr, a constant rate). From random
# weights (or --init, this repo's own SFT checkpoint): warm-up, then cosine decay. From pretrained weights
# (--init-from): nanoGPT's fine-tuning config (config/finetune_shakespeare.py: learning_rate 3e-5, decay_lr False):
# constant, no warm-up. The from-scratch peak, 3e-3, is 5x GPT-2's own pretraining peak (6e-4): it would overwrite
# what the weights know rather than fine-tune them. --grad-clip is 1.0 for both, as nanoGPT's.
SFT_DEFAULTS = {"scratch": dict(lr=3e-3, min_lr=3e-4, warmup=100), "init_from": dict(lr=3e-5, min_lr=None, warmup=0)}


def sft_schedule(args):
    """(lr, min_lr, warmup): each flag as given, else SFT_DEFAULTS' for how the run starts (check_args resolves
    them once; sft prints them)."""
    base = SFT_DEFAULTS["init_from" if args.init_from else "scratch"]
    lr = base["lr"] if args.lr is None else args.lr
    min_lr = args.min_lr if args.min_lr is not None else lr if base["min_lr"] is None else base["min_lr"]
    return lr, min_lr, base["warmup"] if args.warmup is None else args.warmup


def lr_at(it, lr, min_lr, warmup, decay_iters):
    """Linear warm-up, then cosine decay from lr to min_lr by decay_iters, then min_lr (nanoGPT's get_lr)."""
    if it < warmup:
        return lr * (it + 1) / warmup
    frac = min(1.0, (it - warmup) / max(1, decay_iters - warmup))
    return min_lr + 0.5 * (1 + math.cos(math.pi * frac)) * (lr - min_lr)


def sft_fitting(tok, block_size, max_new_tokens, train, val, test, band):
    """sft's sets without what does not fit the context (data.fitting): worked solutions (prompt + completion)
    longer than block_size; held-out prompts (the test set, --stop-when's) without room for max_new_tokens.
    -> (train, val, test, band, {set: how many it lost} for the sets that lost any)."""
    lengths = lambda examples: [len(p) + len(c) for p, c in examples]
    train, d_train = data.fitting(train, lengths(train), block_size, "training example", "raise --block-size")
    val, d_val = data.fitting(val, lengths(val), block_size, "validation example", "raise --block-size")
    test, d_test = data.prompts_fitting(tok, test, block_size, max_new_tokens, "test prompt")
    band, d_band = data.prompts_fitting(tok, band, block_size, max_new_tokens, "--stop-when prompt") if band else (band, 0)
    return train, val, test, band, {k: n for k, n in zip(("train", "val", "test", "band"), (d_train, d_val, d_test, d_band)) if n}


def band_check(model, tok, problems, args, it, metrics):
    """--stop-when: is every named metric of the model, measured on held-out problems, inside its band?
    The base's headroom is then set by a measurement, not by a step count: the same recipe lands at other
    points on other machines (1 vs 2 threads sum in another order), but it stops where the band says."""
    greedy = any(name.endswith("greedy") for name, _, _ in args.band)  # else skipped: the band reads samples only
    res = ev.evaluate_gpt(model, tok, problems, k=args.eval_k, max_new_tokens=args.max_new_tokens, seed=args.seed,
                          greedy=greedy)
    values = {name: res[name] for name, _, _ in args.band}
    inside = all(lo <= res[name] <= hi for name, lo, hi in args.band)
    metrics.log(iter=it, band_in=inside, **{f"band_{k}": v for k, v in values.items()})
    print(f"iter {it:5d} | band {' '.join(f'{k} {v:.3f}' for k, v in values.items())} | "
          f"{'inside: stop' if inside else 'outside'}", flush=True)
    return inside


def pretrained(folder, tok, **overrides):
    """--init-from: GPT.from_pretrained(folder) (GPT-2's weights in the Hugging Face layout, or a nanoGPT
    checkpoint) for this tokenizer. The weights' vocabulary must be the tokenizer's, or the tokenizer's without
    its pad (GPT-2's 50,257 tokens for --tokenizer gpt2's 50,258), the pad row then added by from_pretrained
    (the file is read a second time). Any problem is a one-line UserError."""
    try:
        model = GPT.from_pretrained(folder, **overrides)
        n = model.config.vocab_size
        if n not in (tok.vocab_size - 1, tok.vocab_size):
            raise UserError(f"--init-from {folder}: the weights have a {n}-token vocabulary, the tokenizer {tok.name!r} "
                            f"{tok.vocab_size} tokens; they must match (GPT-2's weights need --tokenizer gpt2)")
        return model if n == tok.vocab_size else GPT.from_pretrained(folder, vocab_size=tok.vocab_size, **overrides)
    except UserError:
        raise
    except ValueError as e:  # from_pretrained's errors are one-line ValueErrors
        raise UserError(f"--init-from {folder}: {e}") from None


def plain_args(args):
    """The CLI flags as a dict of plain values (checkpoints load with weights_only=True)."""
    return {k: v for k, v in vars(args).items() if isinstance(v, (int, float, str, bool, list, type(None)))}


def sft(rank, world, device, args):
    """`train.py sft`: next-token cross-entropy on the completions of worked solutions (AdamW, warm-up +
    cosine lr or, from pretrained weights, a constant one: sft_schedule; gradient clipping; --grad-accum
    micro-steps per step); val loss + checkpoint every --eval-interval; held-out accuracy at the end."""
    master = rank == 0  # only rank 0 logs, evaluates and writes checkpoints
    torch.manual_seed(args.seed)
    task = data.Task.from_args(args)
    tok = data.get_tokenizer(args.tokenizer)
    train_problems = task.problems(args.sft_examples, args.seed, "train", use="sft")
    seen = {p.question for p in train_problems}
    train = [data.encode_example(tok, p) for p in train_problems]
    val = [data.encode_example(tok, p) for p in task.problems(args.val_examples, args.seed, "val", use="sft")
           if p.question not in seen]  # the validation loss is measured on problems never trained on
    test = task.problems(args.eval_problems, args.seed, "test")
    # --stop-when: the band is measured on held-out problems of the val split (never the test problems)
    band_problems = task.problems(args.eval_problems, args.seed, "val", use="test") if args.stop_when else None
    if args.init:  # continue SFT from a checkpoint's weights with a fresh optimizer (a baseline for RL)
        init = common.load_checkpoint(args.init, kind="gpt")
        # --dropout over the checkpoint's, as with --init-from (and nanoGPT's init_from)
        cfg = GPTConfig(**{**init["config"], "dropout": args.dropout})
    elif args.init_from:  # pretrained weights from a folder (GPT-2's): --block-size keeps their first positions
        init = pretrained(args.init_from, tok, dropout=args.dropout, block_size=args.block_size)
        init, cfg = {"model": init.state_dict()}, init.config
    else:
        if args.n_embd % args.n_head:
            raise UserError(f"--n-embd {args.n_embd} is not divisible by --n-head {args.n_head}")
        cfg = GPTConfig(block_size=args.block_size, vocab_size=tok.vocab_size, n_layer=args.n_layer,
                        n_head=args.n_head, n_embd=args.n_embd, dropout=args.dropout, bias=True)
    train, val, test, band_problems, dropped = sft_fitting(tok, cfg.block_size, args.max_new_tokens, train, val, test,
                                                           band_problems)
    step_size = args.batch_size * args.grad_accum  # sequences per optimizer step
    if step_size > len(train):
        accum = f" x --grad-accum {args.grad_accum} = {step_size}" if args.grad_accum > 1 else ""
        raise UserError(f"--batch-size {args.batch_size}{accum} is larger than the training set ({len(train)} examples)")
    if args.batch_size % world:
        raise UserError(f"--batch-size {args.batch_size} must be divisible by the number of processes ({world})")
    # the float settings (TF32, bf16 or fp16 autocast, --deterministic) before the model does any work
    precision = common.setup_precision(device, args.deterministic, cfg.n_embd // cfg.n_head)
    scaler = common.grad_scaler(device)  # fp16 cards only: the loss scaled for the backward pass
    model = GPT(cfg).to(device)
    if args.init or args.init_from:
        model.load_state_dict(init["model"])
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.95), weight_decay=args.weight_decay)
    gen = torch.Generator().manual_seed(args.seed)  # the batch order
    run = common.Run(args.out, "sft", args.resume, master, device, config=cfg)
    it = run.restore(model, opt)  # on --resume: the checkpoint's step, weights, optimizer and RNGs
    if run.ckpt.get("scaler"):
        scaler.load_state_dict(run.ckpt["scaler"])
    if args.resume:
        gen.set_state(run.ckpt["rng"]["batch"])
        print(f"resumed from {run.path} at iter {it}")
    best_val = run.ckpt.get("best_val", float("inf"))
    in_band = run.ckpt.get("in_band", False)  # a resumed base in its band stays
    train_model = common.ddp_wrap(model, device, world)
    if master:
        accum = f" x {args.grad_accum} micro-steps" if args.grad_accum > 1 else ""
        decay = args.lr_decay_iters or args.max_iters
        lr = (f"lr {args.lr:g} constant" if args.lr == args.min_lr and not args.warmup else
              f"lr {args.lr:g} (warm-up {args.warmup}, cosine to {args.min_lr:g} by iter {decay})")
        print(f"sft: {len(train)} examples, {model.get_num_params() / 1e6:.2f}M params, device {device} x {world}, "
              f"{args.max_iters} iters of batch {args.batch_size}{accum}, {lr}, clip {args.grad_clip:g}", flush=True)
        print(f"sft: {precision}", flush=True)
        if dropped:  # data.fitting: an over-long example is dropped, not the run
            run.metrics.log(iter=it, **{f"dropped_{k}": n for k, n in dropped.items()})
            print(f"sft: dropped over-long examples (context {cfg.block_size}, prompts + --max-new-tokens "
                  f"{args.max_new_tokens}): {', '.join(f'{k} {n}' for k, n in dropped.items())}", flush=True)

    def save():
        run.save(model, opt, cfg, it, rng=dict(batch=gen.get_state()), best_val=best_val, in_band=in_band,
                 tokenizer=args.tokenizer, args=plain_args(args), scaler=scaler.state_dict())

    @torch.no_grad()
    def val_loss():
        model.eval()
        tot, n = 0.0, 0
        for s in range(0, len(val), 64):
            x, y = sft_batch(val, range(s, min(s + 64, len(val))), tok.pad_id, device)
            with common.autocast(device):
                _, loss = model(x, y)
            m = (y != -1).sum().item()
            tot, n = tot + loss.item() * m, n + m
        model.train()
        return tot / max(n, 1)

    unchecked = []  # the losses of the steps since the last finiteness check, on the device
    # 1-based step numbers, like the "iter N" log lines
    check_losses = lambda: common.check_pending(unchecked, it - len(unchecked) + 1, world, device)

    t0, tokens, start_it = time.time(), 0, it
    # model FLOPs utilization on a CUDA card of known peak (PEAK_FLOPS; all processes' cards), else none. The
    # tokens counted are the padded rows', as nanoGPT counts block_size per row; T = the context, an upper bound
    _, peak = device_peak(device, world)
    step_flops = peak and flops_per_token(model.get_num_params(), cfg, cfg.block_size, True)
    stop_at = min(args.max_iters, args.stop_at or args.max_iters)
    model.train()
    while it < stop_at and not in_band and not run.should_stop(world, device):  # Ctrl-C in any process stops all
        for g in opt.param_groups:
            g["lr"] = lr_at(it, args.lr, args.min_lr, args.warmup, args.lr_decay_iters or args.max_iters)
        # every process draws the same global batch and takes its share of rows
        ix = torch.randint(len(train), (step_size,), generator=gen).tolist()
        opt.zero_grad(set_to_none=True)
        loss, n = sft_step(train_model, train, ix, args.grad_accum, tok.pad_id, rank, world, device, scaler)
        unchecked.append(loss)
        scaler.unscale_(opt)  # the clip sees the true gradient
        torch.nn.utils.clip_grad_norm_(model.parameters(), args.grad_clip)
        scaler.step(opt)  # fp16: skipped when the scaled gradient overflowed; elsewhere opt.step()
        scaler.update()
        it += 1
        tokens += n
        if it % args.log_interval == 0 or it % args.eval_interval == 0 or it == args.max_iters:
            check_losses()  # in every process (a collective under torchrun), before anything is logged or saved
        if it % args.log_interval == 0 or it == args.max_iters:
            loss = loss / world  # this process's share of the global mean
            if world > 1:
                torch.distributed.all_reduce(loss)  # every process takes part in this collective
            el = time.time() - t0
            if master:
                run.metrics.log(iter=it, loss=loss.item(), lr=opt.param_groups[0]["lr"], tok_per_s=tokens / el,
                                **({"mfu": mfu(step_flops, tokens / el, peak)} if peak else {}))
                print(f"iter {it:5d} | loss {loss.item():.4f} | lr {opt.param_groups[0]['lr']:.2e} | "
                      f"{tokens / el:.0f} tok/s | ETA {el / (it - start_it) * (stop_at - it):.0f}s", flush=True)
        if master and (it % args.eval_interval == 0 or it == args.max_iters):
            vl = val_loss()
            best_val = min(best_val, vl)
            run.metrics.log(iter=it, val_loss=vl)
            print(f"iter {it:5d} | val loss {vl:.4f}", flush=True)
            if band_problems:
                in_band = band_check(model, tok, band_problems, args, it, run.metrics)
            save()
        if band_problems and it % args.eval_interval == 0 and common.agree(in_band, world, device):
            break  # in the band: every process stops at the same step
    check_losses()  # stopped between two checks (Ctrl-C, --stop-at): check before the last save
    if not master:
        return None
    save()
    if band_problems and it == args.max_iters and not in_band:
        print(f"sft: --stop-when {' '.join(args.stop_when)} not reached by iter {it} (the cap): this base is outside "
              f"the band (its last 'band' line); raise --max-iters or change the recipe", flush=True)
    if it < args.max_iters and not in_band:
        print(f"stopped at iter {it}; continue with --resume", flush=True)
        return None
    model.eval()
    res = ev.evaluate_gpt(model, tok, test, k=args.eval_k, max_new_tokens=args.max_new_tokens, seed=args.seed)
    if band_problems:
        res["in_band"] = in_band  # the demo reports a base outside its band
    run.metrics.log(iter=it, **{f"test_{k}": v for k, v in res.items()})
    print(f"sft done: {it} iters in {time.time() - t0:.0f}s | {res['n']} test problems: greedy {res['greedy']:.3f} | "
          f"pass@1 {res['pass@1']:.3f} | invalid {res['invalid']:.3f} | ckpt {run.path}", flush=True)
    return res


# -----------------------------------------------------------------------------
# RL: the paper's iterated off-policy scheme (TOPR Sec. 4)
#
#   for each iteration:
#       behavior policy mu := current policy pi (frozen)
#       sample k completions per prompt at temperature 1, store (prompt, completion, log mu, reward)
#       --epochs passes of the chosen loss over that dataset (1 = mildly off-policy, several =
#       strongly off-policy; --iterations 1 = the fully offline setting)
#   No KL term; gradient clipping 1.0.

@dataclass
class Rollout:
    """A generated dataset: N samples, the rows of a prompt next to each other. As sampled, k consecutive rows
    per prompt (what topr.group_baseline and token_advantages read, before curation); curation keeps a subset
    in the same order, so a prompt may then have fewer rows, or none."""
    prompt: list                   # N token lists: the prompt each sample answers
    completion: list               # N token lists: the sampled completion (its EOS included)
    text: list                     # N strings: the decoded completion (the verdict, for the verifier)
    logp_behavior: torch.Tensor    # (N,) log mu(y|x): summed, untempered log-probs of the behavior policy
    reward: torch.Tensor           # (N,) +1 / -1
    invalid: torch.Tensor          # (N,) bool: no parsable '#### N' (the verifier: in the judged candidate)
    candidate_reward: torch.Tensor = None  # (N,) verifier only: is the judged candidate right (+1) or not (-1)
    first_error: torch.Tensor = None  # (N,) solver only: where the completion first departs from the worked solution
    baseline: torch.Tensor = None  # (N,) c, set after sampling (step 2 of the loop)
    token_adv: list = None         # each token's advantage (--credit prefix, first_error): N (len,) tensors, then
    token_logp_behavior: list = None  # each token's log mu (first_error)    (N, T) like `tokens` (on_tokens)
    tokens: torch.Tensor = None    # (N, T) each prompt + completion as `pack` lays them out, on the device (on_device)
    compl_mask: torch.Tensor = None  # (N, T) True on the completion's tokens (pack's)
    token_logp_sampler: list = None  # each token's log mu as the sampler computed it: N (len,) tensors (sum:
    #                                  logp_behavior as sampled), for the per-token mismatch (prepare)

    def __len__(self):
        return len(self.prompt)

    def __getitem__(self, idx):
        """The rows idx (a list or 1-D tensor of indices, on the host), as a Rollout. Tensors on a GPU are
        indexed with one copy of idx there (common.to_device: the host does not wait)."""
        idx = torch.as_tensor(idx, dtype=torch.long)
        rows, on = idx.tolist(), {}

        def pick(v):
            if v is None or isinstance(v, list):
                return None if v is None else [v[i] for i in rows]
            if v.device not in on:
                on[v.device] = common.to_device(idx, v.device)
            return v[on[v.device]]
        return Rollout(**{f.name: pick(getattr(self, f.name)) for f in fields(self)})


def on_device(batch, tok, device):
    """The dataset on the training device, copied ONCE (rl does it once per dataset), so that no update reads
    the host (on a GPU each such read is a stall): log mu, the reward, the baseline, and every row laid out by
    `pack` (right-padded: padding only at the ends of rows, known without a check on the device). The token
    lists (a micro-batch's width is read from them), texts and the invalid flags stay on the host."""
    tokens, _, compl = pack(batch.prompt, batch.completion, tok.pad_id)
    up = lambda t: None if t is None else common.to_device(t, device)
    return dataclasses.replace(batch, logp_behavior=up(batch.logp_behavior), reward=up(batch.reward),
                               baseline=up(batch.baseline), tokens=up(tokens), compl_mask=up(compl))


def on_tokens(batch, rows, device):
    """N per-token values (a (len,) host tensor per completion) laid out like on_device's `tokens`: one (N, T)
    tensor on the device, zero off the completions, copied once per dataset (the updates slice it)."""
    values = common.to_device(torch.cat(rows).float(), device)
    return torch.zeros(batch.compl_mask.shape, device=device).masked_scatter(batch.compl_mask, values)


def in_chunks(n, size, rank, world, work):
    """Rows of work(c, start, end) for the chunks c of range(n) of `size` items. Process `rank` runs
    chunks rank, rank + world, ...; every process gets all the rows back, in chunk order."""
    mine = [(c, work(c, s, min(s + size, n))) for c, s in enumerate(range(0, n, size)) if c % world == rank]
    return [row for rows in common.all_gather_rows(mine, world) for row in rows]


@torch.no_grad()
def sample_solutions(policy, tok, problems, k, max_new_tokens, seed, rank=0, world=1, batch_prompts=64):
    """k samples per problem from the frozen policy, scored: a Rollout grouped by prompt.

    Prompts go in chunks of batch_prompts, each sampled with its own generator seeded by (seed, chunk),
    so the dataset does not depend on how many processes share the work (see in_chunks)."""
    prompts = [tok.encode(data.format_prompt(p.question)) for p in problems]
    ev.check_fits(policy, prompts, max_new_tokens)  # in every process, before the chunks' all_gather
    was_training = policy.training
    policy.eval()

    def work(c, s, e):
        chunk = problems[s:e]
        gen = torch.Generator(device=policy.lm_head.weight.device).manual_seed(seed * 100_003 + c)
        rows = ev.sample_completions(policy, tok, prompts[s:e], k, max_new_tokens, 1.0, gen)  # training precision
        return [(prompts[s + r // k], comp, text, logp.sum().item(), logp, data.reward(text, chunk[r // k].answer),
                 data.is_invalid(text), first_departure(comp, references[s + r // k]))
                for r, (comp, text, logp) in enumerate(rows)]

    references = [tok.encode(data.format_completion(p.solution)) + [tok.eos_id] for p in problems]
    rows = in_chunks(len(problems), batch_prompts, rank, world, work)
    policy.train(was_training)
    prompt, completion, text, logp_b, token_logp, reward, invalid, first = zip(*rows)
    return Rollout(list(prompt), list(completion), list(text), torch.tensor(logp_b), torch.tensor(reward),
                   torch.tensor(invalid), first_error=torch.tensor(first), token_logp_sampler=list(token_logp))


def first_departure(completion, reference):
    """The index of the first token where a completion departs from the reference (its last token if it
    never does, e.g. the worked solution itself)."""
    t = next((t for t, (a, b) in enumerate(zip(completion, reference)) if a != b), min(len(completion), len(reference)))
    return min(t, len(completion) - 1)


def solution_logp(model, tok, batch, device):
    """log pi(completion | prompt) summed over its tokens (B,), the completion lengths (B,), the entropy of pi
    summed over all the completion tokens (for logging), and (per-token log pi (B, T), the completion mask
    (B, T)) for token-level credit. One forward pass; gradients flow. The rows of a dataset packed once by
    on_device (a batch that is not is packed here), cut to this batch's longest row: the same tensors as
    packing the batch alone."""
    batch = batch if batch.tokens is not None else on_device(batch, tok, device)
    T = max(len(p) + len(c) for p, c in zip(batch.prompt, batch.completion))  # from the host's lists: no read
    tokens, compl = batch.tokens[:, :T], batch.compl_mask[:, :T]
    tok_logp, ent = sequence_logprobs(model, tokens, None, compl, return_entropy=True)  # None: padded at the ends
    return topr.sequence_logp(tok_logp, compl), compl.sum(-1), ent.sum(), (tok_logp, compl)


# The verifier (--task verify; TOPR Sec. 5): the same loop with another action. Candidates come from
# a frozen solver checkpoint (correct and wrong ones, at the rate it makes them); the verifier's
# action is ONE token, "Yes" or "No", after the verification prompt (data.format_verify_prompt),
# sampled from its next-token distribution restricted to those two tokens (verdict_logp):
#
#     pi(v | x) = softmax([logit_Yes(x), logit_No(x)])[v]      reward = +1 if v is right, else -1
#
# Why restricted: a model trained only to solve puts ~0 probability on "Yes" after "Correct? ", so
# unrestricted sampling would never produce a positive sample (a cold start that an 8B instruction
# model, as in the paper, does not have). The restriction is constrained decoding: nothing else changes,
# and every loss of topr.py applies as is, with log pi = log pi(v | x) and length 1.

@torch.no_grad()
def sample_verdicts(verifier, solver, tok, problems, k, max_new_tokens, seed, rank=0, world=1, batch=128):
    """k candidates per problem from the frozen solver, then one verdict per candidate from the frozen
    verifier (the behavior policy mu): a Rollout grouped by problem, where prompt = the verification
    prompt, completion = [verdict token], candidate_reward = +-1 (is the candidate right)."""
    cands = sample_solutions(solver, tok, problems, k, max_new_tokens, seed, rank, world)
    yes_no = data.verdict_ids(tok)
    group = [problems[i // k] for i in range(len(cands))]
    prompts = [tok.encode(data.format_verify_prompt(p.question, t)) for p, t in zip(group, cands.text)]
    ev.check_fits(verifier, prompts, 1, "a verification prompt")  # + 1: the verdict
    was_training = verifier.training
    verifier.eval()

    def work(c, s, e):
        with common.autocast(next(verifier.parameters()).device):  # the training precision, as rollouts
            lp = verdict_logp(verifier, prompts[s:e], yes_no, tok.pad_id).float().cpu()
        gen = torch.Generator().manual_seed(seed * 100_003 + 50_000 + c)
        v = torch.multinomial(lp.exp(), 1, generator=gen).squeeze(1).tolist()  # 0 = Yes, 1 = No
        return [(data.VERDICTS[vi], lp[i - s, vi].item(),
                 data.verify_reward(data.VERDICTS[vi], cands.text[i], group[i].answer)) for i, vi in zip(range(s, e), v)]

    verdict, logp_b, reward = zip(*in_chunks(len(cands), batch, rank, world, work))
    verifier.train(was_training)
    return Rollout(prompts, [[yes_no[data.VERDICTS.index(v)]] for v in verdict], list(verdict), torch.tensor(logp_b),
                   torch.tensor(reward), cands.invalid, candidate_reward=cands.reward,
                   token_logp_sampler=[torch.tensor([lp]) for lp in logp_b])  # one token: the verdict's


def verdict_policy_logp(model, tok, batch, device):
    """Like solution_logp for the verifier's one-token action: log pi(verdict | x), pi restricted to {Yes, No}."""
    yes_no = data.verdict_ids(tok)
    batch = batch if batch.tokens is not None else on_device(batch, tok, device)
    T = max(len(p) for p in batch.prompt)  # the longest prompt (the verdict after it is never read: causal)
    last = batch.compl_mask.int().argmax(1) - 1  # each prompt's last position: its verdict comes next
    chosen = (batch.tokens.gather(1, last[:, None] + 1) == yes_no[1]).long()  # 0 = Yes, 1 = No
    lp = verdict_logp_at(model, batch.tokens[:, :T], last, yes_no)
    ent = -(lp.exp() * lp).sum().detach()
    return lp.gather(1, chosen).squeeze(1), torch.ones(len(batch), device=device), ent, None


def curated(batch, values, frac, seed, master):
    """The rows of batch kept by topr.curate(values, frac), or all of them if that fraction cannot be
    reached (e.g. no positive at all in this dataset: train on it as it is)."""
    try:
        return batch[topr.curate(values, frac, generator=torch.Generator().manual_seed(seed))]
    except ValueError as e:
        if master:
            print(f"not curated to a fraction {frac} ({e})", flush=True)
        return batch


def minibatches(order, batch_size, micro_batch, rank, world):
    """One epoch's optimizer steps over the dataset rows in `order`: for each, the rows of the minibatch
    (the same in every process; a multiple of world) and this process's micro-batches, as positions in it."""
    for s in range(0, len(order), batch_size):
        n = min(batch_size, len(order) - s) // world * world  # every process needs a share
        mine = list(range(rank, n, world))
        if n:
            yield order[s:s + n], [mine[m:m + micro_batch] for m in range(0, len(mine), micro_batch)]


def behavior_steps(order, batch_size, micro_batch, rank, world):
    """The micro-batches that compute log mu (behavior_logp): the first epoch's, minibatches(order), so that its
    on-policy rho is 1 exactly; then the rows those leave out under DDP (each minibatch's last len % world),
    shared among the processes: a later epoch's order trains on them, and every row needs its log mu."""
    steps = list(minibatches(order, batch_size, micro_batch, rank, world))
    seen = torch.zeros(len(order), dtype=torch.bool)  # order: a permutation of the dataset's rows
    for rows, _ in steps:
        seen[rows] = True
    left = (~seen).nonzero().flatten()  # none in one process
    mine = list(range(rank, len(left), world))
    return steps + [(left, [mine[m:m + micro_batch] for m in range(0, len(mine), micro_batch)])]


@torch.no_grad()
def behavior_logp(policy, tok, batch, log_pi, steps, world, device):
    """log mu(y|x) of every sample under the frozen policy, computed exactly as the updates compute
    log pi (same function, autocast and micro-batches: `steps` = behavior_steps(), the first epoch's), (N,);
    and each token's log mu, (N, T) laid out like on_device's `tokens` (zero off the completions; the
    verifier's one token: its verdict's), for --credit first_error and the per-token mismatch. Both are
    filled on the device: no read per micro-batch."""
    batch = batch if batch.tokens is not None else on_device(batch, tok, device)
    logp = torch.zeros(len(batch), dtype=torch.float64, device=device)
    tokens = torch.zeros(batch.compl_mask.shape, device=device)
    for rows, micros in steps:
        for idx in micros:
            micro = batch[rows[idx]]
            with common.autocast(device):
                lp, _, _, tokens_of = log_pi(policy, tok, micro, device)
            at = common.to_device(rows[idx], device)
            logp[at] = lp.double()
            tok_lp, compl = tokens_of or (lp[:, None], micro.compl_mask)  # the verifier: log pi of its verdict
            tokens[at, :compl.shape[1]] = torch.where(compl, tok_lp.float(), 0.0)
    if world > 1:  # each process computed its own rows (zeros elsewhere)
        torch.distributed.all_reduce(logp)
        torch.distributed.all_reduce(tokens)
    return logp.float(), tokens


def rl_task(args, task, policy, tok, device, rank, world, master):
    """What is sampled, how log pi is computed and how the policy is evaluated, for --task solve or verify:
    (sample(problems, seed) -> Rollout, log_pi(model, tok, batch, device), evaluate() -> (metrics, line))."""
    test, dropped = data.prompts_fitting(tok, task.problems(args.eval_problems, args.seed, "test"),
                                         policy.config.block_size, args.max_new_tokens, "test prompt")
    if dropped and master:  # a long GSM8K test question is not scored rather than ending the first evaluation
        print(f"{dropped} of {args.eval_problems} test problems dropped: longer than --block-size - --max-new-tokens",
              flush=True)
    gen_args = dict(k=args.k, max_new_tokens=args.max_new_tokens, rank=rank, world=world)
    if args.task == "solve":
        sample = lambda problems, seed: sample_solutions(policy, tok, problems, seed=seed, **gen_args)
        evaluate = lambda: ev.evaluate_solver(policy, tok, test, args.eval_k, args.max_new_tokens, args.seed,
                                              greedy=args.greedy_eval)
        return sample, solution_logp, evaluate
    solver, solver_tok, _ = ev.load_gpt(args.candidates, device)  # candidates come from a frozen solver
    if solver_tok.name != tok.name:
        raise UserError(f"--candidates uses tokenizer {solver_tok.name!r}, the verifier {tok.name!r}")
    solver.requires_grad_(False)
    sample = lambda problems, seed: sample_verdicts(policy, solver, tok, problems, seed=seed, **gen_args)
    test_texts = ev.sample_answers(solver, tok, test, args.eval_k, 1.0, args.max_new_tokens,  # sampled once
                                   torch.Generator(device=device).manual_seed(args.seed))[0] if master else None
    return sample, verdict_policy_logp, lambda: ev.evaluate_verifier(policy, tok, test, test_texts, args.eval_k)


def token_advantages(batch, credit, k):
    """Each sample's per-token advantages: --credit prefix, the group's prefix tree (topr.prefix_tree_advantages,
    which replaces the baseline: its root is the group's mean); --credit first_error / first_error_seq (a
    diagnostic: it reads the worked solution), a positive's A = R - c on every token, a negative's on its first
    departure only."""
    if credit == "prefix":
        return topr.prefix_tree_advantages(batch.completion, batch.reward, k)
    A = (batch.reward - batch.baseline).double()
    return [torch.full((len(c),), a) if a >= 0 else torch.zeros(len(c), dtype=torch.float64).index_fill(0, t, a)
            for c, a, t in zip(batch.completion, A.tolist(), batch.first_error.view(-1, 1))]


def step_stats(parts, n, grad_norm, step, world, device):
    """The statistics of one optimizer step, from what its micro-batches computed: parts = [(positions in the
    minibatch, the loss, the summed entropy of its tokens, {name: (b,) per-sample tensor})] (topr.py's rows
    and the lengths). Each value goes to its position in the minibatch (zeros elsewhere; under DDP summed
    over the processes, each of which filled its own rows), so any micro-batch size and process count give
    the same numbers. ONE transfer to the host, and a nan/inf loss (the ones backpropagated) stops every
    process here, before the optimizer step."""
    names, dtypes = list(parts[0][3]), {k: v.dtype for k, v in parts[0][3].items()}
    full = torch.zeros(len(names) * n + 1, dtype=torch.float64, device=device)  # the rows, then the entropy
    table = full[:-1].view(len(names), n)
    for idx, _, _, values in parts:
        table[:, common.to_device(torch.tensor(idx), device)] = torch.stack([values[k].double() for k in names])
    for _, _, entropy, _ in parts:
        full[-1] += entropy.double()
    if world > 1:
        torch.distributed.all_reduce(full)
    losses = torch.stack([loss.detach().double() for _, loss, _, _ in parts]).sum()  # this process's
    host = torch.cat([full, grad_norm.detach().double().reshape(1), losses.reshape(1)]).cpu()
    common.check_finite(host[-1], step, world, device)
    rows = {k: row.to(dtypes[k]) for k, row in zip(names, host[:-3].view(len(names), n))}
    return {**topr.summarize(rows), "entropy": host[-3].item() / rows["length"].sum().item(),  # per token
            "grad_norm": host[-2].item(), "length": rows["length"].double().mean().item()}


# The RL update's memory is mostly one micro-batch's logits, (rows, T, vocab): sequence_logprobs keeps them in
# fp32 for the backward pass, the entropy and the backward pass make a few more fp32 (rows, T, vocab) tensors
# (bench.py memory measures ~20 bytes per logit at the peak: RESULTS.md, "GPU readiness"). --micro-batch's
# default keeps them under MICRO_BATCH_LOGITS bytes at the model's full context; on CUDA it fills a share of
# the card's free memory instead, counting the activations too (at GPT-2's width as much again as the logits).
LOGIT_BYTES = 20  # per logit of a micro-batch at its peak, as measured (CPU fp32)
MICRO_BATCH_LOGITS = 4 * 2 ** 30
ACTIVATION_BYTES = 100  # per token, layer and unit of width at the peak (CPU fp32 measured ~95; bf16 needs less)
FREE_SHARE = 0.75  # of the free memory, after the gradients and AdamW's moments: the rest for fragmentation


def default_micro_batch(config, free_bytes=None, n_params=0):
    """--micro-batch when it is not given. free_bytes None (CPU, as before): 128 rows, fewer when their logits at
    the model's full context would pass MICRO_BATCH_LOGITS (the byte tokenizer: 128; GPT-2's vocabulary at block
    512: 8, at 1024: 4). CUDA: free_bytes = the card's free memory with the model on it, n_params its parameters;
    the rows that fit FREE_SHARE of what the gradients and AdamW's two moments (12 bytes per parameter) leave,
    at row_bytes each, up to 128."""
    if free_bytes is None:
        return int(max(1, min(128, MICRO_BATCH_LOGITS // (LOGIT_BYTES * config.block_size * config.vocab_size))))
    return int(max(1, min(128, (free_bytes - 12 * n_params) * FREE_SHARE // row_bytes(config))))


def row_bytes(config):
    """The update's memory per micro-batch row at the model's full context: its logits (LOGIT_BYTES each) and
    its activations (ACTIVATION_BYTES per token, layer and unit of width)."""
    return config.block_size * (LOGIT_BYTES * config.vocab_size + ACTIVATION_BYTES * config.n_layer * config.n_embd)


# MFU (model FLOPs utilization, PaLM's appendix B as nanoGPT's estimate_mfu): the FLOPs a token needs by the
# model's shape, times tokens per second, over the card's peak. The peaks: dense (no sparsity) 16-bit tensor-core
# FLOP/s of the datasheets, bf16 or fp16 with fp32 accumulation, by the words of torch.cuda.get_device_name;
# the first entry whose words all appear wins (the specific ones first). A card not here, and a CPU: no MFU.
PEAK_FLOPS = [(("H200", "NVL"), 835e12), (("H200",), 989e12), (("H100", "NVL"), 835e12), (("H100", "PCIe"), 756e12),
              (("H100",), 989e12), (("A100",), 312e12), (("L40S",), 362e12), (("L4",), 121e12), (("A10",), 125e12),
              (("RTX", "4090"), 165e12), (("V100", "PCIE"), 112e12), (("V100",), 125e12), (("T4",), 65e12)]


def peak_flops(name):
    """The peak FLOP/s of the CUDA card torch.cuda.get_device_name calls `name` (PEAK_FLOPS); None if unknown."""
    words = set(re.split(r"[\s_-]+", name or ""))
    return next((peak for key, peak in PEAK_FLOPS if words.issuperset(key)), None)


def device_peak(device, world):
    """(the card's name on CUDA, else None; the peak FLOP/s of all `world` processes' cards, None if unknown):
    what sft's and rl's MFU is measured against."""
    card = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    peak = peak_flops(card)
    return card, peak and peak * world


def flops_per_token(n_params, config, context, training):
    """nanoGPT's estimate of one token's FLOPs: a forward pass is 2 per weight (n_params without the position
    embeddings: the tied LM head counts once, as a matmul) and 4 L d T for attention's two matmuls over T =
    `context` positions, 2N + 4 L d T; training (forward and backward) three times that, 6N + 12 L d T."""
    forward = 2 * n_params + 4 * config.n_layer * config.n_embd * context
    return 3 * forward if training else forward


def mfu(flops_per_token, tokens_per_s, peak_flops):
    """Model FLOPs utilization: the FLOP/s the tokens needed, as a fraction of the peak (of all the processes'
    cards together: tokens_per_s is their sum)."""
    return flops_per_token * tokens_per_s / peak_flops


def rl_policy(args, run, device):
    """(policy, tokenizer, optimizer) of `train.py rl`: the policy from --init, --init-from or, on --resume, the
    run's checkpoint (rl then calls run.restore for the optimizer's state and the RNGs)."""
    if args.init_from and not args.resume:  # pretrained weights from a folder (GPT-2's), no SFT checkpoint
        tok = data.get_tokenizer(args.tokenizer)
        policy = pretrained(args.init_from, tok).to(device)
    else:
        policy, tok, _ = ev.load_gpt(run.path if args.resume else args.init, device)
    # The policy stays in eval mode throughout (dropout off): the samples come from it, and log mu and the
    # updates' log pi must be the same function of the weights, or on-policy rho != 1.
    policy.eval()
    opt = (torch.optim.SGD(policy.parameters(), lr=args.lr) if args.optimizer == "sgd" else  # plain SGD: no momentum
           torch.optim.AdamW(policy.parameters(), lr=args.lr, betas=(0.9, 0.95), weight_decay=0.0))
    return policy, tok, opt


def rl_objective(args, log_pi, tok, device):
    """The loss of one micro-batch, as chosen by --loss and --credit: objective(model, micro) -> (loss, the
    summed entropy of its tokens, {name: (b,) per-sample values}: topr.py's rows and the lengths).

    Two paths, on purpose. Sequence credit is token credit with A_i on every token (tests/test_topr.py:
    token_credit_loss then equals the sequence loss), and sent through token_credit_loss it gave the same
    weights bit for bit (topr and tis, 12 off-policy steps) at the same speed (+0.15 ms per 128-row
    micro-batch, in a 5-10 s step). It stays apart because topr_loss must stay anyway (ppo, sft_pos and
    neg_only are not of token credit's family, and the verifier's one-token action has no per-token log pi)
    and because two logged statistics would change meaning: "objective" (the taper T has no per-token form:
    the surrogate instead) and "mean_adv" (the sum over the tokens, L_i A_i); "loss" moved by 1 ulp."""
    # --length-norm constant divides by the longest possible action: --max-new-tokens, or 1 verdict token
    max_len = args.max_new_tokens if args.task == "solve" else 1
    # first_error tapers a negative's push by its token's own ratio; first_error_seq and prefix by the sequence's
    ratio = "token" if args.credit == "first_error" else "sequence"

    def objective(model, micro):
        with common.autocast(device):
            lp, lengths, ent, per_token = log_pi(model, tok, micro, device)  # log pi(y|x), summed
        if args.credit == "sequence":
            loss, values = topr.topr_loss(lp.float(), micro.logp_behavior, micro.reward, baseline=micro.baseline,
                                          name=args.loss, lengths=lengths, length_norm=args.length_norm,
                                          max_len=max_len, ppo_eps=args.ppo_eps)
        else:  # token-level credit (topr.py, 5.): each token its advantage, placed like its log pi
            tok_lp, compl = per_token
            cut = lambda t: None if t is None else t[:, :tok_lp.shape[1]]  # this micro-batch's width
            loss, values = topr.token_credit_loss(
                tok_lp, compl, micro.logp_behavior, micro.reward, cut(micro.token_adv), name=args.loss, ratio=ratio,
                token_logp_behavior=cut(micro.token_logp_behavior), lengths=lengths, length_norm=args.length_norm,
                max_len=max_len)
            if args.credit.startswith("first_error"):  # log A = R - c per sequence, as the other modes do
                A = micro.reward - micro.baseline  # (not the sum over a positive's tokens, L (R - c))
                values = {**values, "advantage": A.to(values["advantage"].dtype)}
        return loss, ent, {**values, "length": lengths}
    return objective


def prepare(args, itr, task, sample, log_pi, policy, tok, run, rank, world, device):
    """Steps 1 and 2 of an iteration, and the dataset laid out for step 3: (the dataset on the training device
    with its recomputed log mu, the --epochs orders of its rows, the metrics row that describes it)."""
    # 1. Fresh prompts (answers only), k samples each from the frozen behavior policy mu = pi.
    #    Seeds depend only on (seed, iteration): every method sees the same first dataset. A prompt with no
    #    room for --max-new-tokens in the context is dropped (counted; an error only if none is left).
    problems, dropped = data.prompts_fitting(tok, task.problems(args.prompts, args.seed * 1000 + itr + 1, "train", use="rl"),
                                             policy.config.block_size, args.max_new_tokens, "RL prompt")
    if dropped and run.master:
        print(f"iter {itr + 1:3d} | {dropped} of {args.prompts} prompts dropped: longer than --block-size - "
              f"--max-new-tokens ({policy.config.block_size - args.max_new_tokens} tokens)", flush=True)
    t_roll = time.time()
    batch = sample(problems, args.seed * 1000 + itr)
    t_roll = time.time() - t_roll
    rollout_speed = {"rollout_tok_per_s": sum(map(len, batch.completion)) / t_roll} if args.task == "solve" else {}
    zero_std = zero_std_share(batch.reward, args.k)  # before curation splits the groups; and per slice (shortcut)
    zero_std_slices = {f"frac_reward_zero_std_{s}": zero_std_share(batch.reward, args.k, [p.slice == s for p in problems])
                       for s in sorted({p.slice for p in problems} - {"all"})}

    # 2. Rewards come with the samples. Baseline c: the per-prompt mean reward (group), or a constant
    #    (which sets the effective positive fraction, topr.effective_pos_fraction). Optional curation:
    #    keep a fraction of correct candidates (verifier) and of positive samples.
    batch.baseline = (topr.group_baseline(batch.reward, args.k) if args.baseline == "group"
                      else torch.full_like(batch.reward, args.baseline))
    if args.credit != "sequence":  # token-level credit (topr.py section 5), before curation splits groups
        batch.token_adv = token_advantages(batch, args.credit, args.k)
    if args.candidate_pos_frac is not None:  # verifier: e.g. 0.5 = as many right as wrong candidates
        batch = curated(batch, batch.candidate_reward, args.candidate_pos_frac, args.seed + itr, run.master)
    if args.target_pos_frac is not None:
        batch = curated(batch, batch.reward, args.target_pos_frac, args.seed + itr, run.master)
    frac = lambda mask: mask.sum().item() / len(batch)
    row = dict(dataset_size=len(batch), dataset_pos_frac=frac(batch.reward > 0), rollout_invalid=frac(batch.invalid),
               rollout_s=t_roll, prompts_dropped=dropped, frac_reward_zero_std=zero_std, **zero_std_slices, **rollout_speed,
               **({} if batch.candidate_reward is None else
                  {"dataset_candidates_correct": frac(batch.candidate_reward > 0)}))
    run.metrics.log(iteration=itr, **row)

    # 3. (its data) --epochs passes of minibatch updates over the stored dataset, in these orders.
    #    log mu is recomputed first, by the frozen policy with the forward pass, precision (autocast)
    #    and micro-batches of the first epoch's updates: on-policy, rho = 1 exactly (generate's own
    #    log-probs take other kernels: under bf16 they differ by a few hundredths of a nat per sequence);
    #    under DDP also of the rows that epoch leaves out (behavior_steps), which later epochs train on.
    order_gen = torch.Generator().manual_seed(args.seed * 1000 + itr)
    orders = [torch.randperm(len(batch), generator=order_gen) for _ in range(args.epochs)]
    batch = on_device(batch, tok, device)  # ONCE per dataset: the updates read nothing from the host
    sampled, sampled_tokens = batch.logp_behavior, on_tokens(batch, batch.token_logp_sampler, device)  # generate's
    batch.logp_behavior, recomputed_tokens = behavior_logp(
        policy, tok, batch, log_pi, behavior_steps(orders[0], args.batch_size, args.micro_batch, rank, world),
        world, device)
    run.metrics.log(iteration=itr, **mismatch(sampled, batch.logp_behavior, sampled_tokens, recomputed_tokens,
                                              batch.compl_mask))
    batch.token_logp_sampler = None  # read once, above
    batch.token_logp_behavior = recomputed_tokens if args.credit == "first_error" else None
    if args.credit != "sequence":  # the per-token values on the device once, like the rest of the dataset
        batch.token_adv = on_tokens(batch, batch.token_adv, device)
    return batch, orders, row


def zero_std_share(reward, k, among=None):
    """The share of groups (k consecutive rows, as sampled) whose rewards are all equal: under a group baseline
    every advantage there is 0, no signal (TRL's frac_reward_zero_std). among: a bool per group, the groups to
    count (e.g. one slice's prompts; NaN if none)."""
    groups = reward.view(-1, k)
    single = (groups == groups[:, :1]).all(1).double()
    return single.mean().item() if among is None else single[torch.tensor(among, dtype=torch.bool)].mean().item()


def mismatch(sampled, recomputed, sampled_tokens, recomputed_tokens, compl):
    """The training-inference mismatch, |log mu as the sampler computed it - as the training forward recomputes
    it|: per sequence (the summed log mu: mean and max over the samples) and per token (mean and max over every
    completion token: TRL's sampling/sampling_logp_difference). sampled, recomputed: (N,); the per-token
    values (N, T), zero off the completions, compl (N, T) the completion mask. One read of the device."""
    gap = (recomputed.double() - sampled.double()).abs()
    tok_gap = (recomputed_tokens.double() - sampled_tokens.double()).abs()  # zero off the completions
    values = torch.stack([gap.mean(), gap.max(), tok_gap.sum() / compl.sum(), tok_gap.max()]).tolist()
    return dict(zip(["mismatch_mean", "mismatch_max", "mismatch_token_mean", "mismatch_token_max"], values))


def ddp_sync(model, world, last):
    """Under DDP, all-reduce the gradients once per optimizer step: skip it for all but the last
    micro-batch of this process (no_sync); a single process needs nothing."""
    return model.no_sync() if world > 1 and not last else contextlib.nullcontext()


def update_step(model, opt, mb, micros, objective, step, grad_clip, world, device, scaler):
    """One optimizer step over the minibatch mb (the same rows in every process): this process's micro-batches
    (positions in mb), each loss backpropagated with its share of the minibatch's mean, the gradient clipped;
    step: this step's number; scaler: common.grad_scaler (fp16: the loss scaled up for the backward pass, the
    gradient unscaled before clipping, a step with an inf/nan gradient skipped; otherwise a no-op). Returns its
    statistics (step_stats, which stops every process on a nan/inf loss before the optimizer step, and the
    fraction of invalid samples)."""
    opt.zero_grad(set_to_none=True)
    parts = []  # per micro-batch: its positions in mb, loss, entropy, per-sample values (on the device)
    for j, idx in enumerate(micros):
        with ddp_sync(model, world, last=j == len(micros) - 1):  # DDP: all-reduce on the last one
            loss, ent, values = objective(model, mb[idx])
            scaler.scale(loss * len(idx) / len(mb) * world).backward()  # its share of the minibatch's mean
        parts.append((idx, loss, ent, values))
    scaler.unscale_(opt)  # the clip and the logged norm see the true gradient
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    stats = step_stats(parts, len(mb), grad_norm, step, world, device)  # stops on nan/inf
    scaler.step(opt)
    scaler.update()
    return {**stats, "invalid": mb.invalid.sum().item() / len(mb)}


def rl_device(args, run, policy, device, world):
    """What the device decides in `train.py rl`, before the policy does any work: (the loss scaler: fp16 cards,
    restored on --resume; the card's name on CUDA; the peak FLOP/s of all the processes' cards for MFU, None if
    not known; the float settings' line: common.setup_precision, --deterministic). Sets --micro-batch's default:
    on CUDA from the card's free memory (each process its own: any micro-batch gives the same update)."""
    cfg, cuda = policy.config, device.type == "cuda"
    precision = common.setup_precision(device, args.deterministic, cfg.n_embd // cfg.n_head)
    scaler = common.grad_scaler(device)
    if run.ckpt.get("scaler"):
        scaler.load_state_dict(run.ckpt["scaler"])
    free = torch.cuda.mem_get_info(device)[0] if cuda else None
    args.micro_batch = args.micro_batch or default_micro_batch(cfg, free, policy.get_num_params(False))
    return (scaler, *device_peak(device, world), precision)


def describe(args, device, world, card=None):
    """rl's start-up line: the task, the loss and what makes its advantages, and the peak MFU is measured against
    (card: torch.cuda.get_device_name on CUDA, None elsewhere)."""
    c = topr.PRESETS.get(args.loss, {}).get("baseline", args.baseline)  # sft_pos, neg_only: the preset's c
    adv = f"baseline {'group mean' if c == 'group' else f'c={c:+g}'}"
    adv = {"sequence": adv, "first_error": f"{adv}, credit first_error", "first_error_seq": f"{adv}, credit "
           f"first_error_seq",  # --credit prefix uses no baseline
           "prefix": "credit prefix (the group's prefix tree)"}[args.credit]
    return (f"rl: task {args.task}, loss {args.loss}, {args.iterations} iterations x {args.prompts} prompts x "
            f"{args.k} samples, {args.epochs} epoch(s), {adv}, "
            f"lr {args.lr}, micro-batch {args.micro_batch}, device {device} x {world}, " +
            (f"MFU against {peak_flops(card) / 1e12:g} TFLOP/s ({card})" if peak_flops(card) else
             f"no MFU ({card}: not in train.PEAK_FLOPS)" if card else f"no MFU on {device.type} (no peak FLOP/s)"))


def speed(dataset, tokens, seconds, context, n_params, config, peak):
    """An iteration's throughput beside the rollout's tokens/s (prepare's row, --task solve): the updates'
    tokens/s (tokens: of every row of every optimizer step; seconds: the steps' own time) and, with the peak
    FLOP/s of all the processes' cards (PEAK_FLOPS; None: left out), the MFU of the rollout (a forward pass per
    new token) and of the updates (training), at T = context (the dataset's mean row length). No step: {}."""
    if not tokens:
        return {}
    row = {"update_tok_per_s": tokens / seconds}
    if peak:
        row["update_mfu"] = mfu(flops_per_token(n_params, config, context, True), row["update_tok_per_s"], peak)
        if "rollout_tok_per_s" in dataset:
            row["rollout_mfu"] = mfu(flops_per_token(n_params, config, context, False), dataset["rollout_tok_per_s"],
                                     peak)
    return row


def report(itr, dataset, stats, speeds, update_s, eta_s):
    """rl's two lines per iteration: the dataset and the last step's statistics, the times; then the share of
    zero-std groups, tokens/s and (on CUDA) MFU."""
    print(f"iter {itr:3d} | pos frac {dataset['dataset_pos_frac']:.3f} | loss {stats['loss']:.4f} | "
          f"mean alpha {stats['mean_alpha']:.3f} | logp+ {stats['logp_reward_pos']:.2f} "
          f"logp- {stats['logp_reward_neg']:.2f} | rollout {dataset['rollout_s']:.1f}s update {update_s:.1f}s"
          f" | ETA {eta_s:.0f}s", flush=True)
    rates = {**dataset, **speeds}
    tok_s = [f"{k.split('_')[0]} {rates[k]:.0f}" for k in ("rollout_tok_per_s", "update_tok_per_s") if k in rates]
    mfus = [f"{k.split('_')[0]} {rates[k]:.1%}" for k in ("rollout_mfu", "update_mfu") if k in rates]
    print(f"iter {itr:3d} | zero-std groups {dataset['frac_reward_zero_std']:.3f} | tok/s {', '.join(tok_s)}"
          + (f" | MFU {', '.join(mfus)}" if mfus else ""), flush=True)


def rl(rank, world, device, args):
    """`train.py rl`: set-up, then per iteration (1) the frozen policy samples a Rollout, (2) baseline and
    curation (prepare), (3) --epochs of minibatch updates (update_step) with topr.py's loss; evaluate,
    checkpoint, repeat."""
    master = rank == 0  # only rank 0 evaluates, logs and writes checkpoints
    torch.manual_seed(args.seed)
    if args.credit.startswith("first_error") and world > 1:
        raise UserError(f"--credit {args.credit} runs in one process (a diagnostic, not checked under torchrun)")
    run = common.Run(args.out, "rl", args.resume, master, device)
    policy, tok, opt = rl_policy(args, run, device)
    scaler, card, peak, precision = rl_device(args, run, policy, device, world)
    step = run.restore(policy, opt)  # on --resume: the checkpoint's step, optimizer state and RNGs
    itr, samples = run.ckpt.get("iteration", 0), run.ckpt.get("samples", 0)
    if args.resume and master:
        print(f"resumed from {run.path} at iteration {itr}")
    start_itr = itr
    model = common.ddp_wrap(policy, device, world)
    task = data.Task.from_args(args)
    sample, log_pi, evaluate = rl_task(args, task, policy, tok, device, rank, world, master)
    objective = rl_objective(args, log_pi, tok, device)
    if master:
        print(describe(args, device, world, card), precision, sep="\n", flush=True)
    evaluated = None  # the step of the last evaluation: none is repeated at the same step

    def log_eval():
        nonlocal evaluated
        if master and evaluated != step:
            evaluated = step
            res, line = evaluate()
            run.metrics.log(iteration=itr, step=step, samples=samples, **{f"test_{k}": v for k, v in res.items()})
            print(f"iter {itr:3d} | samples {samples:6d} | {line}", flush=True)

    if itr == 0:
        log_eval()  # the SFT start
    t0 = time.time()
    while itr < args.iterations and not run.should_stop(world, device):  # Ctrl-C in any process
        t_itr = time.time()
        batch, orders, dataset = prepare(args, itr, task, sample, log_pi, policy, tok, run, rank, world, device)
        lengths = torch.tensor([len(p) + len(c) for p, c in zip(batch.prompt, batch.completion)])
        t_steps, tokens = 0.0, 0  # the optimizer steps' own time (no evaluation) and tokens
        # 3. --epochs passes of minibatch updates over the stored dataset. A minibatch is the same in
        #    every process; process `rank` takes its rows rank, rank + world, ... in micro-batches.
        for epoch, order in enumerate(orders):
            for rows, micros in minibatches(order, args.batch_size, args.micro_batch, rank, world):
                t_step = time.time()
                stats = update_step(model, opt, batch[rows], micros, objective, step + 1, args.grad_clip, world, device,
                                    scaler)
                t_steps, tokens = t_steps + time.time() - t_step, tokens + int(lengths[rows].sum())
                step, samples = step + 1, samples + len(rows)  # samples seen by the optimizer (reuse counts again)
                run.metrics.log(iteration=itr, epoch=epoch, step=step, samples=samples, **stats)
                if args.eval_steps and step % args.eval_steps == 0:
                    log_eval()  # points through one pass over a dataset
            if args.eval_each_epoch and epoch + 1 < args.epochs:
                log_eval()
        speeds = speed(dataset, tokens, t_steps, lengths.double().mean().item(), policy.get_num_params(), policy.config,
                       peak)
        run.metrics.log(iteration=itr, **speeds)
        itr += 1
        if master:  # update: the rest of the iteration (log mu's recomputation, the epochs)
            el = time.time() - t0
            report(itr, dataset, stats, speeds, time.time() - t_itr - dataset["rollout_s"],
                   el / (itr - start_itr) * (args.iterations - itr))
        if itr % args.eval_every == 0 or itr == args.iterations:
            log_eval()
        run.save(policy, opt, policy.config, step, iteration=itr, samples=samples, tokenizer=tok.name,
                 args=plain_args(args), scaler=scaler.state_dict())
    return None


# -----------------------------------------------------------------------------
# Command line


@common.cli
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    pos, posf = common.positive, common.positive_float

    p = sub.add_parser("sft", help="supervised training on worked solutions")
    ev.add_task_args(p)
    p.add_argument("--tokenizer", default="byte", help="byte (offline) or gpt2 (needs tiktoken's cached files)")
    p.add_argument("--init", default=None, help="start from this checkpoint's weights (fresh optimizer)")
    add_init_from_arg(p)
    p.add_argument("--sft-conflict-frac", type=common.flag(float, min=0, max=1), default=None,
                   help="--shortcut: fraction of conflict problems among the worked solutions "
                        f"(default {data.Task.sft_conflict_frac})")
    p.add_argument("--sft-examples", type=pos, default=20000, help="size of the worked-solution set")
    p.add_argument("--val-examples", type=pos, default=512, help="validation problems (never trained on)")
    p.add_argument("--n-layer", type=pos, default=4, help="transformer blocks")
    p.add_argument("--n-head", type=pos, default=4, help="attention heads (must divide --n-embd)")
    p.add_argument("--n-embd", type=pos, default=128, help="embedding width")
    p.add_argument("--block-size", type=pos, default=256, help="context length in tokens")
    p.add_argument("--dropout", type=common.flag(float, min=0.0, max=0.99), default=0.0)
    p.add_argument("--batch-size", type=pos, default=24, help="sequences per optimizer step (per micro-step with "
                   "--grad-accum)")
    p.add_argument("--grad-accum", type=pos, default=1,
                   help="micro-steps per optimizer step, each of --batch-size sequences: the step of one batch of "
                        "--batch-size x --grad-accum (its per-token mean loss, exactly: sft_step) in less memory")
    p.add_argument("--max-iters", type=pos, default=600, help="iterations (and the lr schedule's length)")
    p.add_argument("--lr-decay-iters", type=pos, default=None,
                   help="the cosine decay ends here, then --min-lr until --max-iters (default: --max-iters)")
    p.add_argument("--stop-at", type=pos, default=None, help="stop (and save) at this iter; --resume continues")
    p.add_argument("--lr", type=posf, default=None, help="peak learning rate (default 3e-3; with --init-from "
                   "nanoGPT's fine-tuning 3e-5: SFT_DEFAULTS; printed at start-up)")
    p.add_argument("--min-lr", type=common.flag(float, min=0.0), default=None,
                   help="learning rate at the end (default 3e-4; with --init-from --lr: constant)")
    p.add_argument("--warmup", type=common.flag(int, min=0), default=None,
                   help="linear warm-up iterations (default 100; with --init-from 0)")
    p.add_argument("--weight-decay", type=common.flag(float, min=0.0), default=0.0)
    p.add_argument("--grad-clip", type=posf, default=1.0, help="max global gradient norm")
    p.add_argument("--log-interval", type=pos, default=25, help="iterations between log lines")
    p.add_argument("--eval-interval", type=pos, default=100, help="iterations between val loss + checkpoint")
    p.add_argument("--stop-when", nargs="+", default=None, metavar="METRIC=LO:HI",
                   help="stop at the first --eval-interval where every METRIC (an evaluate_gpt key, e.g. "
                        "conflict_pass@1=0.3:0.5 normal_pass@1=0.9:1) lies in [LO, HI] on --eval-problems held-out "
                        "val problems x --eval-k samples; --max-iters is the cap")
    add_run_args(p)
    p.set_defaults(func=sft)

    p = sub.add_parser("rl", help="RL fine-tuning from an SFT checkpoint (TOPR and baselines)")
    ev.add_task_args(p)
    p.add_argument("--init", help="SFT checkpoint to start from (or --init-from; required unless --resume)")
    add_init_from_arg(p)
    p.add_argument("--tokenizer", default=None, help="with --init-from: byte (default) or gpt2 (a checkpoint names its own)")
    p.add_argument("--task", choices=["solve", "verify"], default="solve",
                   help="solve: learn to solve; verify: learn to judge a solver's candidates (Yes/No)")
    p.add_argument("--candidates", default=None, help="verify: solver checkpoint that writes the candidates (default: --init)")
    p.add_argument("--candidate-pos-frac", type=common.fraction, default=None,
                   help="verify: curate each dataset to this fraction of correct candidates")
    p.add_argument("--rl-conflict-frac", type=common.flag(float, min=0, max=1), default=None,
                   help="--shortcut: fraction of conflict problems among the RL prompts "
                        f"(default {data.Task.rl_conflict_frac})")
    p.add_argument("--loss", default="topr", choices=topr.LOSSES, help="the loss of topr.py")
    p.add_argument("--iterations", type=pos, default=8, help="sample-then-train rounds")
    p.add_argument("--epochs", type=pos, default=1, help="passes over each generated dataset")
    p.add_argument("--prompts", type=pos, default=64, help="fresh prompts per iteration")
    p.add_argument("--k", type=pos, default=16, help="samples per prompt (verify: candidates per problem)")
    p.add_argument("--batch-size", type=pos, default=512, help="sequences per optimizer step")
    p.add_argument("--micro-batch", type=pos, default=None,
                   help="sequences per forward pass (same update for any value); default on CUDA: what the card's "
                        "free memory holds; elsewhere 128, fewer at a large vocabulary (GPT-2's at block 512: 8)")
    p.add_argument("--lr", type=posf, default=3e-5, help="learning rate (constant)")
    p.add_argument("--baseline", type=baseline_flag, default="group", help="'group' (per-prompt mean reward) or a constant c")
    p.add_argument("--target-pos-frac", type=common.fraction, default=None, help="curate each dataset to this positive fraction")
    p.add_argument("--credit", choices=["sequence", "prefix", "first_error", "first_error_seq"], default="sequence",
                   help="which tokens a sample's advantage reaches: all (sequence, the paper's); each token its "
                        "value gain in the group's prefix tree (prefix: replaces --baseline); or, for negatives, "
                        "only the first token that departs from the worked solution, tapered by its own ratio "
                        "(first_error: a diagnostic that reads the reference; first_error_seq: the same push, "
                        "tapered by the sequence's ratio as sequence credit is). Not with ppo, sft_pos, neg_only")
    p.add_argument("--length-norm", choices=topr.LENGTH_NORMS, default="sequence",
                   help="divide each sequence's term by its own length (every run in RESULTS.md unless it says "
                        "otherwise; reportedly the TOPR paper's), by --max-new-tokens for every sequence (constant: "
                        "keeps the on-policy equivalence of baselines exact, README), or not at all (none)")
    p.add_argument("--optimizer", choices=["adamw", "sgd"], default="adamw",
                   help="adamw (betas 0.9, 0.95) or plain SGD (no momentum): Adam rescales each step by the "
                        "gradient's RMS, SGD does not")
    p.add_argument("--ppo-eps", type=posf, default=0.2, help="ppo: clip range of the ratio")
    p.add_argument("--grad-clip", type=posf, default=1.0, help="max global gradient norm")
    p.add_argument("--eval-every", type=pos, default=1, help="iterations between evaluations")
    p.add_argument("--eval-each-epoch", action="store_true", help="also evaluate after every epoch")
    p.add_argument("--eval-steps", type=pos, default=None, help="also evaluate every N optimizer steps")
    p.add_argument("--greedy-eval", action=argparse.BooleanOptionalAction, default=True,
                   help="--task solve: evaluations decode greedily too (--no-greedy-eval: they do not, a quarter less "
                        "time at --eval-k 4; the sampled metrics are the same)")
    add_run_args(p)
    p.set_defaults(func=rl)

    args = parser.parse_args(argv)
    check_args(args)
    common.make_out_dir(args.out)
    return common.distributed(args.func, args, device=args.device)


def add_run_args(p):
    p.add_argument("--eval-problems", type=common.positive, default=None,
                   help="held-out test problems (default 256; with --gsm8k every problem of --gsm8k-test)")
    p.add_argument("--eval-k", type=common.positive, default=8, help="samples per test problem for pass@1/maj@k")
    p.add_argument("--max-new-tokens", type=common.positive, default=48, help="longest completion")
    p.add_argument("--seed", type=int, default=0)
    common.add_device_arg(p)
    p.add_argument("--out", required=True, help="run folder: ckpt.pt and metrics.jsonl")
    p.add_argument("--resume", action="store_true", help="continue from <out>/ckpt.pt")
    p.add_argument("--deterministic", action="store_true",
                   help="CUDA: deterministic algorithms and cuBLAS's workspace setting, so that a rerun repeats a run "
                        "bit for bit; slower (common.setup_precision). A CPU run repeats already")


def add_init_from_arg(p):
    p.add_argument("--init-from", default=None, help="a folder of pretrained weights (GPT-2's model.safetensors or "
                   "pytorch_model.bin with config.json, or a nanoGPT ckpt.pt): GPT.from_pretrained; nothing is downloaded")


def baseline_flag(s):
    if s == "group":
        return s
    return common.flag(float, name="'group' or a number")(s)


def band_flag(s, args):
    """--stop-when's METRIC=LO:HI -> (metric, lo, hi); the metric must be one evaluate_gpt reports for this task."""
    kinds = ["greedy", "pass@1", f"pass@{args.eval_k}", f"maj@{args.eval_k}", "invalid"]
    names = [f"{pre}{k}" for pre in ([""] + [f"{s}_" for s in data.SLICES] if args.shortcut else [""]) for k in kinds]
    name, _, rng = s.partition("=")
    lo, _, hi = rng.partition(":")
    try:
        lo, hi = float(lo), float(hi)
    except ValueError:
        raise UserError(f"--stop-when {s!r}: expected METRIC=LO:HI, e.g. conflict_pass@1=0.3:0.5") from None
    if name not in names:
        raise UserError(f"--stop-when {s!r}: unknown metric {name!r}; one of {', '.join(names)}")
    if not 0 <= lo <= hi <= 1:
        raise UserError(f"--stop-when {s!r}: the band must satisfy 0 <= LO <= HI <= 1")
    return name, lo, hi


def check_args(args):
    """Flag combinations that argparse alone cannot check; the shortcut task's defaults."""
    for flag in ("sft_conflict_frac", "rl_conflict_frac"):
        if getattr(args, flag, None) is not None and not args.shortcut:
            raise UserError(f"--{flag.replace('_', '-')} only applies to the shortcut task (--shortcut)")
        if hasattr(args, flag) and getattr(args, flag) is None:
            setattr(args, flag, getattr(data.Task, flag))  # the default: data.Task's
    if getattr(args, "stop_when", None):
        args.band = [band_flag(s, args) for s in args.stop_when]
    if args.eval_problems is None:  # GSM8K: the whole test file (its 1,319), as papers report it
        args.eval_problems = len(data.load_gsm8k(args.gsm8k_test)) if args.gsm8k and args.gsm8k_test else 256
    if args.func is sft:
        args.lr, args.min_lr, args.warmup = sft_schedule(args)
    if args.init_from is not None:
        if args.init:
            raise UserError("--init and --init-from exclude each other: a checkpoint or a folder of weights")
        if not os.path.isdir(args.init_from):
            raise UserError(f"--init-from {args.init_from}: no such folder (it should hold model.safetensors, "
                            f"pytorch_model.bin or ckpt.pt)")
    if args.func is rl:
        if not args.resume and not args.init and not args.init_from:
            raise UserError("rl needs --init <sft ckpt.pt> or --init-from <folder> (or --resume)")
        if args.tokenizer is not None and not args.init_from:
            raise UserError("--tokenizer only applies with --init-from (a checkpoint names its own tokenizer)")
        args.tokenizer = args.tokenizer or "byte"
        if args.task == "verify":
            args.candidates = args.candidates or args.init
            if not args.candidates:
                raise UserError("rl --task verify needs --candidates <solver ckpt.pt> (default: --init)")
            if not args.greedy_eval:
                raise UserError("--no-greedy-eval only applies to --task solve (the verifier's evaluation decodes nothing)")
        elif args.candidate_pos_frac is not None or args.candidates:
            raise UserError("--candidates and --candidate-pos-frac only apply to --task verify")
        if args.credit != "sequence" and (args.task != "solve" or "baseline" in topr.PRESETS.get(args.loss, {"baseline": 0})):
            raise UserError(f"--credit {args.credit} needs --task solve and a loss of the family without a fixed "
                            f"baseline (topr, reinforce, tis, is); got --task {args.task} --loss {args.loss}")


if __name__ == "__main__":
    main()
