"""On a GPU only (marked gpu: skipped without CUDA; `pytest -m gpu` runs these alone, as bench.py gpu-check
does). No RL or SFT step waits on the GPU; on-policy rho is 1 exactly under bf16, also at GPT-2's shape with the
pinned attention kernel; decoding with a KV cache agrees with recomputation within stated tolerances (other
kernels: not bit for bit); --deterministic repeats an update bit for bit; eval.generate_bytes bounds a generate
call's real peak."""
import json
import os
import subprocess
import sys

import pytest
import torch

import bench
import common
import eval as ev
from model import GPT, GPTConfig, pack, sequence_logprobs

pytestmark = pytest.mark.gpu
CUDA = torch.device("cuda")


def test_no_host_sync_inside_an_sft_or_an_rl_step(tmp_path):
    torch.cuda.set_sync_debug_mode("error")
    try:
        with pytest.raises(RuntimeError, match="synchroniz"):  # the guard does catch a read on the host
            torch.ones(1, device=CUDA).item()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    steps = bench.sync_check(CUDA, tmp_path)  # raises on a stall inside a step
    assert steps == {"sft": 4, "rl": 2}  # 4 sft steps; rl: log mu's recomputation and 1 update


def test_on_policy_rho_is_exactly_one_under_bf16(tmp_path):
    _, rl = bench._tiny_runs(tmp_path, CUDA)
    first = next(r for r in rl if "mean_ratio" in r)
    assert first["mean_ratio"] == 1.0 and first["frac_clipped"] == 0
    gap = next(r for r in rl if "mismatch_mean" in r)
    assert 0 <= gap["mismatch_mean"] <= gap["mismatch_max"] < 1.0  # nats per sequence of <= 8 tokens


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_cached_decoding_agrees_with_recomputation(precision):
    """generate's log mu vs sequence_logprobs of the same tokens. fp32 with TF32 off: rounding only, atol 1e-4
    nats per token; bf16 (8-bit mantissa, logits of a random model near 0): atol 0.05 nats per token."""
    torch.manual_seed(0)
    model = GPT(GPTConfig(block_size=64, vocab_size=300, n_layer=2, n_head=2, n_embd=64)).to(CUDA).eval()
    prompts = [[1, 2, 3, 4, 5], [7, 8], [9, 10, 11]]
    tf32 = torch.backends.cuda.matmul.fp32_precision  # the current API (common._tf32): no deprecated flag
    torch.backends.cuda.matmul.fp32_precision = "ieee"
    try:
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=precision == "bf16"), torch.no_grad():
            out, logp = model.generate(prompts, 16, num_samples=2, generator=torch.Generator(device=CUDA).manual_seed(0))
            rows = [p for p in prompts for _ in range(2)]
            tokens, pad_mask, compl = pack(rows, out.tolist(), 0)
            again = sequence_logprobs(model, tokens.to(CUDA), pad_mask.to(CUDA), compl.to(CUDA))[compl.to(CUDA)]
    finally:
        torch.backends.cuda.matmul.fp32_precision = tf32
    tol = 1e-4 if precision == "fp32" else 0.05
    torch.testing.assert_close(again.view_as(logp), logp, rtol=0, atol=tol)


def gpt2_shaped(block_size=256, n_layer=12):
    """GPT-2 124M's shape (12 x 768, 12 heads; 50,258 tokens with the pad, padded to 50,304), random weights."""
    torch.manual_seed(0)
    return GPT(GPTConfig(block_size=block_size, vocab_size=50258, n_layer=n_layer, n_head=12, n_embd=768,
                         pad_vocab_to=64)).to(CUDA).eval()


def test_on_policy_rho_is_exactly_one_at_the_gpt2_shape():
    """In the card's precision (common.autocast: bf16 on an H100) with the attention kernel it pins: samples from
    prompts of different lengths (the masked prefill), then log mu recomputed without a gradient (behavior_logp)
    and log pi with one (the update) of the same rows: equal bit for bit, rho = 1; padding never sampled."""
    model = gpt2_shaped()
    prompts = [list(range(100, 140)), list(range(200, 207)), list(range(300, 323))]
    with common.autocast(CUDA):
        assert not torch.backends.cuda.flash_sdp_enabled() and not torch.backends.cuda.cudnn_sdp_enabled()
        out, _ = model.generate(prompts, 32, num_samples=2, pad_id=50257,
                                generator=torch.Generator(device=CUDA).manual_seed(0))
    assert bool((out < 50258).all())
    rows = [p for p in prompts for _ in range(2)]
    tokens, _, compl = (t.to(CUDA) for t in pack(rows, out.tolist(), 50257))
    with torch.no_grad(), common.autocast(CUDA):
        mu = sequence_logprobs(model, tokens, None, compl)  # end-padded rows: no mask, as the updates pass
    with common.autocast(CUDA):
        pi = sequence_logprobs(model, tokens, None, compl)
    pi.sum().backward()
    rho = torch.exp(pi.detach().sum(1) - mu.sum(1))
    assert torch.equal(pi.detach(), mu) and bool((rho == 1).all()), (rho, common.amp_dtype(CUDA))


DETERMINISTIC_STEP = """
import torch, common
from model import GPT, GPTConfig, pack, sequence_logprobs
dev = common.get_device("cuda")
print(common.setup_precision(dev, deterministic=True, head_dim=64))
assert torch.backends.cuda.matmul.fp32_precision == "tf32"

def step():
    torch.manual_seed(0)
    model = GPT(GPTConfig(block_size=128, vocab_size=50258, n_layer=2, n_head=4, n_embd=256, pad_vocab_to=64)).to(dev)
    opt, scaler = torch.optim.AdamW(model.parameters(), lr=1e-3), common.grad_scaler(dev)
    prompts = [[1, 2, 3, 4, 5], [6, 7], [8, 9, 10]]
    with common.autocast(dev):
        out, _ = model.eval().generate(prompts, 16, num_samples=2, pad_id=50257,
                                       generator=torch.Generator(device=dev).manual_seed(0))
    tokens, pad_mask, compl = (t.to(dev) for t in pack([p for p in prompts for _ in range(2)], out.tolist(), 50257))
    with common.autocast(dev):
        lp = sequence_logprobs(model.train(), tokens, pad_mask, compl)
        _, loss = model(tokens[:, :-1], torch.where(pad_mask, tokens, -1)[:, 1:], pad_mask=pad_mask[:, :-1])
    scaler.scale(loss - lp.sum() / len(tokens)).backward()
    scaler.unscale_(opt)
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    scaler.step(opt)
    scaler.update()
    return torch.cat([p.detach().flatten() for p in model.parameters()])

assert torch.equal(step(), step())
print("repeated bit for bit")
"""


def test_deterministic_mode_repeats_an_update_bit_for_bit():
    """setup_precision(deterministic=True) in a fresh process (cuBLAS reads its workspace setting when it starts):
    sampling, a masked and an unmasked forward with their backward, clipping and AdamW run without a
    nondeterministic kernel (torch raises on one) and give the same weights twice."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {k: v for k, v in os.environ.items() if k != "CUBLAS_WORKSPACE_CONFIG"}
    run = subprocess.run([sys.executable, "-c", DETERMINISTIC_STEP], cwd=root, env=env, capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "deterministic (CUBLAS_WORKSPACE_CONFIG=:4096:8; slower)" in run.stdout
    assert "repeated bit for bit" in run.stdout


def test_generate_bytes_bounds_a_generate_call_s_real_peak():
    """eval.generate_bytes (what prompts_per_call divides the free memory by) against the memory torch allocates
    for one generate call at GPT-2's shape in the card's precision: never below it, and not far above."""
    model = gpt2_shaped(block_size=512)
    P, k, T, new = 16, 8, 200, 56
    prompts = [list(range(1000 + i, 1000 + i + T)) for i in range(P)]
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    with torch.no_grad(), common.autocast(CUDA):
        model.generate(prompts, new, num_samples=k, generator=torch.Generator(device=CUDA).manual_seed(0))
    peak = torch.cuda.max_memory_allocated() - base
    cache_bytes = torch.finfo(common.amp_dtype(CUDA)).bits // 8
    estimate = P * ev.generate_bytes(model.config, k, T + new, cache_bytes)
    assert peak <= estimate <= 2 * peak, (peak, estimate)
    assert ev.prompts_per_call(model, k, T + new) >= 1
