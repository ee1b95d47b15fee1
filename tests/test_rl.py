"""The RL loop: a toy problem where TOPR must raise the reward, and the train.py rl CLI end to end."""
import argparse
import copy
import dataclasses
import json
import shutil

import pytest
import torch

import common
import topr
import train
from model import GPT, GPTConfig, completion_mask, pack, sequence_logprobs



@pytest.mark.parametrize("loss", ["topr", "reinforce", "sft_pos"])
def test_toy_rl_raises_reward(loss):
    """Reward +1 when the completion contains token 3, -1 otherwise; the policy starts at ~5%.
    The same sample -> score -> (ratio-weighted) update cycle as train.py rl, iterated 4 times."""
    torch.manual_seed(0)
    model = GPT(GPTConfig(block_size=16, vocab_size=20, n_layer=1, n_head=2, n_embd=32))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-2)
    prompt = [[1, 2]]
    gen = torch.Generator().manual_seed(0)

    def sample(n):
        model.eval()
        with torch.no_grad():
            tokens, logp_tok = model.generate(prompt, 3, num_samples=n, generator=gen, eos_id=0)
        model.train()
        mask = completion_mask(tokens, 0)
        reward = torch.tensor([1.0 if 3 in t[m].tolist() else -1.0 for t, m in zip(tokens, mask)])
        return tokens, mask, (logp_tok * mask).sum(-1), reward

    start = sample(512)[3].eq(1).float().mean().item()
    for _ in range(4):  # iterations: behavior policy = current policy
        tokens, mask, logp_b, reward = sample(128)
        comps = [t[m].tolist() for t, m in zip(tokens, mask)]
        seq, pad_mask, compl = pack(prompt * 128, comps, pad_id=19)
        base = 0.0 if loss != "sft_pos" else -1.0
        for _ in range(3):  # epochs over the same data: off-policy after the first step
            logp = topr.sequence_logp(sequence_logprobs(model, seq, pad_mask, compl), compl)
            l, _ = topr.topr_loss(logp, logp_b, reward, name=loss, baseline=base, lengths=compl.sum(-1))
            opt.zero_grad()
            l.backward()
            opt.step()
    end = sample(512)[3].eq(1).float().mean().item()
    assert start < 0.2 and end > start + 0.3, (start, end)


def test_rl_cli_tiny_run_and_resume(tmp_path):
    sft = tmp_path / "sft"
    tiny = ["--n-layer", "1", "--n-head", "2", "--n-embd", "32", "--batch-size", "16", "--sft-examples", "200",
            "--val-examples", "16", "--eval-problems", "4", "--eval-k", "2", "--warmup", "5",
            "--max-new-tokens", "8", "--eval-interval", "20"]
    train.main(["sft", "--out", str(sft), "--max-iters", "20", *tiny])
    rl = ["rl", "--init", str(sft / "ckpt.pt"), "--prompts", "4", "--k", "4", "--batch-size", "8",
          "--micro-batch", "4", "--eval-problems", "4", "--eval-k", "2", "--max-new-tokens", "8"]
    a, b = tmp_path / "a", tmp_path / "b"
    train.main([*rl, "--out", str(a), "--iterations", "2", "--loss", "tis", "--epochs", "2"])
    rows = [json.loads(l) for l in open(a / "metrics.jsonl")]
    steps = [r for r in rows if "mean_alpha" in r]
    assert len(steps) == 2 * 2 * 2  # iterations x epochs x (16 samples / batch 8)
    for key in ("loss", "mean_alpha", "frac_neg_alpha_lt1", "logp_reward_pos", "logp_reward_neg", "entropy",
                "length", "invalid"):
        assert key in steps[0]
    assert [r["iteration"] for r in rows if "test_pass@1" in r] == [0, 1, 2]
    # resume: 1 iteration, then --resume to 2 == 2 iterations in one go (same final weights)
    train.main([*rl, "--out", str(b), "--iterations", "1", "--loss", "tis", "--epochs", "2"])
    with open(b / "metrics.jsonl", "a") as f:  # a crash after logging, before the next checkpoint
        f.write(json.dumps({"iteration": 1, "epoch": 0, "step": 5, "loss": 0.0}) + "\n")
    train.main([*rl, "--out", str(b), "--iterations", "2", "--loss", "tis", "--epochs", "2", "--resume"])
    wa = torch.load(a / "ckpt.pt", weights_only=True)["model"]
    wb = torch.load(b / "ckpt.pt", weights_only=True)["model"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    # ... and the same metrics rows: the rows logged after the checkpoint are not kept twice
    rows_b = [json.loads(l) for l in open(b / "metrics.jsonl") if '"env"' not in l]  # the environment: each start
    rows = [r for r in rows if "env" not in r]
    key = lambda r: (r.get("iteration"), r.get("step"), r.get("loss"), r.get("test_pass@1"))
    assert [key(r) for r in rows_b] == [key(r) for r in rows]


def test_an_update_does_not_depend_on_the_micro_batch_size(tmp_path):
    """Each micro-batch's loss is weighted by its share of the minibatch: micro-batches of 3, 3, 2 give
    the same gradient as one of 8 (the logged pre-clip gradient norm is sensitive to any reweighting,
    unlike Adam's first steps, which barely see the gradient's scale)."""
    sft = tmp_path / "sft"
    train.main(["sft", "--out", str(sft), "--max-iters", "10", "--n-layer", "1", "--n-head", "2", "--n-embd", "32",
                "--batch-size", "16", "--sft-examples", "200", "--val-examples", "16", "--eval-problems", "2",
                "--eval-k", "1", "--warmup", "2", "--max-new-tokens", "8", "--eval-interval", "10"])
    rl = ["rl", "--init", str(sft / "ckpt.pt"), "--prompts", "4", "--k", "4", "--batch-size", "8", "--iterations", "1",
          "--eval-problems", "2", "--eval-k", "1", "--max-new-tokens", "8", "--baseline", "0", "--lr", "1e-3"]
    runs = {}
    for mb in (8, 3):
        train.main([*rl, "--micro-batch", str(mb), "--out", str(tmp_path / f"mb{mb}")])
        runs[mb] = [json.loads(l) for l in open(tmp_path / f"mb{mb}" / "metrics.jsonl") if '"grad_norm"' in l]
    assert len(runs[8]) == len(runs[3]) == 2
    for a, b in zip(runs[8], runs[3]):
        assert a["grad_norm"] == pytest.approx(b["grad_norm"], rel=1e-4) and a["grad_norm"] > 0
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-4, abs=1e-6)
    wa = torch.load(tmp_path / "mb8" / "ckpt.pt", weights_only=True)["model"]
    wb = torch.load(tmp_path / "mb3" / "ckpt.pt", weights_only=True)["model"]
    assert all(torch.allclose(wa[k], wb[k], atol=1e-5) for k in wa)


def test_rl_unknown_loss_is_a_clear_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        train.main(["rl", "--init", "x.pt", "--out", str(tmp_path), "--loss", "grpo"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "invalid choice: 'grpo'" in err and "topr" in err


@pytest.fixture(scope="module")
def tiny_sft(tmp_path_factory):
    out = tmp_path_factory.mktemp("sft")
    train.main(["sft", "--out", str(out), "--max-iters", "20", "--n-layer", "1", "--n-head", "2", "--n-embd", "32",
                "--batch-size", "16", "--sft-examples", "200", "--val-examples", "16", "--eval-problems", "2",
                "--eval-k", "1", "--warmup", "5", "--max-new-tokens", "8", "--eval-interval", "20"])
    return str(out / "ckpt.pt")


def test_rl_nan_loss_stops_before_the_update_and_any_checkpoint(tiny_sft, tmp_path, monkeypatch, capsys):
    """The losses of an update's micro-batches are read (with its other statistics, in one transfer) and
    checked once per update, before the optimizer step: a NaN in step 2's second micro-batch stops the
    run naming step 2, before step 2 is logged or any checkpoint written."""
    real, calls, checks = topr.topr_loss, [], []

    def poisoned(logp, *a, **kw):
        loss, rows = real(logp, *a, **kw)
        calls.append(1)
        if len(calls) == 4:
            loss = loss * float("nan")
        return loss, rows
    monkeypatch.setattr(topr, "topr_loss", poisoned)
    check = common.check_finite
    monkeypatch.setattr(common, "check_finite", lambda *a, **k: checks.append(1) or check(*a, **k))
    with pytest.raises(SystemExit) as e:
        train.main(["rl", "--init", tiny_sft, "--prompts", "4", "--k", "4", "--batch-size", "8", "--micro-batch", "4",
                    "--iterations", "1", "--eval-problems", "2", "--eval-k", "1", "--max-new-tokens", "8",
                    "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert e.value.code == 1 and "nan" in err and "step 2" in err
    assert not (tmp_path / "ckpt.pt").exists()
    assert [json.loads(l)["step"] for l in open(tmp_path / "metrics.jsonl") if '"mean_alpha"' in l] == [1]
    assert len(calls) == 4 and len(checks) == 2  # once per update, not per micro-batch


@pytest.mark.parametrize("task", ["solve", "verify"])
def test_on_policy_ratio_is_exactly_one_under_bf16_autocast(tiny_sft, tmp_path, monkeypatch, task):
    """CPU bf16 autocast stands in for CUDA's: rollouts (generate with a bf16 KV cache) and updates both run
    under it, with other kernels (decoding with a cache vs one pass). log mu is recomputed with the update's
    own forward, so the first (on-policy) step has rho == 1 exactly and TOPR == REINFORCE to the last bit, for
    the solver and the verifier; the gap between the sampler's log mu and the recomputed one is logged."""
    monkeypatch.setattr(train.common, "autocast", lambda device: torch.autocast("cpu", dtype=torch.bfloat16))
    rl = ["rl", "--task", task, "--init", tiny_sft, "--prompts", "4", "--k", "4", "--batch-size", "16",
          "--micro-batch", "5", "--iterations", "1", "--eval-problems", "2", "--eval-k", "1", "--max-new-tokens", "8",
          "--baseline", "0", "--lr", "1e-3"]
    for loss in ("topr", "reinforce"):
        train.main([*rl, "--loss", loss, "--out", str(tmp_path / loss)])
    rows = {loss: [json.loads(l) for l in open(tmp_path / loss / "metrics.jsonl") if '"mean_ratio"' in l][0]
            for loss in ("topr", "reinforce")}
    assert rows["topr"]["mean_ratio"] == 1.0 and rows["topr"]["mean_alpha"] == 1.0 and rows["topr"]["frac_clipped"] == 0
    wa = torch.load(tmp_path / "topr" / "ckpt.pt", weights_only=True)["model"]
    wb = torch.load(tmp_path / "reinforce" / "ckpt.pt", weights_only=True)["model"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    # the mismatch logged is |the sampler's log mu - the recomputed one| per sequence, mean and max: the same
    # numbers as here, from the same dataset recomputed in rl's micro-batches (its first epoch's order)
    policy, tok, _ = train.ev.load_gpt(tiny_sft, "cpu")
    problems = train.data.problems(4, 1, "train")
    if task == "solve":
        batch, log_pi = train.sample_solutions(policy, tok, problems, 4, 8, seed=0), train.solution_logp
    else:
        batch, log_pi = train.sample_verdicts(policy, policy, tok, problems, 4, 8, seed=0), train.verdict_policy_logp
    order = torch.randperm(len(batch), generator=torch.Generator().manual_seed(0))
    recomputed, tokens = train.behavior_logp(policy, tok, batch, log_pi, train.minibatches(order, 16, 5, 0, 1), 1,
                                              torch.device("cpu"))
    gap = (recomputed.double() - batch.logp_behavior.double()).abs()
    logged = [json.loads(l) for l in open(tmp_path / "topr" / "metrics.jsonl") if '"mismatch_mean"' in l]
    assert [(r["mismatch_mean"], r["mismatch_max"]) for r in logged] == [(gap.mean().item(), gap.max().item())]
    # per token (TRL's): |the sampler's log-prob of each completion token - the recomputed one|, over all of them
    packed = train.on_device(batch, tok, torch.device("cpu"))
    compl = packed.compl_mask
    sampled = torch.zeros(compl.shape).masked_scatter(compl, torch.cat(batch.token_logp_sampler))
    tok_gap = (tokens.double() - sampled.double()).abs()[compl]
    assert torch.equal(torch.stack([t.sum() for t in batch.token_logp_sampler]), batch.logp_behavior)  # their sums
    assert [(r["mismatch_token_mean"], r["mismatch_token_max"]) for r in logged] == [(tok_gap.mean().item(),
                                                                                      tok_gap.max().item())]
    assert (tokens[~compl] == 0).all() and torch.allclose(tokens.sum(1), recomputed, atol=1e-4)
    if task == "solve":  # and the recomputation is what makes rho 1: decoding with a cache rounds otherwise
        assert gap.max() > 0 and tok_gap.max() > 0
        # a sequence's gap is at most the sum of its tokens' (the per-token errors may cancel in the sum)
        excess = gap - (tokens.double() - sampled.double()).abs().sum(1)
        assert excess.max() < 1e-5, excess  # (the sums round: float32 at ~40 nats)


def test_on_policy_ratio_is_exactly_one_with_dropout(tmp_path):
    """A policy trained with dropout: rl keeps it in eval mode for sampling, log mu and the updates alike
    (one function of the weights), so the first, on-policy step has rho == 1 exactly, not a dropout draw."""
    sft = tmp_path / "sft"
    train.main(["sft", "--out", str(sft), "--max-iters", "10", "--n-layer", "1", "--n-head", "2", "--n-embd", "32",
                "--dropout", "0.3", "--batch-size", "16", "--sft-examples", "200", "--val-examples", "16",
                "--eval-problems", "2", "--eval-k", "1", "--warmup", "5", "--max-new-tokens", "8", "--eval-interval", "10"])
    assert torch.load(sft / "ckpt.pt", weights_only=True)["config"]["dropout"] == 0.3
    train.main(["rl", "--init", str(sft / "ckpt.pt"), "--prompts", "4", "--k", "4", "--batch-size", "16",
                "--micro-batch", "8", "--iterations", "1", "--eval-problems", "2", "--eval-k", "1",
                "--max-new-tokens", "8", "--loss", "topr", "--baseline", "0", "--out", str(tmp_path / "rl")])
    first = [json.loads(l) for l in open(tmp_path / "rl" / "metrics.jsonl") if '"mean_ratio"' in l][0]
    assert first["mean_ratio"] == 1.0 and first["frac_clipped"] == 0


def test_several_epochs_use_the_frozen_behavior_logp(tiny_sft, tmp_path):
    """The whole update loop, strongly off-policy (one dataset, 4 epochs, lr 1e-2): after the first step the
    ratio pi / mu moves away from 1, so some negatives have rho < 1, and TOPR (negatives weighted by
    clip(rho, 0, 1)) and REINFORCE (weight 1) part ways. If the loss were handed the current policy's log-probs
    where the frozen log mu belongs, rho would stay 1 and the two runs would be identical: this test fails then."""
    rl = ["rl", "--init", tiny_sft, "--prompts", "4", "--k", "4", "--batch-size", "8", "--micro-batch", "8",
          "--iterations", "1", "--epochs", "4", "--eval-problems", "2", "--eval-k", "1", "--max-new-tokens", "8",
          "--baseline", "0", "--lr", "1e-2"]
    rows = {}
    for loss in ("topr", "reinforce"):
        train.main([*rl, "--loss", loss, "--out", str(tmp_path / loss)])
        rows[loss] = [json.loads(l) for l in open(tmp_path / loss / "metrics.jsonl") if '"mean_ratio"' in l]
    assert rows["topr"][0]["loss"] == rows["reinforce"][0]["loss"]        # step 1: on-policy, the same update
    assert max(r["frac_neg_ratio_lt1"] for r in rows["topr"][1:] if r["frac_neg_ratio_lt1"] == r["frac_neg_ratio_lt1"]) > 0
    assert any(r["mean_ratio"] != 1.0 for r in rows["topr"][1:])
    wa = torch.load(tmp_path / "topr" / "ckpt.pt", weights_only=True)["model"]
    wb = torch.load(tmp_path / "reinforce" / "ckpt.pt", weights_only=True)["model"]
    assert any(not torch.equal(wa[k], wb[k]) for k in wa)


@pytest.mark.parametrize("task", ["solve", "verify"])
def test_a_dataset_packed_once_gives_the_same_logp_as_each_micro_batch_packed_alone(tiny_sft, task):
    """The updates read a dataset packed once (train.on_device) and cut to each micro-batch's longest row;
    log pi, the lengths and the entropy are the very numbers of packing the micro-batch alone (as before:
    sequence_logprobs with its padding check, verdict_logp of the prompts) -- CPU, bit for bit."""
    policy, tok, _ = train.ev.load_gpt(tiny_sft, "cpu")
    problems = train.data.problems(4, 3, "train")
    cpu = torch.device("cpu")
    if task == "solve":
        batch, log_pi = train.sample_solutions(policy, tok, problems, 4, 8, seed=1), train.solution_logp
    else:
        batch, log_pi = train.sample_verdicts(policy, policy, tok, problems, 4, 8, seed=1), train.verdict_policy_logp
    packed = train.on_device(batch, tok, cpu)
    for idx in ([0, 5, 9], [3], list(range(16))[::-1], [15, 1, 2, 7, 8]):
        micro = batch[idx]
        if task == "solve":
            tokens, pad_mask, compl = pack(micro.prompt, micro.completion, tok.pad_id)
            tok_logp, ent = sequence_logprobs(policy, tokens, pad_mask, compl, return_entropy=True)
            alone = (topr.sequence_logp(tok_logp, compl), compl.sum(-1), ent.sum())
        else:
            yes_no = train.data.verdict_ids(tok)
            lp = train.verdict_logp(policy, micro.prompt, yes_no, tok.pad_id)
            chosen = torch.tensor([yes_no.index(c[0]) for c in micro.completion])
            alone = (lp.gather(1, chosen[:, None]).squeeze(1), torch.ones(len(idx)), -(lp.exp() * lp).sum())
        got = log_pi(policy, tok, packed[idx], cpu)[:3]  # (the 4th: per-token log pi, for --credit)
        assert all(torch.equal(a.detach(), b.detach()) for a, b in zip(got, alone))
        assert torch.equal(packed[idx].reward, micro.reward) and torch.equal(packed[idx].logp_behavior, micro.logp_behavior)


def test_mismatch_and_zero_std_share_by_hand():
    """Two samples of 3 and 2 completion tokens (behind prompts of 1 and 2): per sequence the gap of the summed
    log mu, per token the gap of each token's, mean over the 5 tokens (TRL's convention); and the groups of
    k rows whose rewards are all equal (no signal under a group baseline)."""
    batch = train.Rollout(prompt=[[1], [1, 2]], completion=[[5, 6, 0], [7, 0]], text=["", ""],
                          logp_behavior=torch.tensor([-3.5, -3.25]), reward=torch.tensor([1.0, -1.0]),
                          invalid=torch.zeros(2, dtype=torch.bool),
                          token_logp_sampler=[torch.tensor([-1.0, -2.0, -0.5]), torch.tensor([-3.0, -0.25])])
    cpu = torch.device("cpu")
    packed = train.on_device(batch, train.data.get_tokenizer("byte"), cpu)
    sampled = train.on_tokens(packed, batch.token_logp_sampler, cpu)
    recomputed = train.on_tokens(packed, [torch.tensor([-1.5, -2.0, -0.25]), torch.tensor([-2.0, -0.25])], cpu)
    got = train.mismatch(batch.logp_behavior, torch.tensor([-3.75, -2.25]), sampled, recomputed, packed.compl_mask)
    # sequences: |-3.75 + 3.5| = 0.25, |-2.25 + 3.25| = 1; tokens: 0.5, 0, 0.25, 1, 0 over 5 tokens
    assert got == {"mismatch_mean": 0.625, "mismatch_max": 1.0, "mismatch_token_mean": 0.35, "mismatch_token_max": 1.0}
    reward = torch.tensor([1.0, 1.0, 1.0, -1.0, 1.0, -1.0, -1.0, -1.0, -1.0])  # k = 3: equal, mixed, equal
    assert train.zero_std_share(reward, 3) == 2 / 3 and train.zero_std_share(reward, 1) == 1.0
    assert train.zero_std_share(torch.tensor([1.0, -1.0, 1.0, -1.0]), 2) == 0.0
    # among: only the groups of one slice (here the first and second, then the last alone)
    assert train.zero_std_share(reward, 3, [True, True, False]) == 0.5
    assert train.zero_std_share(reward, 3, [False, False, True]) == 1.0


def test_mfu_and_flops_per_token_by_hand():
    """A 2-layer GPT, width 8, vocabulary 10, context 16, counted by hand: per layer ln_1 16, c_attn 8 x 24 + 24,
    c_proj 64 + 8, ln_2 16, c_fc 8 x 32 + 32, c_proj 32 x 8 + 8 = 872; + wte 80 (tied with the LM head) + ln_f 16
    = 1,840 parameters without the position embeddings (nanoGPT's N). Training: 6N + 12 L d T; a forward:
    2N + 4 L d T."""
    cfg = GPTConfig(block_size=16, vocab_size=10, n_layer=2, n_head=2, n_embd=8)
    n = GPT(cfg).get_num_params()
    assert n == 1840
    assert train.flops_per_token(n, cfg, 16, training=True) == 6 * 1840 + 12 * 2 * 8 * 16 == 14112
    assert train.flops_per_token(n, cfg, 10, training=False) == 2 * 1840 + 4 * 2 * 8 * 10 == 4320
    assert train.mfu(14112, 1e6, 2 * 14112e6) == 0.5
    # the peak by the card's name; unknown (and a CPU): None, no MFU
    names = {"NVIDIA H100 80GB HBM3": 989e12, "NVIDIA H100 PCIe": 756e12, "NVIDIA H100 NVL": 835e12,
             "NVIDIA H200": 989e12, "NVIDIA A100-SXM4-80GB": 312e12, "NVIDIA A100 80GB PCIe": 312e12,
             "NVIDIA L4": 121e12, "NVIDIA L40S": 362e12, "NVIDIA A10": 125e12, "NVIDIA GeForce RTX 4090": 165e12,
             "Tesla V100-PCIE-32GB": 112e12, "Tesla V100-SXM2-16GB": 125e12, "Tesla T4": 65e12,
             "NVIDIA A10G": None, "NVIDIA GeForce RTX 3090": None, None: None}
    assert {name: train.peak_flops(name) for name in names} == names
    # an iteration's row: tokens/s always, MFU only with a peak (context 16: the mean row length)
    assert train.speed({"rollout_tok_per_s": 100.0}, 500, 2.0, 16, n, cfg, None) == {"update_tok_per_s": 250.0}
    row = train.speed({"rollout_tok_per_s": 100.0}, 500, 2.0, 16, n, cfg, 1e9)
    assert row == {"update_tok_per_s": 250.0, "update_mfu": 14112 * 250 / 1e9,
                   "rollout_mfu": (2 * 1840 + 4 * 2 * 8 * 16) * 100 / 1e9}


def test_default_micro_batch_from_free_memory():
    """The CPU's default as before (no free memory given); on CUDA the rows that fit 3/4 of the free memory the
    gradients and AdamW's moments (12 bytes per parameter) leave, each row its logits and activations at full
    context, between 1 and 128."""
    byte = GPTConfig(block_size=256, vocab_size=258, n_layer=4, n_head=4, n_embd=128)
    gpt2 = GPTConfig(block_size=512, vocab_size=50304, n_layer=12, n_head=12, n_embd=768)
    assert train.default_micro_batch(byte) == 128 and train.default_micro_batch(gpt2) == 8
    assert train.default_micro_batch(GPTConfig(block_size=1024, vocab_size=50304)) == 4
    row = 512 * (20 * 50304 + 100 * 12 * 768)  # 0.99 GB: the logits, then the activations
    assert train.row_bytes(gpt2) == row == 986_972_160
    assert train.default_micro_batch(gpt2, 80 * 10 ** 9, 124 * 10 ** 6) == int((80e9 - 12 * 124e6) * 0.75 // row) == 59
    assert train.default_micro_batch(gpt2, 20 * 10 ** 9, 124 * 10 ** 6) == 14
    assert train.default_micro_batch(gpt2, 10 ** 9, 124 * 10 ** 6) == 1  # too little: one row (it may not fit)
    assert train.default_micro_batch(byte, 80 * 10 ** 9, 10 ** 6) == 128  # the cap


def test_update_step_under_fp16s_loss_scaler(tiny_sft):
    """common.grad_scaler on an fp16 card, enabled here on the CPU: the loss scaled by a power of two and the
    gradient unscaled before the clip give the unscaled step bit for bit (the weights and every statistic);
    a step whose scaled gradient overflows is skipped (the weights as they were) and the scale halved."""
    policy, tok, _ = train.ev.load_gpt(tiny_sft, "cpu")
    cpu = torch.device("cpu")
    batch = train.sample_solutions(policy, tok, train.data.problems(4, 2, "train"), 4, 8, seed=0)
    batch.reward, batch.baseline = torch.tensor([1.0, -1.0] * 8), torch.zeros(16)  # positives and negatives
    batch = train.on_device(batch, tok, cpu)
    args = argparse.Namespace(max_new_tokens=8, task="solve", credit="sequence", loss="topr", length_norm="sequence",
                              ppo_eps=0.2)
    objective = train.rl_objective(args, train.solution_logp, tok, cpu)

    def step(scaler, overflow=False):
        model = copy.deepcopy(policy)
        if overflow:  # fp16's overflow: an inf in the (scaled) gradient
            model.lm_head.weight.register_hook(lambda g: torch.full_like(g, float("inf")))
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        stats = train.update_step(model, opt, batch, [list(range(0, 16, 2)), list(range(1, 16, 2))], objective, 1,
                                  1e-3, 1, cpu, scaler)  # clip 1e-3: the clip acts, on the unscaled norm
        return model.state_dict(), stats

    plain, plain_stats = step(torch.amp.GradScaler("cpu", enabled=False))
    scaled, scaled_stats = step(torch.amp.GradScaler("cpu", init_scale=2.0 ** 16))
    assert plain_stats == scaled_stats and plain_stats["grad_norm"] > 1e-3
    assert all(torch.equal(plain[k], scaled[k]) for k in plain)
    assert any(not torch.equal(plain[k], policy.state_dict()[k]) for k in plain)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 16)
    skipped, _ = step(scaler, overflow=True)
    assert all(torch.equal(skipped[k], policy.state_dict()[k]) for k in skipped) and scaler.get_scale() == 2.0 ** 15


def test_deterministic_reaches_setup_precision_and_the_start_up_lines_say_what_runs(tiny_sft, tmp_path, monkeypatch,
                                                                                       capsys):
    """--deterministic goes to common.setup_precision (with the policy's head size, for the attention kernel's
    name), whose line is printed after rl's start-up line; on a CPU that line says fp32 and that a CPU run
    repeats already, and the start-up line that MFU is left out; the scaler's state is saved (empty: disabled)."""
    real, calls = common.setup_precision, []
    monkeypatch.setattr(common, "setup_precision", lambda *a: calls.append(a) or real(*a))
    train.main(["rl", "--init", tiny_sft, "--prompts", "2", "--k", "2", "--batch-size", "4", "--iterations", "1",
                "--eval-problems", "2", "--eval-k", "1", "--max-new-tokens", "8", "--deterministic",
                "--out", str(tmp_path)])
    assert calls == [(torch.device("cpu"), True, 16)]
    lines = capsys.readouterr().out.splitlines()
    start = next(i for i, l in enumerate(lines) if l.startswith("rl: "))
    assert lines[start].endswith("micro-batch 128, device cpu x 1, no MFU on cpu (no peak FLOP/s)"), lines[start]
    assert lines[start + 1] == "precision: float32 on cpu, torch's choice attention, deterministic already"
    assert torch.load(tmp_path / "ckpt.pt", weights_only=True)["scaler"] == {}


def test_over_long_rl_prompts_are_dropped_with_a_count(tiny_sft, tmp_path, monkeypatch, capsys):
    """An RL prompt with no room for --max-new-tokens in the context is dropped and counted (logged, printed):
    one of the 4 prompts made over-long leaves 3 groups of k; all of them over-long is a one-line error."""
    problems, long = train.data.Task.problems, "x" * 300  # the context: 256 tokens
    rl = ["rl", "--init", tiny_sft, "--prompts", "4", "--k", "2", "--batch-size", "8", "--iterations", "1",
          "--eval-problems", "2", "--eval-k", "1", "--max-new-tokens", "8"]

    def with_long(n_long):
        def draw(task, n, seed, split, use="test"):
            got = problems(task, n, seed, split, use=use)
            return [dataclasses.replace(p, question=long) if use == "rl" and i < n_long else p
                    for i, p in enumerate(got)]
        monkeypatch.setattr(train.data.Task, "problems", draw)

    with_long(1)
    train.main([*rl, "--out", str(tmp_path / "a")])
    row = next(json.loads(l) for l in open(tmp_path / "a" / "metrics.jsonl") if "dataset_size" in l)
    assert row["prompts_dropped"] == 1 and row["dataset_size"] == 6
    out = capsys.readouterr().out
    assert "iter   1 | 1 of 4 prompts dropped: longer than --block-size - --max-new-tokens (248 tokens)" in out
    with_long(4)
    with pytest.raises(SystemExit):
        train.main([*rl, "--out", str(tmp_path / "b")])
    err = capsys.readouterr().err
    assert err == ("error: every RL prompt (4) is longer than 248 tokens (the shortest has 306): raise --block-size "
                   "or lower --max-new-tokens\n")


# -----------------------------------------------------------------------------
# Token-level credit in the loop: --credit prefix / first_error

def test_first_departure_hand_cases():
    ref = [5, 6, 7, 0]  # a worked solution, then EOS (0)
    assert train.first_departure([5, 9, 7, 0], ref) == 1      # a wrong operator: its position
    assert train.first_departure([5, 6, 7, 0], ref) == 3      # the solution itself: its last token
    assert train.first_departure([5, 6, 0], ref) == 2         # stops early: the EOS that departs
    assert train.first_departure([5, 6], ref) == 1            # cut at max_new_tokens: its last token
    assert train.first_departure([5, 6, 7, 8, 0], [5, 6, 7]) == 3


def test_first_error_credit_reaches_a_negative_only_at_its_departure():
    batch = train.Rollout(prompt=[[1]] * 3, completion=[[5, 9, 7, 0], [5, 6, 7, 0], [4, 0]], text=["", "", ""],
                          logp_behavior=torch.zeros(3), reward=torch.tensor([-1.0, 1.0, -1.0]),
                          invalid=torch.zeros(3, dtype=torch.bool), first_error=torch.tensor([1, 3, 0]),
                          baseline=torch.full((3,), 0.25))
    adv = [a.tolist() for a in train.token_advantages(batch, "first_error", 3)]
    assert adv == [[0.0, -1.25, 0.0, 0.0], [0.75] * 4, [-1.25, 0.0]]
    prefix = [a.tolist() for a in train.token_advantages(batch, "prefix", 3)]  # the group's tree: V() = -1/3
    assert prefix[2] == pytest.approx([-2 / 3, 0.0]) and sum(prefix[1]) == pytest.approx(1 + 1 / 3)


@pytest.mark.parametrize("credit", ["prefix", "first_error"])
def test_rl_cli_with_token_credit(tiny_sft, tmp_path, credit):
    rl = ["rl", "--init", tiny_sft, "--prompts", "4", "--k", "4", "--batch-size", "8", "--micro-batch", "4",
          "--eval-problems", "2", "--eval-k", "1", "--max-new-tokens", "8", "--iterations", "1", "--epochs", "2",
          "--baseline", "0", "--credit", credit]
    train.main([*rl, "--out", str(tmp_path / "a")])
    steps = [json.loads(l) for l in open(tmp_path / "a" / "metrics.jsonl") if "mean_alpha" in l]
    assert len(steps) == 4 and all(abs(s["loss"]) < 1e3 for s in steps)
    # one sample per prompt: every prefix value is its reward, so every advantage is 0 and nothing moves
    if credit == "prefix":
        train.main([*rl, "--out", str(tmp_path / "b"), "--k", "1"])
        before, after = (torch.load(p, weights_only=False)["model"] for p in (tiny_sft, tmp_path / "b" / "ckpt.pt"))
        assert all(torch.equal(before[k], after[k]) for k in before)


@pytest.mark.parametrize("bad", [["--loss", "sft_pos"], ["--loss", "ppo"], ["--task", "verify"]])
def test_token_credit_needs_a_family_loss_and_the_solver(tiny_sft, tmp_path, bad, capsys):
    with pytest.raises(SystemExit):
        train.main(["rl", "--init", tiny_sft, "--out", str(tmp_path / "x"), "--credit", "prefix", *bad])
    assert "error: --credit prefix needs --task solve and a loss of the family" in capsys.readouterr().err


def test_eval_steps_evaluates_through_a_pass_once_per_step(tiny_sft, tmp_path):
    """--eval-steps 2 over 4 optimizer steps (2 iterations x 2 steps): evaluations at steps 0, 2 and 4, none twice
    (the end of an iteration, which evaluates anyway, falls on step 2 and 4)."""
    train.main(["rl", "--init", tiny_sft, "--prompts", "4", "--k", "4", "--batch-size", "8", "--micro-batch", "8",
                "--iterations", "2", "--epochs", "1", "--eval-problems", "2", "--eval-k", "1", "--max-new-tokens", "8",
                "--eval-steps", "2", "--out", str(tmp_path)])
    steps = [json.loads(l)["step"] for l in open(tmp_path / "metrics.jsonl") if '"test_pass@1"' in l]
    assert steps == [0, 2, 4]
    shutil.rmtree(tmp_path)
    train.main(["rl", "--init", tiny_sft, "--prompts", "4", "--k", "4", "--batch-size", "4", "--micro-batch", "4",
                "--iterations", "1", "--epochs", "1", "--eval-problems", "2", "--eval-k", "1", "--max-new-tokens", "8",
                "--eval-steps", "1", "--out", str(tmp_path)])
    steps = [json.loads(l)["step"] for l in open(tmp_path / "metrics.jsonl") if '"test_pass@1"' in l]
    assert steps == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("credit", ["prefix", "first_error"])
def test_token_credit_logs_what_it_uses(tiny_sft, tmp_path, monkeypatch, capsys, credit):
    """The start-up line names what makes the advantages (--credit prefix: the prefix tree, no baseline), and
    mean_adv is per sequence as in the other modes: first_error's A = R - c (the sum over the tokens of a
    positive would be L (R - c)). Rewards by the parity of the text's length: positives and negatives both."""
    monkeypatch.setattr(train.data, "reward", lambda text, answer: 1.0 if len(text) % 2 else -1.0)
    train.main(["rl", "--init", tiny_sft, "--prompts", "4", "--k", "4", "--batch-size", "16", "--micro-batch", "8",
                "--eval-problems", "2", "--eval-k", "1", "--max-new-tokens", "8", "--iterations", "1",
                "--baseline", "0.25", "--credit", credit, "--out", str(tmp_path)])
    line = next(l for l in capsys.readouterr().out.splitlines() if l.startswith("rl: "))
    if credit == "prefix":
        assert "prefix tree" in line and "baseline" not in line and "c=" not in line, line
        return
    assert "baseline c=+0.25" in line and "credit first_error" in line, line
    rows = [json.loads(l) for l in open(tmp_path / "metrics.jsonl")]
    p = next(r["dataset_pos_frac"] for r in rows if "dataset_pos_frac" in r)
    (step,) = [r for r in rows if "mean_adv" in r]  # one step over the whole dataset
    assert 0 < p < 1 and step["mean_adv"] == pytest.approx(p * 0.75 + (1 - p) * -1.25)


@pytest.mark.parametrize("world", [1, 2, 3])
def test_behavior_steps_give_every_row_to_one_process(world):
    """log mu's micro-batches: over the processes, every row of the dataset exactly once (minibatches() alone
    leaves out each minibatch's last len % world rows under DDP: 9 rows in 4s on 2 processes lose one), in
    micro-batches of at most --micro-batch; the first epoch's own steps first, as they are."""
    order = torch.randperm(9, generator=torch.Generator().manual_seed(0))
    got = []
    for rank in range(world):
        steps = train.behavior_steps(order, 4, 2, rank, world)
        first = list(train.minibatches(order, 4, 2, rank, world))
        assert all(torch.equal(a[0], b[0]) and a[1] == b[1] for a, b in zip(steps, first))
        assert all(len(idx) <= 2 for _, micros in steps for idx in micros)
        got += [i for rows, micros in steps for idx in micros for i in rows[idx].tolist()]
    assert sorted(got) == list(range(9))


def test_first_error_seq_is_first_errors_push_tapered_by_the_sequence_ratio(tiny_sft):
    """--credit first_error_seq: the same per-token advantages as first_error (a positive's A on every token, a
    negative's on its first departure only), tapered by the SEQUENCE's ratio, as sequence credit tapers; first_error
    tapers by the token's own. Off-policy (log mu moved by hand, differently per token) the two losses differ, and
    first_error_seq's equals topr.token_credit_loss(ratio="sequence") with first_error's advantages; on-policy (every
    ratio 1) they are the same."""
    policy, tok, _ = train.ev.load_gpt(tiny_sft, "cpu")
    cpu = torch.device("cpu")
    batch = train.sample_solutions(policy, tok, train.data.problems(4, 2, "train"), 4, 8, seed=0)
    batch.reward, batch.baseline = torch.tensor([1.0, -1.0] * 8), torch.zeros(16)
    batch.token_adv = train.token_advantages(batch, "first_error", 4)
    batch = train.on_device(batch, tok, cpu)
    logp, tok_lp = train.behavior_logp(policy, tok, batch, train.solution_logp,
                                       train.behavior_steps(torch.arange(16), 16, 16, 0, 1), 1, cpu)
    batch.token_adv = train.on_tokens(batch, batch.token_adv, cpu)
    args = argparse.Namespace(max_new_tokens=8, task="solve", loss="topr", length_norm="sequence", ppo_eps=0.2)
    loss = lambda credit: train.rl_objective(argparse.Namespace(**vars(args), credit=credit), train.solution_logp,
                                             tok, cpu)(policy, batch)[0].item()
    batch.logp_behavior, batch.token_logp_behavior = logp, tok_lp  # on-policy: every ratio is 1
    assert loss("first_error_seq") == pytest.approx(loss("first_error"), rel=1e-6)
    shift = torch.linspace(-0.6, 0.6, tok_lp.shape[1]).expand_as(tok_lp) * batch.compl_mask  # per token, both signs
    batch.token_logp_behavior = tok_lp + shift
    batch.logp_behavior = logp + shift.sum(-1) + 0.3  # the sequence's ratio: exp(-0.3 - sum of the shifts)
    with torch.no_grad():
        lp, lengths, _, (tlp, compl) = train.solution_logp(policy, tok, batch, cpu)
        ref, _ = topr.token_credit_loss(tlp, compl, batch.logp_behavior, batch.reward, batch.token_adv[:, :tlp.shape[1]],
                                        name="topr", ratio="sequence", lengths=lengths)
    assert loss("first_error_seq") == pytest.approx(ref.item(), rel=1e-6)
    assert abs(loss("first_error_seq") - loss("first_error")) > 1e-4
