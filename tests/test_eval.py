"""eval.py's sampling in the training precision and the size of its generate calls: the samples and the
verifier's scores are taken under common.autocast (a bf16 KV cache under bf16), and the prompts per generate call
come from the memory a call needs (generate_bytes, tied here to KVCache's real allocation) against the GPU's free
memory, while the CPU keeps its 64 prompts (its samples do not move)."""
import contextlib

import pytest
import torch

import common
import data
import eval as ev
from model import GPT, GPTConfig, KVCache

GPT2 = GPTConfig(block_size=512, vocab_size=50258, n_layer=12, n_head=12, n_embd=768, pad_vocab_to=64)


def test_generate_bytes_is_the_kv_cache_torch_allocates_plus_the_decode_and_prefill_terms():
    """At GPT-2 124M, block 512, bf16, k = 8 (the README's evaluation line): the KV cache as KVCache allocates it
    (on the meta device: no memory), 9 rows (8 samples + the prefill row they are copied from), plus 6 fp32
    (8, 50,304) decode tensors and 12 x 768 fp32 prefill values per position."""
    row = KVCache(12, 1, 12, 512, 64, "meta", torch.bfloat16).kv.nbytes
    assert row == 12 * 2 * 768 * 512 * 2 == 18_874_368  # 36,864 bytes per position: "37 KB per row and token"
    want = 9 * row + 8 * 6 * 50304 * 4 + 12 * 768 * 512 * 4
    assert ev.generate_bytes(GPT2, 8, 512, 2) == want == 198_402_048
    assert ev.generate_bytes(GPT2, 1, 512, 2) == row + 6 * 50304 * 4 + 12 * 768 * 512 * 4  # greedy: no copy
    assert 12.6e9 < 64 * want < 12.8e9  # the evaluation peak at 64 prompts x 8 samples (README)


def test_prompts_per_call_fit_the_budget_and_the_cpu_keeps_64(monkeypatch):
    assert ev.BATCH_PROMPTS == 64 and ev.prompts_that_fit(10**9, None) == 64
    assert ev.prompts_that_fit(100, 10**9) == 64  # room for more: still 64, the chunks (and samples) of the CPU
    assert ev.prompts_that_fit(100, 1050) == 10 and ev.prompts_that_fit(100, 99) == 1
    cpu_model = GPT(GPTConfig(block_size=64, n_layer=1, n_head=2, n_embd=16))
    assert ev.generate_budget(torch.device("cpu")) is None and ev.prompts_per_call(cpu_model, 8, 64) == 64
    # CUDA's budget: 70% of the free memory plus what the allocator holds unused (mocked: no GPU here)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (10 * 2**30, 80 * 2**30))
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device=None: 3 * 2**30)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device=None: 1 * 2**30)
    budget = ev.generate_budget(torch.device("cuda"))
    assert budget == pytest.approx(0.7 * 12 * 2**30)
    assert ev.prompts_that_fit(ev.generate_bytes(GPT2, 8, 512, 2), budget) == 45  # a card with 12 GiB to spare
    assert ev.prompts_that_fit(ev.generate_bytes(GPT2, 8, 512, 4), budget) == 24  # an fp32 cache: about half


@pytest.fixture(scope="module")
def byte_model():
    torch.manual_seed(0)
    return GPT(GPTConfig(block_size=256, n_layer=1, n_head=2, n_embd=32)).eval(), data.get_tokenizer("byte")


def test_the_cpu_default_draws_the_same_samples_as_64_prompts_per_call(byte_model):
    model, tok = byte_model
    problems = data.Task().problems(70, 0, "test")  # two calls of 64 + 6
    draw = lambda **kw: ev.sample_answers(model, tok, problems, 2, 1.0, 6, torch.Generator().manual_seed(0), **kw)
    assert draw() == draw(batch_prompts=64)
    assert draw() != draw(batch_prompts=35)  # the chunking does decide the samples: hence 64 kept on the CPU


def test_samples_and_verifier_scores_run_in_the_training_precision(byte_model, monkeypatch):
    """With a bf16 autocast standing in for CUDA's (CPU autocast), generate's KV cache is bf16 and the verifier
    scores under it; under the CPU's own (no autocast) the cache stays fp32."""
    model, tok = byte_model
    dtypes, entered = [], []
    new_cache = model.new_cache
    monkeypatch.setattr(model, "new_cache", lambda B, T: dtypes.append((c := new_cache(B, T)).kv.dtype) or c)
    prompts = [tok.encode(data.format_prompt(p.question)) for p in data.Task().problems(3, 0, "test")]
    ev.sample_completions(model, tok, prompts, 2, 4, 1.0, torch.Generator().manual_seed(0))
    assert dtypes == [torch.float32]

    @contextlib.contextmanager
    def bf16(device):
        entered.append(device.type)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            yield

    monkeypatch.setattr(common, "autocast", bf16)
    ev.sample_completions(model, tok, prompts, 2, 4, 1.0, torch.Generator().manual_seed(0))
    assert dtypes[-1] == torch.bfloat16
    ev.score_candidates(model, tok, data.Task().problems(2, 0, "test"), [["#### 1"], ["#### 2", "#### 3"]])
    assert entered == ["cpu", "cpu"]  # one generate call, one verifier batch
