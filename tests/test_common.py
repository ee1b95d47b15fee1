"""common.py: flag validation, the metrics log on resume, RNG state across machines, one-process agreement."""
import argparse
import json

import pytest
import torch

import common


def test_flag_bounds_and_messages():
    frac = common.flag(float, above=0, below=1)
    assert frac("0.5") == 0.5
    for bad, message in (("1", "must be in (0, 1), got 1"), ("nan", "finite"), ("x", "not a number")):
        with pytest.raises(argparse.ArgumentTypeError, match=message.replace("(", r"\(").replace(")", r"\)")):
            frac(bad)
    assert common.positive("3") == 3
    with pytest.raises(argparse.ArgumentTypeError, match="must be >= 1, got 0"):
        common.positive("0")
    with pytest.raises(argparse.ArgumentTypeError, match="not an integer"):
        common.positive("2.5")


def test_metrics_resume_cuts_the_log_back_to_the_checkpoint(tmp_path):
    m = common.Metrics(str(tmp_path))
    for i in range(3):
        m.log(step=i)
    saved = m.rows  # what a checkpoint stores
    m.log(step=3)  # logged after the checkpoint, then a crash
    m.close()
    m = common.Metrics(str(tmp_path), resume=True, rows=saved)
    m.log(step=3)
    m.close()
    assert [json.loads(l)["step"] for l in open(tmp_path / "metrics.jsonl")] == [0, 1, 2, 3]
    common.Metrics(str(tmp_path), resume=True, rows=None).close()  # an old checkpoint: the log is kept whole
    assert len(open(tmp_path / "metrics.jsonl").readlines()) == 4


def test_rng_state_saved_with_more_gpus_than_visible(monkeypatch):
    """A checkpoint from 2 GPUs resumes on 1: each visible GPU gets its own saved state."""
    state = common.rng_state()
    state["cuda"] = [torch.zeros(16, dtype=torch.uint8), torch.ones(16, dtype=torch.uint8)]
    got = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", got.append)
    common.set_rng_state(state)
    assert len(got) == 1 and len(got[0]) == 1 and torch.equal(got[0][0], state["cuda"][0])


def test_one_process_agrees_with_itself():
    assert common.agree(True, 1, torch.device("cpu")) and not common.agree(False, 1, torch.device("cpu"))
    assert common.agree(True, 1, device=None)  # alone, no device work at all: the loops call it every step
    with pytest.raises(common.NonFiniteLoss, match="step 7"):
        common.check_finite(torch.tensor(float("nan")), 7)
    common.check_finite(torch.tensor(1.0), 7)
    # a log interval's losses, steps 10..13, checked at once: the first bad one is named
    with pytest.raises(common.NonFiniteLoss, match="loss is inf at step 12"):
        common.check_finite(torch.tensor([1.0, 2.0, float("inf"), float("nan")]), 10)
    common.check_finite(torch.tensor([1.0, 2.0]), 10)
