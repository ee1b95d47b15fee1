"""
bench.py -- speed benchmarks. Ratios are measured side by side in one process, as medians of
interleaved repetitions (the machine is shared and noisy; absolute numbers drift, ratios much less).

  python bench.py gpt     KV-cached generation vs full recomputation; training tokens/s
  python bench.py rl      RL rollout and update tokens/s, and where the time goes
  python bench.py gsn     GSN training images/s and matmul FLOP/s vs this machine's matmul peak
  python bench.py all
Each section runs at 1 and at 2 threads (--threads 1 2), on --device (auto: cuda if available, else mps,
else cpu); on a GPU it synchronises around each timed call (CUDA kernels run asynchronously) and reports
the peak GPU memory.

  timed, median_time                              wall time of one call / the median of several
  _bench_model, recompute_generate, bench_gpt     bench.py gpt
  bench_rl                                        bench.py rl
  gsn_train_flops, bench_gsn                      bench.py gsn
  main                                            the command line
"""
import argparse
import statistics
import time

import torch

import common
import data
import eval as ev
import gsn
import topr
import train
from model import GPT, GPTConfig, completion_mask


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
        # same tokens from both (greedy), checked once outside the timing
        assert torch.equal(model.generate(idx, new_tokens, temperature=0)[0], recompute_generate(model, idx, new_tokens)[:, prompt_len:])
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
        _, loss = model(x, x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    step()
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

    tokens = generate()
    n_gen = int(completion_mask(tokens, tok.eos_id).sum())
    t_gen = median_time(generate, args.reps, dev)
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
            logp, lengths, _, _ = train.solution_logp(model, tok, mb, dev)
            loss, _ = topr.topr_loss(logp, mb.logp_behavior.to(dev), mb.reward.to(dev), baseline=mb.baseline.to(dev),
                                     lengths=lengths)
            (loss * len(mb) / len(batch)).backward()
        opt.step()
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

def gsn_train_flops(sizes, walkbacks, batch):
    """Matmul FLOPs of one walkback training step of gsn.GSN (sizes = [784, h1, .., hK]).
    Per chain step each hidden layer i multiplies by W_{i-1} (from below) and W_i^T (from above, i < K),
    and the visible reconstruction by W_0^T: 2*B*(n_in*n_out) FLOPs per product. Backward ~ 2x forward
    (gradients w.r.t. inputs and weights), so a step ~ 3x the forward count (slightly over: x needs no grad)."""
    K = len(sizes) - 1
    per_chain_step = sizes[0] * sizes[1]                                   # visible: h1 W0^T
    for i in range(1, K + 1):
        per_chain_step += sizes[i - 1] * sizes[i] + (sizes[i] * sizes[i + 1] if i < K else 0)
    return 3 * 2 * batch * per_chain_step * walkbacks


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
            loss, _, _ = model(x, N)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        train_step()  # warm-up
        setups.append((name, train_step, gsn_train_flops([784] + hidden, N, batch)))
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

@common.cli
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["gpt", "rl", "gsn", "all"], nargs="?", default="all")
    parser.add_argument("--threads", type=common.positive, nargs="+", default=[1, 2], help="torch threads, one run each")
    parser.add_argument("--reps", type=common.positive, default=5, help="interleaved repetitions (medians)")
    parser.add_argument("--ckpt", default=None, help="bench rl: a trained policy (e.g. runs/sft/ckpt.pt)")
    common.add_device_arg(parser)
    parser.add_argument("--quick", action="store_true", help="tiny sizes: seconds, for the smoke test (no real numbers)")
    args = parser.parse_args(argv)
    benches = {"gpt": bench_gpt, "rl": bench_rl, "gsn": bench_gsn}
    cuda = common.get_device(args.device).type == "cuda"  # a device this machine lacks: a one-line error
    for what in (list(benches) if args.what == "all" else [args.what]):
        for t in args.threads:
            torch.set_num_threads(t)
            print(f"===== {what}, {t} thread(s) =====", flush=True)
            if cuda:
                torch.cuda.reset_peak_memory_stats()
            benches[what](t, args)
            if cuda:  # what a real run of this size needs on the GPU
                print(f"peak GPU memory ({what}): {torch.cuda.max_memory_allocated() / 2 ** 30:.2f} GiB", flush=True)

if __name__ == "__main__":
    main()
