"""
bench.py -- speed benchmarks. Ratios are measured side by side in one process, as medians of
interleaved repetitions (the machine is shared and noisy; absolute numbers drift, ratios much less).

  python bench.py gpt     KV-cached generation vs full recomputation; training tokens/s
  python bench.py rl      RL rollout and update tokens/s, and where the time goes
  python bench.py gsn     GSN training images/s and matmul FLOP/s vs this machine's matmul peak
  python bench.py memory  peak memory of one RL micro-batch at GPT-2's vocabulary, measured and predicted
  python bench.py all     the four above
  python bench.py gpu-check   one prepared check for a GPU (<= 5 min): environment and precision, free memory and
                          the RL micro-batch it gives, the attention kernel that runs, no stall inside a step,
                          rho == 1 under bf16, the GPT-2 shape's speed, MFU and memory, rho and the sampler's
                          mismatch at GPT-2's shape with padded prompts, the evaluation path, a short sft + rl,
                          pytest -m gpu; on a CPU a small version (tests/test_bench.py runs it; no MFU there)
Each section runs at 1 and at 2 threads (--threads 1 2; on a GPU once), on --device (auto: cuda if available,
else mps, else cpu); on a GPU the training and update sections run under bf16 autocast, as the trainers do,
every timed section is warmed up first, it synchronises around each timed call (CUDA kernels run
asynchronously) and reports the peak GPU memory.

  timed, median_time                              wall time of one call / the median of several
  _bench_model, recompute_generate, bench_gpt     bench.py gpt
  bench_rl                                        bench.py rl
  bench_gsn                                       bench.py gsn (FLOPs: gsn.train_flops)
  update_memory, peak_rss, bench_memory           bench.py memory
  sync_check, bf16, gpt2_config, mfu_text,        bench.py gpu-check
  gpt2_shape, gpt2_rho, eval_path, attention_kernels, attention_check, memory_check, gpu_check
  main                                            the command line
"""
import argparse
import contextlib
import dataclasses
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from unittest import mock

import torch

import common
import data
import eval as ev
import gsn
import topr
import train
from model import GPT, GPTConfig, completion_mask, sequence_logprobs


def timed(fn, dev):
    """Wall time of fn(); on a GPU, waits for the queued kernels before and after (CUDA is asynchronous)."""
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    sync()
    t0 = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - t0


def median_time(fn, reps, dev):
    """Median wall time of fn() over reps calls."""
    return statistics.median(timed(fn, dev) for _ in range(reps))


# =============================================================================
# GPT: KV cache vs recomputation, training throughput (bench.py gpt)
# =============================================================================

def _bench_model(block_size=128, vocab_size=258):
    torch.manual_seed(0)
    return GPT(GPTConfig(block_size=block_size, vocab_size=vocab_size, n_layer=4, n_head=4, n_embd=128)).eval()


@torch.no_grad()
def recompute_generate(model, idx, max_new_tokens):
    """nanoGPT's generate(): no cache, the whole sequence goes through the model at every step;
    like nanoGPT's forward without targets, only the last position goes through ln_f and lm_head."""
    tr = model.transformer
    for _ in range(max_new_tokens):
        pos = torch.arange(idx.size(1), device=idx.device)
        x = tr.wte(idx) + tr.wpe(pos)
        for block in tr.h:
            x = block(x)
        logits = model.lm_head(tr.ln_f(x[:, [-1], :]))
        idx = torch.cat([idx, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    return idx


def bench_gpt(threads, args):
    """KV-cached generate() vs nanoGPT-style recomputation, same weights, greedy, no EOS."""
    prompt_len, new_tokens = (8, 8) if args.quick else (32, 96)
    dev = common.get_device(args.device)
    model = _bench_model().to(dev)
    results = {}
    for B in (1, 32):
        idx = torch.randint(0, 256, (B, prompt_len), generator=torch.Generator().manual_seed(B)).to(dev)
        # same tokens from both (greedy), checked once outside the timing: exactly on CPU (fp32, tests/test_model.py);
        # on a GPU the two run other kernels, whose rounding may flip a near-tie: reported, not asserted
        same = model.generate(idx, new_tokens, temperature=0)[0] == recompute_generate(model, idx, new_tokens)[:, prompt_len:]
        assert dev.type != "cpu" or bool(same.all())
        if dev.type != "cpu":
            print(f"generate B={B:>2}: greedy tokens equal to recomputation's: {same.float().mean().item():.1%}")
        t_cache, t_full = [], []
        for _ in range(args.reps):  # interleaved: both see the same machine load
            t_cache.append(timed(lambda: model.generate(idx, new_tokens, temperature=0), dev))
            t_full.append(timed(lambda: recompute_generate(model, idx, new_tokens), dev))
        tc, tf = statistics.median(t_cache), statistics.median(t_full)
        results[B] = tf / tc
        print(f"generate B={B:>2}: kv-cache {B * new_tokens / tc:9.0f} tok/s | recompute {B * new_tokens / tf:9.0f} tok/s"
              f" | speed-up x{tf / tc:.1f}  (target x{25 if B == 32 else 3.5})", flush=True)
    # training: forward + backward + AdamW step on (32, 128) token batches
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.randint(0, 256, (32, 128), device=dev)

    def step():
        with common.autocast(dev):  # as train.py sft: bf16 on CUDA
            _, loss = model(x, x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    step()  # warm-up
    tt = median_time(step, args.reps, dev)
    print(f"train (32x128 tokens, fwd+bwd+AdamW): {32 * 128 / tt:9.0f} tok/s", flush=True)
    return results

# =============================================================================
# RL throughput (bench.py rl)
# =============================================================================

def bench_rl(threads, args):
    """One RL iteration's pieces on the SFT-sized model: rollout (generation, then scoring), and
    the update (sequence_logprobs forward + backward + AdamW). Uses --ckpt if given (a trained
    policy stops at EOS like a real run), else a random model of the default size."""
    prompts, k = (4, 2) if args.quick else (64, 8)
    dev = common.get_device(args.device)
    tok = data.get_tokenizer("byte")
    if args.ckpt:
        model, tok, _ = ev.load_gpt(args.ckpt, dev)
    else:
        model = _bench_model(block_size=256, vocab_size=tok.vocab_size).to(dev)
    problems = data.problems(prompts, seed=123, split="train")
    enc = [tok.encode(data.format_prompt(p.question)) for p in problems]
    model.eval()

    def generate(shared_prefill=True):
        g = torch.Generator(device=dev).manual_seed(0)
        if shared_prefill:  # prefill each prompt once, copy its cache to the k sample rows
            return model.generate(enc, 48, eos_id=tok.eos_id, num_samples=k, generator=g, pad_id=tok.pad_id)[0]
        return model.generate([p for p in enc for _ in range(k)], 48, eos_id=tok.eos_id, generator=g, pad_id=tok.pad_id)[0]

    tokens = generate()  # also the warm-up
    n_gen = int(completion_mask(tokens, tok.eos_id).sum())
    t_gen = median_time(generate, args.reps, dev)
    generate(False)  # warm-up
    t_gen_noshare = median_time(lambda: generate(False), max(1, args.reps // 2), dev)
    t_score = median_time(lambda: [data.reward(t, p.answer) for t, p in zip(
        ev.decode_completions(tok, tokens.cpu())[1], [p for p in problems for _ in range(k)])], args.reps, dev)
    batch = train.sample_solutions(model, tok, problems, k, 48, seed=0)
    batch.baseline = torch.zeros(len(batch))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
    n_upd = sum(len(p) + len(c) for p, c in zip(batch.prompt, batch.completion))

    def update(micro_batch=128):  # train.rl's step 3 for one minibatch: the whole dataset, one optimizer step
        opt.zero_grad(set_to_none=True)
        for s in range(0, len(batch), micro_batch):
            mb = batch[range(s, min(s + micro_batch, len(batch)))]
            with common.autocast(dev):  # as train.py rl: bf16 on CUDA
                logp, lengths, _, _ = train.solution_logp(model, tok, mb, dev)
            loss, _ = topr.topr_loss(logp, mb.logp_behavior.to(dev), mb.reward.to(dev), baseline=mb.baseline.to(dev),
                                     lengths=lengths)
            (loss * len(mb) / len(batch)).backward()
        opt.step()
    update()  # warm-up
    t_upd = median_time(update, max(1, args.reps // 2), dev)
    total = t_gen + t_score + t_upd
    print(f"rollout {prompts} prompts x {k} samples: generation {n_gen / t_gen:8.0f} new tok/s ({t_gen:.2f}s; "
          f"{t_gen_noshare:.2f}s without the shared prefill, x{t_gen_noshare / t_gen:.1f}) | scoring {t_score:.3f}s")
    print(f"update (1 epoch of {len(batch)} sequences, fwd+bwd+AdamW): {n_upd / t_upd:8.0f} tok/s ({t_upd:.2f}s)")
    print(f"time per iteration (1 epoch): generation {t_gen / total:.0%} | scoring {t_score / total:.0%} | "
          f"update {t_upd / total:.0%}", flush=True)

# =============================================================================
# GSN training throughput (bench.py gsn)
# =============================================================================

def bench_gsn(threads, args):
    """GSN training images/s (forward + backward + Adam step, batch 100) at a few sizes, and the achieved
    matmul FLOP/s as a fraction of torch.matmul's peak measured in the same run (medians over interleaved
    repetitions: one rep = a few steps of every config in turn)."""
    torch.manual_seed(0)
    n, batch = (128, 10) if args.quick else (1024, 100)
    dev = common.get_device(args.device)
    A, B = torch.randn(n, n, device=dev), torch.randn(n, n, device=dev)
    torch.matmul(A, B)
    configs = [("gsn K=2 h=500 N=4", [500, 500], "tanh", 4, 2.0),
               ("gsn K=2 h=1500 N=4 (paper)", [1500, 1500], "tanh", 4, 2.0),
               ("dae h=1000 N=5", [1000], "sigmoid", 5, 0.0),
               ("dae h=2000 N=5 (paper)", [2000], "sigmoid", 5, 0.0)]
    configs = configs[:1] if args.quick else configs
    x = (torch.rand(batch, 784, device=dev) < 0.13).float()
    setups = []
    for name, hidden, act, N, sigma in configs:
        model = gsn.GSN(784, hidden, act=act, hidden_noise=sigma).to(dev)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)

        def train_step(model=model, opt=opt, N=N):
            loss, _ = model(x, N)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        train_step()  # warm-up
        setups.append((name, train_step, gsn.train_flops([784] + hidden, N, batch)))
    steps = 3
    times = {name: [] for name, _, _ in setups}
    peak_t = []
    for _ in range(args.reps):                                             # interleaved repetitions
        peak_t.append(timed(lambda: (torch.matmul(A, B), torch.matmul(A, B)), dev) / 2)
        for name, fn, _ in setups:
            times[name].append(timed(lambda: [fn() for _ in range(steps)], dev) / steps)
    peak = 2 * n ** 3 / statistics.median(peak_t)
    print(f"torch.matmul peak ({n}x{n} fp32, {threads} thread(s)): {peak / 1e9:.1f} GFLOP/s")
    print(f"{'config':<28} {'img/s':>8} {'GFLOP/s':>8} {'of peak':>8}")
    for name, _, flops in setups:
        t = statistics.median(times[name])
        print(f"{name:<28} {batch / t:8.0f} {flops / t / 1e9:8.1f} {flops / t / peak:8.0%}", flush=True)

# =============================================================================
# Memory of the RL update at GPT-2's vocabulary (bench.py memory)
# =============================================================================

GPT2_VOCAB = 50_258  # GPT-2's 50,257 tokens + this repository's pad


def update_memory(rows, T, vocab, dev, n_layer=4, n_embd=128):
    """Peak memory (bytes) of one RL micro-batch: a model at this vocabulary, then sequence_logprobs with the
    entropy (what train.solution_logp runs) forward and backward, `rows` rows of T tokens, under
    common.autocast. CUDA: torch.cuda.max_memory_allocated, above what was allocated before. CPU: the process's
    peak resident memory (peak_rss) after the step; bench_memory subtracts the level before the first size
    (the sizes in increasing order: the peak only grows), so the model's own weights and gradients count."""
    torch.manual_seed(0)
    cuda = dev.type == "cuda"
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    model = GPT(GPTConfig(block_size=T, vocab_size=vocab, n_layer=n_layer, n_head=4, n_embd=n_embd)).to(dev).eval()
    tokens = torch.randint(0, vocab, (rows, T), device=dev)
    compl = torch.zeros(rows, T, dtype=torch.bool, device=dev)
    compl[:, T // 4:] = True  # a quarter prompt, the rest completion (the LM head runs at every position anyway)
    with common.autocast(dev):
        logp, ent = sequence_logprobs(model, tokens, None, compl, return_entropy=True)
    (logp.sum() / rows).backward()
    if cuda:
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - base
    return peak_rss()


def peak_rss():
    """This process's peak resident memory in bytes since it started: VmHWM in /proc/self/status (Linux). Not
    ru_maxrss: Linux carries that over from the parent through fork + exec, so a process started by a bigger one
    (pytest, bench.py all) would begin at its parent's peak. Without /proc: ru_maxrss (kilobytes on Linux)."""
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))  # kB
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def bench_memory(threads, args):
    """update_memory at micro-batch sizes 1, 2, 4, 8 at vocab 50,258, side by side with the formula that
    train.default_micro_batch uses: LOGIT_BYTES * rows * T * vocab (the logits and their copies), plus the
    weights and their gradients (8 bytes per parameter: fp32). Off CUDA each pass runs in a fresh process: the
    measure there, peak_rss, is the process's peak and never goes down, so in a process that already ran a pass
    (--threads 1 2) or another section (bench.py all) the level before the first size would already be at or above
    this pass's peak, and every size would read about 0 MiB."""
    dev = common.get_device(args.device)
    if dev.type != "cuda" and not args.fresh_process:
        cmd = [sys.executable, os.path.abspath(__file__), "memory", "--threads", str(threads), "--device", args.device,
               "--fresh-process"] + (["--quick"] if args.quick else [])
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode:
            raise RuntimeError(f"bench.py memory in a fresh process exited with {r.returncode}:\n{r.stderr}")
        print("\n".join(line for line in r.stdout.splitlines() if not line.startswith("=====")), flush=True)
        return
    T, sizes = (32, [1, 2]) if args.quick else (64, [1, 2, 4, 8])
    params = GPT(GPTConfig(block_size=T, vocab_size=GPT2_VOCAB, n_layer=4, n_head=4, n_embd=128)).get_num_params(False)
    print(f"peak memory of one RL micro-batch (sequence_logprobs fwd + bwd), vocab {GPT2_VOCAB}, T = {T}, "
          f"4 x 128 model ({params / 1e6:.1f}M parameters), {dev.type}{' bf16' if dev.type == 'cuda' else ' fp32'}")
    print(f"{'rows':>5} {'measured MiB':>13} {'formula MiB':>12} {'measured / formula':>19}")
    base = peak_rss()
    for rows in sizes:
        got = update_memory(rows, T, GPT2_VOCAB, dev) - (0 if dev.type == "cuda" else base)
        formula = train.LOGIT_BYTES * rows * T * GPT2_VOCAB + 8 * params
        print(f"{rows:>5} {got / 2 ** 20:13.0f} {formula / 2 ** 20:12.0f} {got / formula:19.2f}", flush=True)

# =============================================================================
# One prepared check for a GPU (bench.py gpu-check)
# =============================================================================


@contextlib.contextmanager
def bf16(dev):
    """common.autocast in bf16 on any device: on CUDA it already is; on a CPU, where the trainers run fp32,
    this gives the small version of gpu-check bf16's numerics."""
    if dev.type == "cuda":
        yield
        return
    with mock.patch.object(common, "autocast", lambda device: torch.autocast(device.type, dtype=torch.bfloat16)):
        yield


def _tiny_runs(folder, dev, rl_extra=()):
    """A short train.py sft, then one rl iteration from it, on dev: (sft metrics rows, rl metrics rows)."""
    d = ["--device", str(dev)]
    train.main(["sft", "--out", f"{folder}/sft", "--max-iters", "4", "--n-layer", "1", "--n-head", "2", "--n-embd", "32",
                "--batch-size", "8", "--sft-examples", "50", "--val-examples", "8", "--eval-problems", "2", "--eval-k", "1",
                "--warmup", "1", "--log-interval", "1", "--eval-interval", "4", "--max-new-tokens", "8", *d])
    train.main(["rl", "--init", f"{folder}/sft/ckpt.pt", "--out", f"{folder}/rl", "--prompts", "4", "--k", "4",
                "--batch-size", "16", "--micro-batch", "8", "--iterations", "1", "--eval-problems", "2", "--eval-k", "1",
                "--max-new-tokens", "8", "--baseline", "0", *rl_extra, *d])
    read = lambda run: [json.loads(line) for line in open(f"{folder}/{run}/metrics.jsonl")]
    return read("sft"), read("rl")


def sync_check(dev, folder):
    """A short sft and one rl iteration on dev (CUDA) with torch.cuda.set_sync_debug_mode("error") inside every
    optimizer step: a read on the host there (.item(), a copy from ordinary memory, bool(tensor)) raises.
    The steps' bounds are train.py's own functions, wrapped: an SFT step from lr_at to its log line's one read
    (check_pending, --log-interval 1); an RL step from its minibatch (minibatches' yield; log mu's
    recomputation too) to step_stats' one transfer, then on to the next minibatch. Returns how many steps ran."""
    steps = {"sft": 0, "rl": 0}
    mode = torch.cuda.set_sync_debug_mode
    lr_at, check_pending, minibatches, step_stats = train.lr_at, common.check_pending, train.minibatches, train.step_stats

    def sft_step_starts(*a):
        steps["sft"] += 1
        mode("error")
        return lr_at(*a)

    def read_once(*a, **k):
        mode("default")
        return check_pending(*a, **k)

    def rl_steps(*a):
        for item in minibatches(*a):
            steps["rl"] += 1
            mode("error")
            yield item
        mode("default")

    def stats_once(*a):
        mode("default")
        out = step_stats(*a)
        mode("error")
        return out

    try:
        with mock.patch.object(train, "lr_at", sft_step_starts), mock.patch.object(common, "check_pending", read_once), \
                mock.patch.object(train, "minibatches", rl_steps), mock.patch.object(train, "step_stats", stats_once):
            _tiny_runs(folder, dev)
    finally:
        mode("default")
    return steps


def gpt2_config(quick, vocab_size=GPT2_VOCAB, quick_block=64):
    """GPT-2's shape (124M: 12 layers, 12 heads, 768 wide, block 512; vocab 50,258 unless given), or, quick (a
    CPU), a small stand-in: 2 layers, 2 heads, 64 wide, block quick_block."""
    if quick:
        return GPTConfig(block_size=quick_block, vocab_size=vocab_size, n_layer=2, n_head=2, n_embd=64)
    return GPTConfig(block_size=512, vocab_size=vocab_size, n_layer=12, n_head=12, n_embd=768, gelu="tanh")


def mfu_text(flops_per_token, tokens_per_s, dev):
    """MFU as the trainers compute it (train.mfu against train.PEAK_FLOPS), or why there is none."""
    if dev.type != "cuda":
        return "MFU n/a on CPU (no peak FLOP/s)"
    card = torch.cuda.get_device_name(dev)
    peak = train.peak_flops(card)
    if peak is None:
        return f"MFU n/a ({card} is not in train.PEAK_FLOPS)"
    return f"MFU {train.mfu(flops_per_token, tokens_per_s, peak):.1%} of {peak / 1e12:g} TFLOP/s"


def gpt2_shape(dev, quick):
    """Rollout and update tokens/s, MFU and peak memory at GPT-2's shape (gpt2_config) under common.autocast,
    random weights: 16 prompts x 8 samples of 256 tokens after 256-token prompts; one update (forward, backward,
    AdamW) of full-context rows, as many as train.py rl's default micro-batch takes (on CUDA: what the card's
    free memory holds, train.default_micro_batch; its peak must stay under that free memory). MFU counts a row's
    FLOPs at its length (train.flops_per_token: T = 512). quick (a CPU): gpt2_config's stand-in, 2 x 2 samples of
    32 after 32, an update of 2 rows."""
    cfg = gpt2_config(quick)
    prompts, k, L = (2, 2, cfg.block_size // 2) if quick else (16, 8, 256)
    torch.manual_seed(0)
    model = GPT(cfg).to(dev).eval()
    cuda, n = dev.type == "cuda", model.get_num_params()
    peak = lambda: f"{torch.cuda.max_memory_allocated() / 2 ** 30:.2f} GiB" if cuda else "n/a on CPU (bench.py memory)"
    idx = torch.randint(0, GPT2_VOCAB - 1, (prompts, L), device=dev)

    def rollout():
        with common.autocast(dev):
            model.generate(idx, L, num_samples=k, generator=torch.Generator(device=dev).manual_seed(0))
    rollout()  # warm-up
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    t = timed(rollout, dev)
    tok_s = prompts * k * L / t
    print(f"rollout {prompts} x {k} samples, {L} + {L} tokens: {tok_s:9.0f} new tok/s | "
          f"{mfu_text(train.flops_per_token(n, cfg, 2 * L, False), tok_s, dev)} | peak {peak()}")
    if cuda:  # as train.py rl starts: the model on the card, nothing in the allocator's cache
        torch.cuda.empty_cache()
        free, before = torch.cuda.mem_get_info(dev)[0], torch.cuda.memory_allocated()
    rows = train.default_micro_batch(cfg, free, model.get_num_params(False)) if cuda else 2
    x = torch.randint(0, GPT2_VOCAB - 1, (rows, cfg.block_size), device=dev)
    compl = torch.ones_like(x, dtype=torch.bool)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)

    def update():
        with common.autocast(dev):
            logp, _ = sequence_logprobs(model, x, None, compl, return_entropy=True)
        opt.zero_grad(set_to_none=True)
        (-logp.sum() / x.numel()).backward()
        opt.step()
    update()  # warm-up
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    t = timed(update, dev)
    tok_s, chosen = x.numel() / t, f"rl's default from {free / 2 ** 30:.1f} GiB free" if cuda else "quick"
    print(f"update, micro-batch {rows} x {cfg.block_size} tokens ({chosen}): {tok_s:9.0f} tok/s | "
          f"{mfu_text(train.flops_per_token(n, cfg, cfg.block_size, True), tok_s, dev)} | peak {peak()}")
    if cuda and torch.cuda.max_memory_allocated() - before > free:
        raise AssertionError("the default micro-batch's update needed more than the free memory it was chosen from")


def gpt2_rho(dev, quick):
    """On-policy rho and the sampler's mismatch at GPT-2's depth and width (gpt2_config with the byte vocabulary,
    the problems' tokens), random weights, under common.autocast: rollouts of 8 problems x 4 samples
    (train.sample_solutions) whose prompts differ in length (left-padded: generate's masked prefill and decode),
    then as the same questions cut to one length (no padding); log mu recomputed (train.behavior_logp), then the
    first update's log pi with gradients, micro-batch by micro-batch: rho == 1 exactly. The per-token mismatch
    (train.mismatch: the sampler's padded decode vs the training forward) is printed for both; finite, under a
    nat per token (a broken padding mask moves tokens by nats)."""
    tok = data.get_tokenizer("byte")
    cfg = gpt2_config(quick, tok.vocab_size, quick_block=256)
    torch.manual_seed(0)
    policy = GPT(cfg).to(dev).eval()
    problems = data.problems(4 if quick else 8, seed=5, split="train")
    k, new = (2, 8) if quick else (4, 64)
    cut = min(len(p.question) for p in problems)
    same_length = [dataclasses.replace(p, question=p.question[:cut]) for p in problems]
    for what, probs in (("padded prompts", problems), ("equal-length prompts", same_length)):
        batch = train.sample_solutions(policy, tok, probs, k, new, seed=0)
        batch = train.on_device(batch, tok, dev)
        steps = train.behavior_steps(torch.arange(len(batch)), len(batch), 4, 0, 1)
        mu, mu_tokens = train.behavior_logp(policy, tok, batch, train.solution_logp, steps, 1, dev)
        gap = train.mismatch(batch.logp_behavior, mu, train.on_tokens(batch, batch.token_logp_sampler, dev), mu_tokens,
                             batch.compl_mask)
        worst = 0.0
        for rows, micros in steps:
            for idx in micros:
                with common.autocast(dev):
                    lp = train.solution_logp(policy, tok, batch[rows[idx]], dev)[0]  # with gradients, as an update
                worst = max(worst, (torch.exp(lp.float() - mu[rows[idx]].to(dev)) - 1).abs().max().item())
        print(f"rho at {cfg.n_layer} x {cfg.n_embd}, {what} ({len(set(map(len, batch.prompt)))} lengths): "
              f"max |rho - 1| {worst:g} | mismatch per token mean {gap['mismatch_token_mean']:.4f} max "
              f"{gap['mismatch_token_max']:.4f}, per sequence max {gap['mismatch_max']:.4f} nats")
        if worst != 0:
            raise AssertionError(f"on-policy rho is not exactly 1 ({what})")
        if not gap["mismatch_token_max"] < 1.0:  # also nan
            raise AssertionError(f"the sampler's log mu is {gap['mismatch_token_max']} nats off per token ({what})")


def eval_path(dev, quick):
    """eval.py's path as the recipe runs it after each iteration: ev.evaluate_solver (greedy, k samples, maj@k) at
    GPT-2's depth and width (gpt2_config, byte vocabulary, random weights), 32 problems x 4 samples of 128 new
    tokens (quick: 4 x 2 of 8): its time and peak memory; its numbers are fractions."""
    tok = data.get_tokenizer("byte")
    torch.manual_seed(0)
    model = GPT(gpt2_config(quick, tok.vocab_size, quick_block=256)).to(dev).eval()
    problems, k, new = data.problems(4 if quick else 32, seed=7, split="test"), 2 if quick else 4, 8 if quick else 128
    cuda = dev.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    t0 = time.time()
    res, line = ev.evaluate_solver(model, tok, problems, k, new, seed=0)
    print(f"evaluation ({len(problems)} problems x {k} samples, {new} new tokens): {time.time() - t0:.1f}s | peak "
          + (f"{torch.cuda.max_memory_allocated() / 2 ** 30:.2f} GiB" if cuda else "n/a on CPU") + f" | {line}")
    if not all(0 <= res[key] <= 1 for key in ("greedy", "pass@1", f"maj@{k}", "invalid")):
        raise AssertionError(f"evaluation numbers outside [0, 1]: {res}")


def attention_kernels(fn):
    """The SDPA kernels fn() ran (forward ones; torch.profiler's op names without 'aten::_scaled_dot_product_')."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        fn()
    return sorted({e.key.removeprefix("aten::_scaled_dot_product_") for e in prof.key_averages()
                   if e.key.startswith("aten::_scaled_dot_product_") and "backward" not in e.key})


def attention_check(dev, quick):
    """Which attention kernel ran, for each call the recipe makes: sampling with padded prompts (the masked
    prefill and decode), log mu's recomputation (no gradient) and the update (with one), under common.autocast
    at GPT-2's head size (64; quick: 32). On CUDA one kernel for all three (common.sdpa_backends pins it: on-policy
    rho = 1 and the sampler's mismatch need it), named as common.attention_kernel names it; on a CPU torch's
    choice, printed."""
    cfg = gpt2_config(quick, 300)
    torch.manual_seed(0)
    model = GPT(cfg).to(dev).eval()
    tokens = torch.randint(0, 299, (2, 24), device=dev)
    compl = torch.ones_like(tokens, dtype=torch.bool)

    def sample():
        with common.autocast(dev), torch.no_grad():
            model.generate([[1, 2, 3], [4, 5, 6, 7, 8, 9]], 4, generator=torch.Generator(device=dev).manual_seed(0))

    def recompute():
        with common.autocast(dev), torch.no_grad():
            sequence_logprobs(model, tokens, None, compl)

    def update():
        with common.autocast(dev):
            sequence_logprobs(model, tokens, None, compl).sum().backward()

    calls = (("sampling", sample), ("recomputation", recompute), ("update", update))
    ran = {what: attention_kernels(fn) for what, fn in calls}
    head, kernels = cfg.n_embd // cfg.n_head, {tuple(k) for k in ran.values()}
    print(f"attention (head size {head}; common: {common.attention_kernel(dev, head)}): "
          + " | ".join(f"{what} {', '.join(k) or '?'}" for what, k in ran.items()))
    if dev.type == "cuda" and (len(kernels) != 1 or len(next(iter(kernels))) != 1):
        raise AssertionError(f"not one attention kernel for sampling, log mu and the update: {ran}")


def memory_check(dev):
    """The memory the recipe starts from: on CUDA the card's free and total memory and the RL micro-batch train.py rl
    would take from it at GPT-2's shape (train.default_micro_batch); on a CPU the CPU rule's micro-batch."""
    cfg = gpt2_config(False)
    if dev.type != "cuda":
        print(f"memory: free memory n/a on CPU; rl's micro-batch at GPT-2's shape: {train.default_micro_batch(cfg)} "
              f"(the CPU rule)")
        return
    free, total = torch.cuda.mem_get_info(dev)
    with torch.device("meta"):  # its parameters counted, none allocated
        n = GPT(cfg).get_num_params(False)
    print(f"memory: {free / 2 ** 30:.1f} of {total / 2 ** 30:.1f} GiB free; rl's micro-batch at GPT-2's shape from "
          f"it: {train.default_micro_batch(cfg, free, n)} rows of {cfg.block_size} "
          f"({train.row_bytes(cfg) / 2 ** 30:.2f} GiB each by train.row_bytes)")


def gpu_check(threads, args):
    """bench.py gpu-check (the module docstring). Each part prints one line or a few; a failed part says so and
    the others still run; exit status 1 if any failed."""
    dev = common.get_device(args.device)
    cuda, failed = dev.type == "cuda", []
    name = torch.cuda.get_device_name(dev) if cuda else platform.processor() or platform.machine()
    print(f"environment: torch {torch.__version__}, CUDA {torch.version.cuda}, {dev} ({name}), python "
          f"{platform.python_version()}, {threads} thread(s) | {common.setup_precision(dev)}")

    def part(what, fn):
        t0 = time.time()
        try:
            fn()
        except Exception as e:  # report and go on: one broken part should not hide the others
            failed.append(what)
            print(f"{what}: FAILED: {type(e).__name__}: {(str(e).splitlines() or [''])[0][:300]}", flush=True)
        print(f"  ({what}: {time.time() - t0:.0f}s)", flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        def sync():
            if not cuda:
                print("sync: skipped (no CUDA; torch.cuda.set_sync_debug_mode needs a GPU)")
                return
            with contextlib.redirect_stdout(open(os.devnull, "w")):
                steps = sync_check(dev, f"{tmp}/sync")
            print(f"sync: no stall inside {steps['sft']} sft steps and {steps['rl']} rl steps (log mu's recomputation included)")

        def runs():
            with bf16(dev), contextlib.redirect_stdout(open(os.devnull, "w")):
                sft, rl = _tiny_runs(f"{tmp}/runs", dev)
            first = next(r for r in rl if "mean_ratio" in r)
            gap = next(r for r in rl if "mismatch_mean" in r)
            print(f"rho under bf16, on-policy: mean {first['mean_ratio']!r}, clipped {first['frac_clipped']:g} "
                  f"({'== 1 exactly' if first['mean_ratio'] == 1.0 else 'NOT 1'}) | log mu mismatch (sampler vs "
                  f"training forward) mean {gap['mismatch_mean']:.4f}, max {gap['mismatch_max']:.4f} nats/sequence, "
                  f"per token mean {gap['mismatch_token_mean']:.4f}, max {gap['mismatch_token_max']:.4f}")
            sl = [r for r in sft if "loss" in r]
            print(f"sft + rl: sft loss {sl[0]['loss']:.3f} -> {sl[-1]['loss']:.3f} in {len(sl)} steps; rl step loss "
                  f"{first['loss']:.4f}, grad norm {first['grad_norm']:.4f}")
            if first["mean_ratio"] != 1.0:
                raise AssertionError("on-policy rho is not exactly 1 under bf16")

        def gpu_tests():
            if not cuda:
                print("pytest -m gpu: skipped (no CUDA)")
                return
            out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-m", "gpu", "-p", "no:cacheprovider", "tests"],
                                 capture_output=True, text=True, cwd=os.path.dirname(os.path.abspath(__file__)))
            lines = out.stdout.strip().splitlines()
            print("pytest -m gpu: " + (lines[-1] if lines else out.stderr.strip()[-300:]))
            if out.returncode:
                print("\n".join(lines[-30:]))
                raise AssertionError(f"pytest -m gpu exited with {out.returncode}")

        def at_gpt2_shape(check):  # in bf16 (a CPU: the stand-in), quick on a CPU
            with bf16(dev):
                check(dev, quick=not cuda)

        part("memory", lambda: memory_check(dev))
        part("attention kernel", lambda: at_gpt2_shape(attention_check))
        part("sync", sync)
        part("bf16 + short run", runs)
        part("GPT-2 shape", lambda: gpt2_shape(dev, quick=not cuda))
        part("rho at GPT-2 shape", lambda: at_gpt2_shape(gpt2_rho))
        part("evaluation", lambda: at_gpt2_shape(eval_path))
        part("gpu tests", gpu_tests)
    print(f"gpu-check: {'FAILED: ' + ', '.join(failed) if failed else 'all passed'}", flush=True)
    if failed:
        raise common.UserError(f"gpu-check: {len(failed)} part(s) failed: {', '.join(failed)}")

# =============================================================================

@common.cli
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["gpt", "rl", "gsn", "memory", "all", "gpu-check"], nargs="?", default="all")
    parser.add_argument("--threads", type=common.positive, nargs="+", default=[1, 2], help="torch threads, one run each")
    parser.add_argument("--reps", type=common.positive, default=5, help="interleaved repetitions (medians)")
    parser.add_argument("--ckpt", default=None, help="bench rl: a trained policy (e.g. runs/sft/ckpt.pt)")
    common.add_device_arg(parser)
    parser.add_argument("--quick", action="store_true", help="tiny sizes: seconds, for the smoke test (no real numbers)")
    parser.add_argument("--fresh-process", action="store_true", help=argparse.SUPPRESS)  # bench_memory's own pass
    args = parser.parse_args(argv)
    benches = {"gpt": bench_gpt, "rl": bench_rl, "gsn": bench_gsn, "memory": bench_memory, "gpu-check": gpu_check}
    cuda = common.get_device(args.device).type == "cuda"  # a device this machine lacks: a one-line error
    threads = args.threads[:1] if cuda or args.what == "gpu-check" else args.threads  # CPU threads matter on a CPU only
    for what in (list(benches)[:4] if args.what == "all" else [args.what]):
        for t in threads:
            torch.set_num_threads(t)
            print(f"===== {what}, {t} thread(s) =====", flush=True)
            if cuda:
                torch.cuda.reset_peak_memory_stats()
            benches[what](t, args)
            if cuda:  # what a real run of this size needs on the GPU
                print(f"peak GPU memory ({what}): {torch.cuda.max_memory_allocated() / 2 ** 30:.2f} GiB", flush=True)

if __name__ == "__main__":
    main()
