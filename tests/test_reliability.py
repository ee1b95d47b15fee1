"""Reliability: a NaN loss stops training and keeps the last good checkpoint; Ctrl-C saves and exits;
a checkpoint from another config is refused."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

import common
import train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--n-layer", "1", "--n-head", "2", "--n-embd", "32", "--batch-size", "8", "--sft-examples", "200",
        "--val-examples", "16", "--eval-problems", "4", "--eval-k", "1", "--warmup", "2", "--max-new-tokens", "4",
        "--log-interval", "1"]


def test_nan_loss_stops_with_the_step_and_keeps_last_good_checkpoint(tmp_path, monkeypatch, capsys):
    real = train.F.cross_entropy
    calls = {"n": 0}

    def poisoned(*a, **kw):  # the 8th training step's loss is NaN (training sums; validation means)
        out = real(*a, **kw)
        if kw.get("reduction") == "sum":
            calls["n"] += 1
            if calls["n"] == 8:
                return out * float("nan")
        return out
    monkeypatch.setattr(train.F, "cross_entropy", poisoned)
    with pytest.raises(SystemExit) as e:
        train.main(["sft", "--out", str(tmp_path), "--max-iters", "20", "--eval-interval", "5", *TINY])
    err = capsys.readouterr().err
    assert e.value.code == 1 and "nan" in err and "step 8" in err
    ckpt = common.load_checkpoint(str(tmp_path / "ckpt.pt"))
    assert ckpt["step"] == 5  # the checkpoint written at the last evaluation, untouched
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values())


def test_nan_loss_mid_interval_is_caught_before_the_next_checkpoint(tmp_path, monkeypatch, capsys):
    """Losses are checked at log lines (every 4 iters) and before checkpoints (every 6), not every step:
    a NaN at step 5 stops the run at the check of step 6, before the first checkpoint is written."""
    real, calls, checks = train.F.cross_entropy, [], []

    def poisoned(*a, **kw):
        out = real(*a, **kw)
        if kw.get("reduction") == "sum":
            calls.append(1)
            if len(calls) == 5:
                return out * float("nan")
        return out
    monkeypatch.setattr(train.F, "cross_entropy", poisoned)
    check = common.check_finite
    monkeypatch.setattr(common, "check_finite", lambda *a, **k: checks.append(1) or check(*a, **k))
    with pytest.raises(SystemExit) as e:
        train.main(["sft", "--out", str(tmp_path), "--max-iters", "20", *TINY, "--log-interval", "4",
                    "--eval-interval", "6"])
    err = capsys.readouterr().err
    assert e.value.code == 1 and "nan" in err and "step 5" in err
    assert not (tmp_path / "ckpt.pt").exists()
    assert [json.loads(l)["iter"] for l in open(tmp_path / "metrics.jsonl") if '"env"' not in l] == [4]
    assert len(calls) == 6 and len(checks) == 2  # one host read per check, not per step


def test_sigint_writes_a_checkpoint_and_resume_finishes(tmp_path):
    out = tmp_path / "run"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    p = subprocess.Popen([sys.executable, "train.py", "sft", "--out", str(out), "--max-iters", "100000",
                          "--eval-interval", "100000", *TINY], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
    metrics = out / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and (not metrics.exists() or len(metrics.read_text().splitlines()) < 3):
        time.sleep(0.2)
    p.send_signal(signal.SIGINT)
    stdout, _ = p.communicate(timeout=120)
    assert p.returncode == 0, stdout[-2000:]
    assert "SIGINT" in stdout and "stopped at iter" in stdout
    ckpt = common.load_checkpoint(str(out / "ckpt.pt"))
    logged = [json.loads(l)["iter"] for l in metrics.read_text().splitlines() if '"env"' not in l]
    assert 3 <= ckpt["step"] < 100000 and ckpt["step"] >= max(logged)


def test_resume_with_another_config_is_refused(tmp_path, capsys):
    train.main(["sft", "--out", str(tmp_path), "--max-iters", "4", "--stop-at", "2", "--eval-interval", "100", *TINY])
    other = [a if a != "32" else "48" for a in TINY]  # n_embd 32 -> 48
    with pytest.raises(SystemExit) as e:
        train.main(["sft", "--out", str(tmp_path), "--max-iters", "4", "--resume", *other])
    assert e.value.code == 1 and "different model config" in capsys.readouterr().err


def test_gsn_sigint_writes_a_checkpoint(tmp_path):
    out = tmp_path / "gsn"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    p = subprocess.Popen([sys.executable, "gsn.py", "--model", "dae", "--hidden", "16", "--max-steps", "1000000",
                          "--n-train", "300", "--batch-size", "20", "--out", str(out)], cwd=ROOT, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    metrics = out / "metrics.jsonl"
    deadline = time.time() + 180
    while time.time() < deadline and (not metrics.exists() or '"step"' not in metrics.read_text()):
        time.sleep(0.2)  # logged every 100 steps (after the environment line): training is under way
    p.send_signal(signal.SIGINT)
    stdout, _ = p.communicate(timeout=180)
    assert p.returncode == 0, stdout[-2000:]
    assert "stopped at step" in stdout
    ckpt = common.load_checkpoint(str(out / "ckpt.pt"))
    assert 100 <= ckpt["step"] < 1000000
