"""Data-parallel training: 2 processes (torchrun, gloo on CPU: `--device cpu` whatever the machine has) ==
1 process on the same global batch."""
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--device", "cpu", "--n-layer", "1", "--n-head", "2", "--n-embd", "32", "--batch-size", "8", "--sft-examples", "200",
        "--val-examples", "16", "--eval-problems", "4", "--eval-k", "1", "--warmup", "2", "--max-new-tokens", "4",
        "--max-iters", "6", "--log-interval", "3", "--eval-interval", "100"]


def run(cmd, tmp):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    return r


def test_torchrun_two_processes_equal_one(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    run([sys.executable, "train.py", "sft", "--out", str(one), *TINY], tmp_path)
    run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         "train.py", "sft", "--out", str(two), *TINY], tmp_path)
    a = torch.load(one / "ckpt.pt", weights_only=True)
    b = torch.load(two / "ckpt.pt", weights_only=True)
    assert a["step"] == b["step"] == 6
    for k in a["model"]:
        # same global batch, same gradients up to float summation order
        assert torch.allclose(a["model"][k], b["model"][k], atol=1e-5, rtol=1e-4), k
    # the logged global-batch losses agree too (rank 0 logs the all-reduced mean)
    import json
    la = [json.loads(l)["loss"] for l in open(one / "metrics.jsonl") if '"loss"' in l]
    lb = [json.loads(l)["loss"] for l in open(two / "metrics.jsonl") if '"loss"' in l]
    assert len(la) == len(lb) == 2 and all(abs(x - y) < 1e-4 for x, y in zip(la, lb))
    assert la[1] < la[0]  # training happened: the comparison is not between two untouched models


@pytest.mark.parametrize("task", ["solve", "verify"])
def test_torchrun_rl_two_processes_equal_one(tmp_path, task):
    """Rollouts split across 2 processes and gathered, update shares all-reduced == 1 process
    (for the verifier: candidates and verdicts both)."""
    sft = tmp_path / "sft"
    run([sys.executable, "train.py", "sft", "--out", str(sft), *TINY], tmp_path)
    rl = ["train.py", "rl", "--device", "cpu", "--task", task, "--init", str(sft / "ckpt.pt"), "--prompts", "4", "--k", "4", "--batch-size", "8",
          "--micro-batch", "2", "--eval-problems", "2", "--eval-k", "1", "--max-new-tokens", "6", "--iterations", "2",
          "--loss", "topr", "--lr", "1e-3", "--baseline", "0"]  # c = 0: all-wrong samples still get gradient
    one, two = tmp_path / "one", tmp_path / "two"
    run([sys.executable, *rl, "--out", str(one)], tmp_path)
    run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", *rl, "--out", str(two)],
        tmp_path)
    a = torch.load(one / "ckpt.pt", weights_only=True)
    b = torch.load(two / "ckpt.pt", weights_only=True)
    assert a["step"] == b["step"] == 4 and a["samples"] == b["samples"] == 32
    for k in a["model"]:
        assert torch.allclose(a["model"][k], b["model"][k], atol=1e-5, rtol=1e-4), k
    import json
    sa = [json.loads(l) for l in open(one / "metrics.jsonl") if '"mean_alpha"' in l]
    sb = [json.loads(l) for l in open(two / "metrics.jsonl") if '"mean_alpha"' in l]
    assert len(sa) == len(sb) == 4 and all(abs(x["loss"] - y["loss"]) < 1e-4 for x, y in zip(sa, sb))
    init = torch.load(sft / "ckpt.pt", weights_only=True)["model"]
    assert any(not torch.equal(init[k], a["model"][k]) for k in init)  # RL did change the weights


def test_torchrun_rl_every_row_gets_its_log_mu(tmp_path):
    """9 samples, minibatches of 4, 2 processes: each minibatch is cut to a multiple of 2 (4, 4, 0), so the first
    epoch leaves a row out, which the second epoch's order trains on. Every row still gets its log mu: on-policy
    the recomputed log mu is the sampler's up to rounding (a row left at 0 is off by its whole log-prob, nats)."""
    sft = tmp_path / "sft"
    run([sys.executable, "train.py", "sft", "--out", str(sft), *TINY], tmp_path)
    run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "train.py", "rl",
         "--device", "cpu", "--init", str(sft / "ckpt.pt"), "--prompts", "3", "--k", "3", "--batch-size", "4",
         "--micro-batch", "2", "--epochs", "2", "--iterations", "1", "--loss", "is", "--eval-problems", "2",
         "--eval-k", "1", "--max-new-tokens", "6", "--out", str(tmp_path / "rl")], tmp_path)
    import json
    rows = [json.loads(l) for l in open(tmp_path / "rl" / "metrics.jsonl")]
    (gap,) = [r for r in rows if "mismatch_max" in r]
    assert [r["dataset_size"] for r in rows if "dataset_size" in r] == [9]
    assert gap["mismatch_max"] < 1e-3, gap
    assert [r["samples"] for r in rows if "mean_alpha" in r] == [4, 8, 12, 16]


def test_torchrun_gsn_two_processes_equal_one(tmp_path):
    """gsn.py under torchrun. The chain's noise is random per process, so the exact comparison uses a
    deterministic DAE (no input noise, no walkback): what is tested is the data split and the
    gradient averaging."""
    args = ["gsn.py", "--device", "cpu", "--model", "dae", "--hidden", "16", "--walkbacks", "1", "--input-noise", "0",
            "--max-steps", "5", "--batch-size", "20", "--n-train", "200", "--threads", "1"]
    one, two = tmp_path / "one", tmp_path / "two"
    run([sys.executable, *args, "--out", str(one)], tmp_path)
    run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", *args,
         "--out", str(two)], tmp_path)
    a = torch.load(one / "ckpt.pt", weights_only=True)
    b = torch.load(two / "ckpt.pt", weights_only=True)
    assert a["step"] == b["step"] == 5
    for k in a["model"]:
        assert torch.allclose(a["model"][k], b["model"][k], atol=1e-6, rtol=1e-5), k


def test_torchrun_gsn_with_more_layers_than_walkback_steps(tmp_path):
    """K = 3 layers, 1 walkback step: the top layers' parameters get no gradient; DDP still runs."""
    args = ["gsn.py", "--device", "cpu", "--model", "gsn", "--layers", "3", "--hidden", "16", "--walkbacks", "1",
            "--max-steps", "3", "--batch-size", "20", "--n-train", "200", "--threads", "1", "--out", str(tmp_path)]
    run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", *args], tmp_path)
    assert torch.load(tmp_path / "ckpt.pt", weights_only=True)["step"] == 3



def _worker_pid(rank, marker, deadline):
    """The pid of the torchrun worker with RANK=rank whose command line contains marker (via /proc)."""
    while time.time() < deadline:
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                cmd = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")
                env = open(f"/proc/{pid}/environ", "rb").read().split(b"\0")
            except OSError:
                continue
            if marker.encode() in b" ".join(cmd) and f"RANK={rank}".encode() in env and b"train.py" in b" ".join(cmd):
                return int(pid)
        time.sleep(0.2)
    raise AssertionError(f"no worker of rank {rank} found")


def test_ctrl_c_in_one_process_stops_every_process_after_a_checkpoint(tmp_path):
    """Only rank 1 gets SIGINT: both ranks agree to stop at the same step; rank 0 writes the checkpoint;
    torchrun exits cleanly (no process waits for the other until the timeout)."""
    out = tmp_path / "run"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    p = subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                          "train.py", "sft", "--out", str(out), *TINY, "--max-iters", "100000", "--log-interval", "1",
                          "--eval-interval", "100000"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 120
    pid = _worker_pid(1, str(out), deadline)
    metrics = out / "metrics.jsonl"
    while time.time() < deadline and (not metrics.exists() or len(metrics.read_text().splitlines()) < 3):
        time.sleep(0.2)
    os.kill(pid, signal.SIGINT)
    stdout, _ = p.communicate(timeout=120)
    assert p.returncode == 0, stdout[-3000:]
    assert "stopped at iter" in stdout
    ckpt = torch.load(out / "ckpt.pt", weights_only=True)
    assert 3 <= ckpt["step"] < 100000
