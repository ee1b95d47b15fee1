"""On a GPU only (marked gpu: skipped without CUDA; `pytest -m gpu` runs these alone, as bench.py gpu-check
does). No RL or SFT step waits on the GPU; on-policy rho is 1 exactly under bf16; decoding with a KV cache
agrees with recomputation within stated tolerances (other kernels: not bit for bit)."""
import json

import pytest
import torch

import bench
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
