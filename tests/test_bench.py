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
    rot unseen: on-policy rho is exactly 1 under CPU bf16 and the mismatch is reported."""
    bench.main(["gpu-check", "--device", "cpu"])
    out = capsys.readouterr().out
    assert "environment: torch" in out and "sync: skipped (no CUDA" in out and "pytest -m gpu: skipped" in out
    assert "rho under bf16, on-policy: mean 1.0, clipped 0 (== 1 exactly)" in out and "mismatch" in out
    assert "update, micro-batch" in out and "rollout 2 x 2 samples" in out and "gpu-check: all passed" in out


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
