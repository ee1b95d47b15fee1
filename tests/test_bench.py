"""bench.py runs: every subcommand on a tiny setting (--quick), and `bench.py rl --ckpt` on a trained
checkpoint (the README's command). Speed targets are read from its output by a person, never asserted
here: timings on a shared machine are noise."""
import pytest
import torch

import bench
import train


def test_every_bench_subcommand_runs(capsys):
    bench.main(["all", "--quick", "--threads", "1", "--reps", "1"])
    out = capsys.readouterr().out
    for section in ("===== gpt, 1 thread(s)", "===== rl, 1 thread(s)", "===== gsn, 1 thread(s)", "===== memory, 1 thread(s)"):
        assert section in out
    assert "speed-up x" in out and "update (1 epoch of 8 sequences" in out and "GFLOP/s" in out


def test_bench_rl_on_a_checkpoint(tmp_path, capsys):
    train.main(["sft", "--out", str(tmp_path), "--max-iters", "4", "--n-layer", "1", "--n-head", "2", "--n-embd", "32",
                "--batch-size", "8", "--sft-examples", "50", "--val-examples", "8", "--eval-problems", "2",
                "--eval-k", "1", "--warmup", "1", "--max-new-tokens", "8"])
    bench.main(["rl", "--quick", "--threads", "1", "--reps", "1", "--ckpt", str(tmp_path / "ckpt.pt")])
    assert "time per iteration" in capsys.readouterr().out


@pytest.mark.parametrize("what", ["gpt", "rl", "gsn", "memory", "all", "gpu-check"])
def test_cuda_without_cuda_is_a_one_line_error(what, monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # as on this CPU-only machine, on any machine
    with pytest.raises(SystemExit) as e:
        bench.main([what, "--device", "cuda", "--quick", "--threads", "1", "--reps", "1"])
    err = capsys.readouterr().err
    assert e.value.code == 1 and err.startswith("error: --device cuda: CUDA is not available") and err.count("\n") == 1


def test_gpu_check_runs_its_small_version_on_a_cpu(capsys):
    """bench.py gpu-check without a GPU: every part runs (or says it needs CUDA), so the GPU's version cannot
    rot unseen: on-policy rho is exactly 1 under CPU bf16 and the mismatch is reported (per sequence and per
    token), with padded prompts and without; the evaluation path runs; the attention kernel of each call is
    named; the free memory and MFU say they are n/a on a CPU."""
    bench.main(["gpu-check", "--device", "cpu"])
    out = capsys.readouterr().out
    assert "environment: torch" in out and "| precision: float32 on cpu" in out
    assert "sync: skipped (no CUDA" in out and "pytest -m gpu: skipped" in out
    assert "memory: free memory n/a on CPU; rl's micro-batch at GPT-2's shape: 8 (the CPU rule)" in out
    attention = next(l for l in out.splitlines() if l.startswith("attention (head size 32; common: torch's choice): "))
    calls = [c.split(" ", 1) for c in attention.split("): ", 1)[1].split(" | ")]
    assert [what for what, _ in calls] == ["sampling", "recomputation", "update"]
    assert all(kernel and kernel != "?" for _, kernel in calls)
    assert "rho under bf16, on-policy: mean 1.0, clipped 0 (== 1 exactly)" in out and "per token mean" in out
    assert "update, micro-batch 2 x 64 tokens (quick)" in out and "rollout 2 x 2 samples" in out
    assert out.count("MFU n/a on CPU (no peak FLOP/s)") == 2
    for what in ("padded prompts (4 lengths)", "equal-length prompts (1 lengths)"):
        assert f"rho at 2 x 64, {what}: max |rho - 1| 0 | mismatch per token mean" in out
    assert "evaluation (4 problems x 2 samples, 8 new tokens)" in out and "gpu-check: all passed" in out


def test_mfu_text_says_why_there_is_none_or_computes_it(monkeypatch):
    """gpu-check's MFU: train.mfu against the card's peak (train.PEAK_FLOPS), or why there is none."""
    assert bench.mfu_text(1e9, 1e3, torch.device("cpu")) == "MFU n/a on CPU (no peak FLOP/s)"
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda dev: "NVIDIA A100-SXM4-80GB")
    assert bench.mfu_text(312e6, 1e5, torch.device("cuda")) == "MFU 10.0% of 312 TFLOP/s"
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda dev: "NVIDIA A10G")
    assert bench.mfu_text(1e9, 1e3, torch.device("cuda")) == "MFU n/a (NVIDIA A10G is not in train.PEAK_FLOPS)"


def test_memory_bench_prints_measured_and_formula(capsys):
    bench.main(["memory", "--quick", "--threads", "1"])
    out = capsys.readouterr().out
    lines = [l.split() for l in out.splitlines() if l.split() and l.split()[0] in ("1", "2")]
    assert [l[0] for l in lines] == ["1", "2"]
    params = bench.GPT(bench.GPTConfig(block_size=32, vocab_size=bench.GPT2_VOCAB)).get_num_params(False)
    assert all(float(l[2]) == round((train.LOGIT_BYTES * int(l[0]) * 32 * bench.GPT2_VOCAB + 8 * params) / 2 ** 20)
               for l in lines)


def test_memory_bench_second_thread_count_measures_as_the_first(capsys):
    """--threads 1 2: ru_maxrss is the process's peak and never goes down, so a second pass in the same process
    starts above its own peak (0 MiB in every row). Each pass measures from its own start: the 2-thread table reads
    what the 1-thread one does (the same work; the resident-memory gauge is noisy, hence the wide margin)."""
    bench.main(["memory", "--quick", "--threads", "1", "2"])
    out = capsys.readouterr().out
    tables = [[float(l.split()[1]) for l in part.splitlines() if l.split() and l.split()[0] in ("1", "2")]
              for part in out.split("=====")[2::2]]  # the text after each "===== memory, t thread(s) =====" line
    params = bench.GPT(bench.GPTConfig(block_size=32, vocab_size=bench.GPT2_VOCAB)).get_num_params(False)
    assert len(tables) == 2 and all(len(t) == 2 for t in tables)
    for one, two in zip(*tables):
        assert two > 8 * params / 2 ** 20 / 2  # at least half the weights and gradients: not 0
        assert 0.5 < two / one < 2


def test_memory_check_on_cuda_prints_the_micro_batch_the_free_memory_gives(monkeypatch, capsys):
    """gpu-check's memory line on a card (its memory faked: 40 of 80 GiB free): train.py rl's micro-batch at GPT-2's
    shape from that free memory, as train.default_micro_batch takes it (124M parameters, counted on no device)."""
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda dev: (40 * 2 ** 30, 80 * 2 ** 30))
    bench.memory_check(torch.device("cuda"))
    rows = train.default_micro_batch(bench.gpt2_config(False), 40 * 2 ** 30, 124_047_360)
    assert capsys.readouterr().out == (f"memory: 40.0 of 80.0 GiB free; rl's micro-batch at GPT-2's shape from it: "
                                       f"{rows} rows of 512 (0.92 GiB each by train.row_bytes)\n") and rows == 31
