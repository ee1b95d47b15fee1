"""gsn.py: the GSN/DAE model, walkback loss, chains, inpainting, its config, training and resume; parzen.py:
the Parzen estimate, k-means and the error bars by source; gsn_experiments.py: the figures, the report, the
experiment, the curve, the error bars and the demo stage."""
import argparse
import dataclasses
import json
import math
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import common  # noqa: E402
import eval as ev  # noqa: E402
import gsn  # noqa: E402
import gsn_experiments  # noqa: E402
import images  # noqa: E402
import parzen  # noqa: E402
from test_images import write_fake_mnist  # noqa: E402


def test_parzen_matches_direct_formula():
    g = torch.Generator().manual_seed(0)
    test, samples = torch.rand(7, 5, generator=g), torch.rand(11, 5, generator=g)
    for sigma in (0.1, 0.3, 1.0):
        got = parzen.parzen_log_likelihood(test, samples, sigma, chunk=3)
        t, s = test.double().numpy(), samples.double().numpy()
        for i in range(len(t)):
            k = np.exp(-((t[i] - s) ** 2).sum(1) / (2 * sigma ** 2)) / (2 * np.pi * sigma ** 2) ** (5 / 2)
            assert abs(got[i].item() - np.log(k.mean())) < 1e-4
    many = parzen.parzen_log_likelihood(test, samples, [0.1, 0.3], chunk=4)
    assert many.shape == (2, 7)
    assert torch.allclose(many[1], parzen.parzen_log_likelihood(test, samples, 0.3))


def test_parzen_recovers_a_gaussian_density():
    # samples from N(0, s^2 I): the Parzen estimate at sigma -> 0 with many samples approaches the true
    # density; with a single centre at the mean and sigma = s it IS the true density
    d, s = 3, 0.5
    g = torch.Generator().manual_seed(1)
    x = s * torch.randn(200, d, generator=g)
    true = -(x ** 2).sum(1) / (2 * s * s) - d / 2 * math.log(2 * math.pi * s * s)
    one = parzen.parzen_log_likelihood(x, torch.zeros(1, d), s)
    assert torch.allclose(one, true.double(), atol=1e-4)
    samples = s * torch.randn(20000, d, generator=g)
    est = parzen.parzen_log_likelihood(x, samples, 0.1, chunk=50)
    assert abs(est.mean().item() - true.mean().item()) < 0.15


def test_parzen_evaluate_picks_sigma_on_validation():
    g = torch.Generator().manual_seed(2)
    samples, valid, test = torch.rand(300, 4, generator=g), torch.rand(50, 4, generator=g), torch.rand(60, 4, generator=g)
    grid = np.logspace(-1.3, -0.3, 5)
    r = parzen.parzen_evaluate(samples, valid, test, grid)
    val = parzen.parzen_log_likelihood(valid, samples, list(grid)).mean(1)
    assert r["sigma"] == pytest.approx(grid[int(val.argmax())])
    ll = parzen.parzen_log_likelihood(test, samples, r["sigma"])
    assert r["ll"] == pytest.approx(ll.mean().item()) and r["se"] == pytest.approx(ll.std().item() / math.sqrt(60))


def test_parzen_nearest_distance_hand_built():
    """Each test point's squared distance to its nearest sample, from the Parzen pass, on points whose answer is
    exact (in any chunking); and as sigma -> 0 the Parzen log-likelihood is -nearest / (2 sigma^2) + a constant."""
    test = torch.tensor([[0., 0.], [3., 4.], [10., 9.]])
    samples = torch.tensor([[1., 0.], [3., 6.], [10., 10.], [-5., -5.]])
    for chunk in (1, 2, 1000):
        assert parzen.parzen_log_likelihood(test, samples, 0.05, chunk=chunk, nearest=True)[1].tolist() == [1.0, 4.0, 1.0]
    ll, near = parzen.parzen_log_likelihood(test, samples, 0.05, chunk=1, nearest=True)
    const = -math.log(4) - math.log(2 * math.pi * 0.05 ** 2)  # d = 2
    assert torch.allclose(ll, -near / (2 * 0.05 ** 2) + const)
    r = parzen.parzen_evaluate(samples, test, test, [0.05, 1.0])
    assert r["nearest"] == pytest.approx(2.0) and r["nearest_se"] == pytest.approx(math.sqrt(3) / math.sqrt(3))


def test_kmeans_recovers_separable_clusters():
    """Three clusters far apart (every point nearer its own centre than any other cluster's points): from
    initial rows in three different clusters, one Lloyd step already gives the exact cluster means."""
    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([[0.] * 5, [10.] * 5, [0.] * 4 + [20.]])
    labels = torch.arange(3).repeat_interleave(20)[torch.randperm(60, generator=g)]
    X = centres[labels] + 0.1 * torch.randn(60, 5, generator=g)
    # the seed's initial rows (kmeans: k distinct random rows) fall in three different clusters
    seed = next(s for s in range(100) if len(set(labels[np.random.RandomState(s).choice(60, 3, replace=False)].tolist())) == 3)
    C = parzen.kmeans(X.numpy(), 3, iters=3, seed=seed)
    means = torch.stack([X[labels == c].mean(0) for c in range(3)])
    order = [int(((means - c) ** 2).sum(1).argmin()) for c in C]
    assert sorted(order) == [0, 1, 2]
    torch.testing.assert_close(C, means[order])
    # two centroids start on equal rows: the first takes every row (argmin: the first of a tie), the second
    # is left with none and stays where it was
    X2 = np.array([[0., 0.], [0., 0.], [3., 3.]], np.float32)
    seed = next(s for s in range(100) if list(np.random.RandomState(s).choice(3, 2, replace=False)) in ([0, 1], [1, 0]))
    torch.testing.assert_close(parzen.kmeans(X2, 2, iters=1, seed=seed), torch.tensor([[1., 1.], [0., 0.]]))


def test_error_components_hand_built():
    """ll[s, c, i] = a_s + b_sc + e_i: seed effects a = 0, 3, 6; chains +-1 within each seed; image effects
    e = 0, 1, 2, 3. The variance components come out exactly."""
    a, b, e = np.array([0., 3., 6.]), np.array([[-1., 1.]] * 3), np.array([0., 1., 2., 3.])
    ll = a[:, None, None] + b[:, :, None] + e[None, None, :]
    r, images = parzen.error_components(ll)
    var_chain, var_seed, var_test = 2.0, 9.0 - 2.0 / 2, np.var(e, ddof=1) / 4
    assert r["mean"] == pytest.approx(3.0 + 1.5) and (r["seeds"], r["chains"]) == (3, 2)
    assert r["chain"] == pytest.approx(math.sqrt(var_chain / 6)) and r["sd_chain"] == pytest.approx(math.sqrt(2))
    assert r["seed"] == pytest.approx(math.sqrt(var_seed / 3)) and r["sd_seed"] == pytest.approx(math.sqrt(8))
    assert r["test"] == pytest.approx(math.sqrt(var_test))
    assert r["total"] == pytest.approx(math.sqrt(var_seed / 3 + var_chain / 6 + var_test))
    np.testing.assert_allclose(images, 3.0 + e)
    # one seed, one chain: only the test-set term, the report's standard error
    one, _ = parzen.error_components(ll[:1, :1])
    assert one["seed"] is None and one["chain"] is None and one["total"] == pytest.approx(np.std(e, ddof=1) / 2)
    # a gap with itself: 0, the paired test term vanishes, seed and chain variances add
    g = parzen.gap_components((r, images), (r, images))
    assert g["mean"] == 0 and g["test"] == 0 and g["seed"] == pytest.approx(math.sqrt(2 * var_seed / 3))
    # seeds that agree better than their chains do: the seed term floors at 0
    r2, _ = parzen.error_components(np.array([[[0.], [4.]], [[1.], [3.]]]).repeat(2, 2))
    assert r2["seed"] == 0.0 and r2["chain"] > 0


def test_curve_and_error_components_agree_on_the_test_set_term(tmp_path):
    """Three seeds, one chain each, scored on the same 4 test images: ll[s, 0, i] = a_s + e_i. The test images are
    shared by the seeds, so their error does not shrink with the number of seeds: curve_report's error bar is
    error_components' total, seed and test-set terms alike (the curve keeps only each seed's mean and s.e.)."""
    a, e = np.array([0., 3., 6.]), np.array([0., 10., 20., 30.])
    ll = a[:, None, None] + e[None, None, :]
    r, _ = parzen.error_components(ll)
    rows = [dict(model="m", seed=s, units=1, steps=2, cpu_s=6.0, nearest=1.0, ll=float(ll[s, 0].mean()),
                 se=float(ll[s, 0].std(ddof=1) / 2), ll_fixed=float(ll[s, 0].mean()), se_fixed=float(ll[s, 0].std(ddof=1) / 2))
             for s in range(3)]
    mean, total, test = parzen.seeds_mean_se([p["ll"] for p in rows], [p["se"] for p in rows])
    assert (mean, total, test) == pytest.approx((r["mean"], r["total"], r["test"]))
    gsn_experiments.curve_report(rows, str(tmp_path))
    line = next(l for l in (tmp_path / "curve.md").read_text().splitlines() if l.startswith("| m |"))
    assert f"| {r['mean']:.1f} +- {r['total']:.1f} |" in line  # 19.5 +- 6.7 (dividing the test term by 3: 4.1)


@pytest.mark.parametrize("layers", [1, 2, 3])
def test_chain_shapes_and_ranges(layers):
    torch.manual_seed(0)
    model = gsn.GSN(784, [32] * layers, act="tanh" if layers > 1 else "sigmoid")
    start = torch.rand(4, 784)
    out = gsn.sample_chain(model, 4, 6, start=start)
    assert out.shape == (6, 4, 784)
    assert out.min() >= 0 and out.max() <= 1 and torch.isfinite(out).all()
    assert gsn.sample_chain(model, 3, 2).shape == (2, 3, 784)  # no start: sparse random images


def test_salt_and_pepper():
    torch.manual_seed(0)
    x = torch.full((100, 784), 0.3)
    y = gsn.salt_and_pepper(x, 0.4)
    changed = y != 0.3
    assert abs(changed.float().mean().item() - 0.4) < 0.01
    assert set(y[changed].unique().tolist()) <= {0.0, 1.0}
    assert abs(y[changed].mean().item() - 0.5) < 0.02


def test_inpaint_keeps_clamped_pixels_exactly():
    torch.manual_seed(0)
    model = gsn.GSN(784, [40, 40])
    images = torch.rand(5, 784)
    mask = gsn.right_half_mask(5)
    assert mask[0].view(28, 28)[:, 15:].all() and not mask[0].view(28, 28)[:, :15].any()
    out = gsn.inpaint(model, images, mask, n_steps=7)
    assert out.shape == (8, 5, 784)
    assert torch.equal(out[:, mask], images[mask].expand(8, -1))
    assert not torch.equal(out[-1][~mask], out[0][~mask])  # the free half moves
    assert out.min() >= 0 and out.max() <= 1


@pytest.mark.parametrize("layers", [1, 2])
def test_walkback_loss_is_sum_of_step_losses(layers):
    """GSN.forward = the chain of GSN.step from the corrupted x, every step's BCE against the clean x, summed."""
    torch.manual_seed(0)
    model = gsn.GSN(784, [30] * layers)
    x = (torch.rand(8, 784) > 0.7).float()
    torch.manual_seed(1)
    loss, step_losses = model(x, walkbacks=4)
    torch.manual_seed(1)  # the same random draws, in the same order
    hs = model.init_state(gsn.salt_and_pepper(x, model.input_noise))
    direct = [F.binary_cross_entropy(torch.sigmoid(model.step(hs)), x) for _ in range(4)]
    assert len(step_losses) == 4
    torch.testing.assert_close(torch.stack(step_losses), torch.stack(direct).detach(), atol=1e-5, rtol=1e-5)
    assert torch.allclose(loss, torch.stack(step_losses).sum())
    loss.backward()  # gradients reach every layer's weights
    assert all(w.grad is not None and w.grad.abs().sum() > 0 for w in model.W)


@pytest.mark.parametrize("noiseless_h1,input_sampling", [(True, True), (False, True), (True, False), (False, False)])
def test_noiseless_h1_and_input_sampling(noiseless_h1, input_sampling):
    """[C]'s two options, flags -> GSNConfig -> the model. noiseless_h1: after one step h1 is exactly the
    noise-free act(x W0 + h2 W1^T + b1) (h2 stays noisy), without it h1 is noisy too. input_sampling: the visible
    fed back is a binary Bernoulli sample of p; without it p itself (input noise 0 here: nothing else changes it)."""
    argv = [] if noiseless_h1 else ["--no-noiseless-h1"]
    argv += [] if input_sampling else ["--no-input-sampling"]
    cfg = _flags(*argv)
    assert (cfg.noiseless_h1, cfg.input_sampling) == (noiseless_h1, input_sampling)
    built = gsn.build_model(cfg)
    assert (built.noiseless_h1, built.input_sampling) == (noiseless_h1, input_sampling)
    torch.manual_seed(0)
    model = gsn.GSN(784, [20, 20], input_noise=0.0, noiseless_h1=noiseless_h1, input_sampling=input_sampling)
    x = torch.rand(5, 784)
    hs = model.init_state(x)
    with torch.no_grad():
        clean_h1 = torch.tanh(x @ model.W[0] + model.b[1] + hs[2] @ model.W[1].T)
        p = torch.sigmoid(model.step(hs))
        clean_h2 = torch.tanh(hs[1] @ model.W[1] + model.b[2])
    assert torch.allclose(hs[1], clean_h1, atol=1e-6) == noiseless_h1
    assert not torch.allclose(hs[2], clean_h2, atol=1e-2)  # sigma 2 on h2 either way
    assert torch.equal(hs[0], p) == (not input_sampling)
    assert bool(((hs[0] == 0) | (hs[0] == 1)).all()) == input_sampling


def test_noiseless_h1_and_input_sampling_flags_are_checked():
    for argv in (["--noiseless-h1", "0"], ["--input-sampling=no"]):
        with pytest.raises(SystemExit) as e:
            gsn.parse_args(argv)
        assert e.value.code == 2
    with pytest.raises(common.UserError, match="input_sampling must be True or False, got 0"):
        gsn.GSNConfig(input_sampling=0)
    # a checkpoint's config written before the two options existed reads back with [C]'s (the only behavior then)
    old = {k: v for k, v in dataclasses.asdict(gsn.GSNConfig()).items() if k not in ("noiseless_h1", "input_sampling")}
    assert gsn.GSNConfig(**old) == gsn.GSNConfig(noiseless_h1=True, input_sampling=True)


def test_tiny_training_reduces_reconstruction_loss():
    torch.manual_seed(0)
    X = torch.from_numpy(images.make_digits(400, 5)[0])
    model = gsn.GSN(784, [64, 64])
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for step in range(60):
        x = X[(step % 4) * 100:(step % 4 + 1) * 100]
        loss, _ = model(x, walkbacks=2)
        opt.zero_grad(); loss.backward(); opt.step()
        losses.append(loss.item())
    assert np.mean(losses[-8:]) < 0.8 * np.mean(losses[:4])


def _cfg(folder, **kw):
    return gsn.GSNConfig(data=folder, hidden=16, batch_size=50, **kw)


def _flags(*argv):
    return gsn.config_from_args(gsn.parse_args(list(argv)))


def test_config_defaults_per_model_and_optimizer():
    """The deep GSN's defaults are GSNConfig's; --model dae and --optimizer sgd bring [C]'s; a flag given wins."""
    assert _flags() == gsn.GSNConfig(max_steps=3600)  # the default budget when none is given
    dae = gsn.GSNConfig(model="dae", layers=1, hidden=1000, act="sigmoid", walkbacks=5, hidden_noise=0.0,
                        binarize="both", max_steps=3600)
    assert _flags("--model", "dae") == gsn.GSNConfig.for_model("dae", max_steps=3600) == dae
    assert _flags("--optimizer", "sgd") == gsn.GSNConfig(optimizer="sgd", lr=0.25, momentum=0.5, lr_decay=0.995,
                                                         max_steps=3600)
    assert _flags("--model", "dae", "--optimizer", "sgd") == dataclasses.replace(dae, optimizer="sgd", lr=10.0)
    c = _flags("--model", "dae", "--binarize", "none", "--hidden-noise", "0", "--lr", "0.5", "--epochs", "2")
    assert (c.binarize, c.hidden_noise, c.lr, c.epochs, c.max_steps) == ("none", 0.0, 0.5, 2.0, None)
    assert _flags("--hidden-noise", "0").hidden_noise == 0.0  # 0 is a value, not "not given"
    assert gsn.GSNConfig(**dataclasses.asdict(c)) == c  # what the checkpoint stores reads back
    with pytest.raises(common.UserError, match="exactly one hidden layer"):
        gsn.GSNConfig.for_model("dae", layers=2)


def test_a_checkpoint_that_is_not_a_gsn_one_is_a_user_error(tmp_path):
    for i, state in enumerate([{"model": {}}, {"config": {"model": "gsn", "n_embd": 8}, "model": {}},
                               {"model_config": {}, "model": {}}, [1, 2]]):
        path = str(tmp_path / f"{i}.pt")
        torch.save(state, path)
        with pytest.raises(common.UserError, match="not a gsn.py checkpoint") as e:
            gsn.load_model(path)
        assert "\n" not in str(e.value)
        assert ("it is a train.py one" in str(e.value)) == (i == 2)  # a GPT checkpoint is named as one


def test_train_resume_is_exact(tmp_path):
    folder = str(tmp_path / "mnist")
    write_fake_mnist(folder, n_train=1100, n_test=20)  # 100 train + 1000 held-out validation
    full, _ = gsn.train(_cfg(folder, **{"max_steps": 6}), str(tmp_path / "a"), quiet=True, log_every=1)
    _, l1 = gsn.train(_cfg(folder, **{"max_steps": 3}), str(tmp_path / "b"), quiet=True, log_every=1)
    half, l2 = gsn.train(_cfg(folder, **{"max_steps": 6}), str(tmp_path / "b"), resume=True, quiet=True, log_every=1)
    _, la = gsn.train(_cfg(folder, **{"max_steps": 6}), str(tmp_path / "c"), quiet=True, log_every=1)
    assert la == l1 + l2  # identical losses, step for step
    for p, q in zip(full.parameters(), half.parameters()):
        assert torch.equal(p, q)
    ck = common.load_checkpoint(str(tmp_path / "b" / "ckpt.pt"))
    assert ck["step"] == 6 and ck["config"] == dataclasses.asdict(_cfg(folder, max_steps=6)) and ck["kind"] == "gsn"
    rows = [json.loads(line) for line in open(tmp_path / "b" / "metrics.jsonl")]
    assert len([r for r in rows if "env" not in r]) == 6 and ["env" in r for r in rows].count(True) == 2  # each start
    assert sorted(os.listdir(tmp_path / "c")) == ["ckpt.pt", "metrics.jsonl"]  # figures: gsn_experiments.py figures


def test_an_old_schema_gsn_checkpoint_loads_and_resumes(tmp_path):
    """A checkpoint as gsn.py wrote it before common.Run's one schema, built by hand: keys config, model, optimizer,
    rng, step, metrics_rows, no kind, and a config without noiseless_h1 and input_sampling. load_model reads it
    (with [C]'s options, the only behavior then), and --resume continues it exactly as the same run's checkpoint of
    today's schema, then writes today's."""
    folder = str(tmp_path / "mnist")
    write_fake_mnist(folder, n_train=1100, n_test=20)
    new_dir, old_dir = tmp_path / "new", tmp_path / "old"
    gsn.train(_cfg(folder, max_steps=3), str(new_dir), quiet=True, log_every=1)
    new = common.load_checkpoint(str(new_dir / "ckpt.pt"))
    assert set(new) == {"kind", "config", "model", "optimizer", "step", "rng", "metrics_rows"} and new["kind"] == "gsn"
    old = {"config": {k: v for k, v in new["config"].items() if k not in ("noiseless_h1", "input_sampling")},
           "model": new["model"], "optimizer": new["optimizer"], "rng": new["rng"], "step": 3,
           "metrics_rows": new["metrics_rows"]}
    old_dir.mkdir()
    torch.save(old, old_dir / "ckpt.pt")
    shutil.copy(new_dir / "metrics.jsonl", old_dir / "metrics.jsonl")
    model, cfg, ckpt = gsn.load_model(str(old_dir / "ckpt.pt"), "cpu")
    assert cfg == _cfg(folder, max_steps=3) and ckpt["step"] == 3 and ckpt["kind"] == "gsn"
    assert all(torch.equal(model.state_dict()[k], v) for k, v in new["model"].items())
    a, la = gsn.train(_cfg(folder, max_steps=6), str(new_dir), resume=True, quiet=True, log_every=1)
    b, lb = gsn.train(_cfg(folder, max_steps=6), str(old_dir), resume=True, quiet=True, log_every=1)
    assert la == lb and len(la) == 3
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert torch.load(old_dir / "ckpt.pt", weights_only=True)["kind"] == "gsn"  # rewritten in today's schema


def test_nan_loss_stops_and_keeps_last_checkpoint(tmp_path, monkeypatch):
    folder = str(tmp_path / "mnist")
    write_fake_mnist(folder, n_train=1100, n_test=20)
    out = str(tmp_path / "run")
    gsn.train(_cfg(folder, **{"max_steps": 2}), out, quiet=True)
    before = common.load_checkpoint(os.path.join(out, "ckpt.pt"))
    orig = gsn.GSN.forward

    def bad_forward(self, *a, **k):
        loss, sl = orig(self, *a, **k)
        return loss * float("nan"), sl
    monkeypatch.setattr(gsn.GSN, "forward", bad_forward)
    with pytest.raises(common.NonFiniteLoss, match="at step 3;"):  # 1-based: the first step after step 2
        gsn.train(_cfg(folder, **{"max_steps": 4}), out, resume=True, quiet=True)
    after = common.load_checkpoint(os.path.join(out, "ckpt.pt"))
    assert after["step"] == 2 and torch.equal(after["model"]["W.0"], before["model"]["W.0"])


def test_nan_loss_mid_interval_is_caught_before_the_next_checkpoint(tmp_path, monkeypatch):
    """Losses are checked at log lines (every 4 steps) and before checkpoints (every 6), not every step: a
    NaN at step 5 (1-based, as the log lines) stops the run at the check of step 6, before its checkpoint,
    naming step 5; the NaN update is not applied meanwhile (NaN weights would make torch.bernoulli fail first)."""
    folder = str(tmp_path / "mnist")
    write_fake_mnist(folder, n_train=1100, n_test=20)
    out = tmp_path / "run"
    orig, calls, checks = gsn.GSN.forward, [], []

    def bad_forward(self, *a, **k):
        loss, sl = orig(self, *a, **k)
        calls.append(1)
        return (loss * float("nan") if len(calls) == 5 else loss), sl
    monkeypatch.setattr(gsn.GSN, "forward", bad_forward)
    check = common.check_finite
    monkeypatch.setattr(common, "check_finite", lambda *a, **k: checks.append(1) or check(*a, **k))
    with pytest.raises(common.NonFiniteLoss, match="at step 5;"):
        gsn.train(_cfg(folder, **{"max_steps": 12}), str(out), quiet=True, log_every=4, ckpt_every=6)
    assert not (out / "ckpt.pt").exists()
    assert [json.loads(l)["step"] for l in open(out / "metrics.jsonl") if '"env"' not in l] == [4]
    assert len(calls) == 6 and len(checks) == 2  # two steps ran past the NaN; one host read per check


def test_resume_after_a_crash_does_not_repeat_metrics_rows(tmp_path):
    """Rows logged after the last checkpoint (then a crash) are cut on --resume: the log ends up holding
    exactly the uninterrupted run's steps."""
    folder = str(tmp_path / "mnist")
    write_fake_mnist(folder, n_train=1100, n_test=20)
    out = tmp_path / "run"
    gsn.train(_cfg(folder, **{"max_steps": 3}), str(out), quiet=True, log_every=1)
    assert common.load_checkpoint(str(out / "ckpt.pt"))["metrics_rows"] == 4  # the environment, then 3 steps
    with open(out / "metrics.jsonl", "a") as f:  # steps 4 and 5 were logged, then the process died
        f.write(json.dumps({"step": 4, "loss": 1.0}) + "\n" + json.dumps({"step": 5, "loss": 1.0}) + "\n")
    _, losses = gsn.train(_cfg(folder, **{"max_steps": 6}), str(out), resume=True, quiet=True, log_every=1)
    rows = [json.loads(l) for l in open(out / "metrics.jsonl") if '"env"' not in l]  # the environment: each start
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6]
    assert [r["loss"] for r in rows[3:]] == losses  # the resumed run's own rows, not the crashed ones


@pytest.mark.parametrize("argv,msg", [
    (["--hidden", "-3"], "argument --hidden: must be >= 1"),
    (["--data", "/nonexistent/mnist"], "not found"),
    (["--input-noise", "1.5"], "argument --input-noise"),
    (["--lr", "nan"], "argument --lr"),
    (["--experiment"], "unrecognized arguments: --experiment"),  # moved: gsn_experiments.py experiment
])
def test_cli_bad_flag_is_an_argparse_error(argv, msg):
    r = subprocess.run([sys.executable, os.path.join(ROOT, "gsn.py")] + argv, capture_output=True, text=True, cwd=ROOT)
    last = r.stderr.strip().splitlines()[-1]  # argparse: the usage, then one error line, exit status 2
    assert r.returncode == 2 and last.startswith("gsn.py: error: ") and msg in last
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize("argv,msg", [
    (["--resume", "--out", "/nonexistent/run"], "checkpoint not found"),
    (["--model", "dae", "--layers", "2"], "exactly one hidden layer"),
])
def test_cli_bad_input_is_one_line_error(argv, msg):
    r = subprocess.run([sys.executable, os.path.join(ROOT, "gsn.py")] + argv, capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 1
    assert r.stderr.startswith("error: ") and msg in r.stderr and "Traceback" not in r.stderr


def test_fewer_training_images_than_a_batch_is_a_one_line_error(tmp_path, capsys):
    """--n-train 30 with batch 50 (or a --data folder that small): not one whole batch per epoch, a one-line error
    naming --n-train (--data) and --batch-size before any training, not a ZeroDivisionError at the first step."""
    folder = str(tmp_path / "mnist")
    write_fake_mnist(folder, n_train=1040, n_test=20)  # 40 training images + 1000 held out
    with pytest.raises(SystemExit) as e:
        gsn.main(["--data", folder, "--n-train", "30", "--batch-size", "50", "--max-steps", "1", "--out", str(tmp_path / "a")])
    err = capsys.readouterr().err
    assert e.value.code == 1 and err.startswith("error: --n-train 30") and "--batch-size 50" in err and err.count("\n") == 1
    with pytest.raises(common.UserError, match=f"--data {folder}: 40 training images.*--batch-size 50"):
        gsn.train(_cfg(folder, max_steps=1), str(tmp_path / "b"), quiet=True)
    cfg = dataclasses.replace(_cfg(folder, max_steps=1, n_train=30), batch_size=30)
    _, losses = gsn.train(cfg, str(tmp_path / "c"), quiet=True)
    assert len(losses) == 1  # a batch of all the images is enough


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A 2-step checkpoint on a tiny IDX dataset (100 training + 1000 held-out images, 30 test)."""
    tmp = tmp_path_factory.mktemp("gsn_report")
    folder = str(tmp / "mnist")
    write_fake_mnist(folder, n_train=1100, n_test=30)
    gsn.train(_cfg(folder, **{"max_steps": 2}), str(tmp / "run"), quiet=True)
    return tmp, str(tmp / "run" / "ckpt.pt")


def test_report_writes_table_json_and_figures(tiny_run, tmp_path, capsys):
    _, ckpt = tiny_run
    out = tmp_path / "rep"
    rows = gsn_experiments.report([("tiny", ckpt)], str(out), n_samples=40, seed=3)  # data: the checkpoint's own
    assert [r["name"] for r in rows] == ["tiny", "real training images", "k-means centroids", "independent pixels"]
    assert rows[0]["step"] == 2 and rows[0]["n_samples"] == 40 and rows[0]["sigma"] in parzen.GSN_SIGMAS
    assert all(np.isfinite(r["ll"]) and r["se"] > 0 for r in rows)
    assert rows[1]["n_samples"] == rows[2]["n_samples"] == rows[3]["n_samples"] == 40  # as many centres as chain means
    assert all(r["nearest"] > 0 for r in rows)
    saved = json.loads((out / "results.json").read_text(), parse_constant=pytest.fail)  # strict JSON: no NaN
    assert saved["seed"] == 3 and [r["name"] for r in saved["rows"]] == [r["name"] for r in rows]
    table = [l for l in open(out / "results.md").read().splitlines() if l.startswith("| ")]
    assert len(table) == 1 + len(rows) and table[1].startswith("| tiny | ") and "2 steps" in table[1]
    line = [l for l in capsys.readouterr().out.splitlines() if l.startswith("{")][-1]
    assert [r["ll"] for r in json.loads(line)["gsn_parzen"]] == [r["ll"] for r in rows]
    for f in ("tiny-chains.png", "tiny-inpainting.png"):
        assert os.path.isfile(out / f)
    assert not os.path.exists(out / "tiny-chain400.png")  # only with 400+ chain means
    # the same seed gives the same chain, hence the same numbers
    again = gsn_experiments.report([("tiny", ckpt)], str(tmp_path / "rep2"), n_samples=40, seed=3, references=False)
    assert again[0]["ll"] == rows[0]["ll"]


def test_figures_command_draws_the_chains_and_inpainting_of_a_checkpoint(tiny_run, tmp_path):
    """`gsn_experiments.py figures` (gsn.train draws none): beside the checkpoint, samples.png (10 chains from the
    first validation digits: the clean start, then 29 means) and inpainting.png (a row per class of the test set:
    the digit, then INPAINT_SHOWN); seeded, so a second call draws the same bytes."""
    tmp, ckpt = tiny_run
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(ckpt, run / "ckpt.pt")
    paths = gsn_experiments.main(["figures", "--ckpt", str(run / "ckpt.pt")])
    assert paths == (str(run / "samples.png"), str(run / "inpainting.png"))
    _, valid, test, test_y = gsn.load_data(str(tmp / "mnist"))
    rows = len(gsn_experiments.one_per_class(test, test_y))
    with Image.open(paths[0]) as chains, Image.open(paths[1]) as inpainting:
        assert (chains.mode, chains.size) == ("L", (30 * 29 - 1, 10 * 29 - 1))
        assert inpainting.size == ((1 + len(gsn_experiments.INPAINT_SHOWN)) * 29 - 1, rows * 29 - 1)
        start = np.asarray(chains)[:28, :28]
    np.testing.assert_array_equal(start, (valid[0].reshape(28, 28) * 255).round().astype(np.uint8))
    again = gsn_experiments.figures(str(run / "ckpt.pt"), str(tmp_path / "again"))
    for a, b in zip(paths, again):
        assert open(a, "rb").read() == open(b, "rb").read()


def test_report_command_end_to_end(tiny_run, tmp_path, capsys):
    """`gsn_experiments.py report`: its flags (add_report_args) and their run (report_from_args)."""
    tmp, ckpt = tiny_run
    gsn_experiments.main(["report", "--ckpt", ckpt, "--dae-ckpt", ckpt, "--n-samples", "50",
                          "--data", str(tmp / "mnist"), "--out", str(tmp_path / "ev")])
    line = [l for l in capsys.readouterr().out.splitlines() if l.startswith("{")][-1]
    rows = json.loads(line)["gsn_parzen"]
    assert [r["name"] for r in rows] == ["run", "dae-no-walkback", "real training images", "k-means centroids", "independent pixels"]
    assert all(np.isfinite(r["ll"]) and r["se"] > 0 for r in rows)
    for f in ("run-chains.png", "run-inpainting.png", "results.md", "results.json"):
        assert os.path.isfile(tmp_path / "ev" / f)
    p = argparse.ArgumentParser()
    gsn_experiments.add_report_args(p)
    with pytest.raises(common.UserError, match="checkpoint not found"):
        gsn_experiments.report_from_args(p.parse_args(["--ckpt", str(tmp_path / "missing.pt")]))
    for bad in (["--n-samples", "0"], ["--data", str(tmp_path / "nope")]):
        with pytest.raises(SystemExit) as e:
            p.parse_args(["--ckpt", ckpt] + bad)
        assert e.value.code == 2


def test_curve_gives_one_point_per_budget_and_continues_where_it_stopped(tmp_path, monkeypatch, capsys):
    """gsn_experiments.py curve: checkpoints at 1, 2, 4 units (seed 2: 1, 2), Parzen at each, CPU time summed;
    a curve stopped before its last point recomputes exactly that point and reads back the others."""
    folder = str(tmp_path / "mnist")
    write_fake_mnist(folder, n_train=1100, n_test=20)
    monkeypatch.setattr(gsn_experiments, "CURVE", [("deep", dict(model="gsn", hidden=16), 2, 4),
                                                   ("dae", dict(model="dae", hidden=16), 1, 2)])
    monkeypatch.setattr(gsn_experiments, "CURVE_SEED2_UNITS", 2)
    argv = ["curve", "--data", folder, "--n-train", "100", "--parzen-samples", "30",
            "--out", str(tmp_path / "c")]
    rows = gsn_experiments.main(argv)
    points = [(r["model"], r["seed"], r["units"], r["steps"]) for r in rows if "model" in r]
    assert points == [("deep", 1, 1, 2), ("deep", 1, 2, 4), ("deep", 1, 4, 8), ("deep", 2, 1, 2), ("deep", 2, 2, 4),
                      ("dae", 1, 1, 1), ("dae", 1, 2, 2), ("dae", 2, 1, 1), ("dae", 2, 2, 2)]
    assert [r["name"] for r in rows if r.get("reference")] == ["real training images", "k-means centroids", "independent pixels"]
    deep = [r for r in rows if r.get("model") == "deep" and r["seed"] == 1]
    assert 0 < deep[0]["cpu_s"] <= deep[1]["cpu_s"] <= deep[2]["cpu_s"]
    assert gsn.load_model(str(tmp_path / "c" / "deep-s1" / "ckpt_4.pt"))[2]["step"] == 8
    assert os.path.isfile(tmp_path / "c" / "curve.png") and os.path.isfile(tmp_path / "c" / "curve.md")
    # stop "before" the last point: drop it and go back to the 2-unit checkpoint
    run = tmp_path / "c" / "deep-s1"
    os.remove(run / "point_4.json")
    os.remove(run / "ckpt_4.pt")
    shutil.copy(run / "ckpt_2.pt", run / "ckpt.pt")
    capsys.readouterr()
    again = gsn_experiments.main(argv)
    assert capsys.readouterr().out.count("[curve") == 1  # only the dropped point ran again
    assert [r["ll"] for r in again if "model" in r] == [r["ll"] for r in rows if "model" in r]


def test_experiment_trains_each_model_then_reports(tmp_path, monkeypatch):
    """gsn_experiments.py experiment: each EXPERIMENT model with its settings, steps x --budget-scale, the
    --seed and --data of the command, then one table with the reference rows."""
    folder = str(tmp_path / "mnist")
    write_fake_mnist(folder, n_train=1100, n_test=20)
    monkeypatch.setattr(gsn_experiments, "EXPERIMENT", [("deep", dict(model="gsn", hidden=16, max_steps=4)),
                                                        ("dae", dict(model="dae", hidden=16, walkbacks=1, max_steps=6))])
    out = tmp_path / "e"
    rows = gsn_experiments.main(["experiment", "--data", folder, "--seed", "3", "--budget-scale", "0.5",
                                 "--parzen-samples", "30", "--out", str(out)])
    assert [r["name"] for r in rows] == ["deep", "dae", "real training images", "k-means centroids", "independent pixels"]
    assert [r["step"] for r in rows[:2]] == [2, 3] and all(r["train_s"] is not None for r in rows[:2])
    _, cfg, _ = gsn.load_model(str(out / "dae" / "ckpt.pt"))
    assert cfg == gsn.GSNConfig.for_model("dae", hidden=16, walkbacks=1, max_steps=3, data=folder, seed=3)
    assert json.loads((out / "results.json").read_text())["seed"] == 3


def test_errorbars_seeds_chains_and_error_sources_on_idx_files(tmp_path, monkeypatch, capsys):
    """gsn_experiments.py errorbars --data <IDX folder>: each model x seed x budget trained once (continued from
    budget to budget) and scored with several chains, chain 0 being the report's chain; the table has each
    model's error sources, the gap and the reference rows; a second call trains and scores nothing."""
    folder = str(tmp_path / "mnist")
    write_fake_mnist(folder, n_train=1100, n_test=20)
    monkeypatch.setattr(gsn_experiments, "ERRORBAR_MODELS", {"deep": (dict(model="gsn", hidden=16), 2),
                                                             "dae": (dict(model="dae", hidden=16), 1)})
    out = tmp_path / "eb"
    argv = ["errorbars", "--data", folder, "--n-train", "100", "--parzen-samples", "30", "--seeds", "1", "2",
            "--units", "2", "1", "--chains", "3", "--out", str(out)]
    points = gsn_experiments.main(argv + ["--models", "deep"])  # one model's process: its points, no table
    assert [(p["seed"], p["units"]) for p in points] == [(1, 1), (2, 1), (1, 2), (2, 2)]
    assert points[0]["ll"].shape == (3, 20) and not (out / "errorbars.md").exists()
    capsys.readouterr()
    rows = gsn_experiments.main(argv)
    assert capsys.readouterr().out.count("[errorbars ") == 4  # only the DAE's 2 seeds x 2 budgets trained now
    assert [(r["model"], r["units"], r["steps"], r["seed_list"]) for r in rows] == [
        ("deep", 1, 2, [1, 2]), ("dae", 1, 1, [1, 2]), ("deep", 2, 4, [1, 2]), ("dae", 2, 2, [1, 2])]
    for r in rows:
        assert (r["seeds"], r["chains"]) == (2, 3) and len(r["chain_ll"]) == 2 and len(r["chain_ll"][0]) == 3
        assert all(r[k] is not None and np.isfinite(r[k]) for k in ("mean", "total", "seed", "chain", "test", "nearest"))
        assert r["total"] >= max(r["seed"], r["chain"], r["test"])
        assert r["mean"] == pytest.approx(np.mean(r["chain_ll"]))
    assert gsn.load_model(str(out / "deep-s2" / "ckpt_2.pt"))[2]["step"] == 4
    assert gsn.load_model(str(out / "dae-s1" / "ckpt_2.pt"))[1].binarize == "both"
    # chain 0 of a checkpoint is the chain `report` scores (same start, noise seed 1)
    rep = gsn_experiments.report([("x", str(out / "deep-s1" / "ckpt_1.pt"))], str(tmp_path / "rep"),
                                 data_spec=folder, seed=1, n_samples=30, references=False)
    assert rows[0]["chain_ll"][0][0] == pytest.approx(rep[0]["ll"])
    table = (out / "errorbars.md").read_text()
    for text in ("| *gap:* deep - dae | 1 |", "| *gap:* deep - dae | 2 |", "| *reference:* k-means centroids |",
                 "| *reference:* real training images |", "| deep | 2 | 4 |", "2 x 3"):
        assert text in table
    saved = json.loads((out / "errorbars.json").read_text())
    assert [r["name"] for r in saved["references"]] == ["real training images", "k-means centroids", "independent pixels"]
    assert os.path.isfile(out / "errorbars.png")
    capsys.readouterr()
    again = gsn_experiments.main(argv)
    assert "[errorbars" not in capsys.readouterr().out  # every point and reference read back
    assert [r["mean"] for r in again] == [r["mean"] for r in rows]


def _tiny_errorbars(tmp_path, monkeypatch, n_train=1100):
    """A fake IDX folder (n_train - 1000 training images) and two tiny ERRORBAR_MODELS: (folder, base argv)."""
    folder = str(tmp_path / "mnist")
    write_fake_mnist(folder, n_train=n_train, n_test=20)
    monkeypatch.setattr(gsn_experiments, "ERRORBAR_MODELS", {"deep": (dict(model="gsn", hidden=16), 2),
                                                             "dae": (dict(model="dae", hidden=16), 1)})
    return folder, ["errorbars", "--data", folder, "--parzen-samples", "30", "--seeds", "1", "--chains", "2",
                    "--out", str(tmp_path / "eb")]


def _one_line_error(argv, capsys):
    with pytest.raises(SystemExit) as e:
        gsn_experiments.main(argv)
    out, err = capsys.readouterr()
    assert e.value.code == 1 and err.startswith("error: ") and err.count("\n") == 1
    return out, err


def test_errorbars_refuses_points_saved_with_other_flags(tmp_path, monkeypatch, capsys):
    """A point (and references.json) keeps the flags that made its numbers; a later call into the same --out with
    another --chains, --parzen-samples, --budget-scale, --n-train or --data is refused at the start, naming the
    flag, instead of mixing the two settings in one table (or crashing in np.stack after training)."""
    folder, argv = _tiny_errorbars(tmp_path, monkeypatch, n_train=1150)
    base = argv + ["--units", "1", "--n-train", "100"]
    gsn_experiments.main(base)  # every model: the points and references.json
    other = str(tmp_path / "mnist2")
    shutil.copytree(folder, other)  # the same images elsewhere: another --data all the same
    for flag, old, new in (("--chains", "2", "3"), ("--parzen-samples", "30", "40"), ("--budget-scale", "1.0", "0.5"),
                           ("--n-train", "100", "120"), ("--data", folder, other)):
        capsys.readouterr()
        argv2 = base[:base.index(flag) + 1] + [new] + base[base.index(flag) + 2:] if flag in base else base + [flag, new]
        out, err = _one_line_error(argv2 + ["--units", "2"], capsys)
        assert f"saved with {flag} {old}, asked for {flag} {new}; use another --out or the same flag" in err, err
        assert "[errorbars " not in out  # refused before any training
    assert not os.path.exists(tmp_path / "eb" / "deep-s1" / "point_2.json")
    # a new seed has no points yet, but the reference rows were scored with 30 centres
    _, err = _one_line_error(base[:base.index("--seeds") + 1] + ["2"] + base[base.index("--seeds") + 2:]
                             + ["--parzen-samples", "40"], capsys)
    assert "references.json: saved with --parzen-samples 30, asked for --parzen-samples 40" in err
    assert not os.path.exists(tmp_path / "eb" / "deep-s2")
    capsys.readouterr()
    gsn_experiments.main(base + ["--units", "1", "2"])  # the same flags: continues
    assert "[errorbars " in capsys.readouterr().out


def test_errorbars_cpu_minutes_count_training_saved_by_other_units(tmp_path, monkeypatch):
    """--units 1, then --units 2 into the same --out: the 2-unit point continues the 1-unit run, so its CPU time
    is the 1-unit point's plus this call's training, whichever --units saved the earlier point."""
    _, argv = _tiny_errorbars(tmp_path, monkeypatch)
    argv += ["--n-train", "100", "--models", "deep"]
    orig = gsn_experiments.train_to
    monkeypatch.setattr(gsn_experiments, "train_to", lambda *a: (orig(*a)[0], 60.0))  # 1 CPU-minute per call
    assert [p["cpu_s"] for p in gsn_experiments.main(argv + ["--units", "1"])] == [60.0]
    assert [p["cpu_s"] for p in gsn_experiments.main(argv + ["--units", "2"])] == [120.0]
    assert [p["cpu_s"] for p in gsn_experiments.main(argv + ["--units", "1", "2", "4"])] == [60.0, 120.0, 180.0]


def test_errorbars_refuses_fewer_training_images_than_parzen_samples_at_the_start(tmp_path, monkeypatch, capsys):
    """The reference rows take --parzen-samples training images (real images, k-means centroids): with fewer
    (--n-train below --parzen-samples), a one-line error naming both flags before any model trains."""
    folder, argv = _tiny_errorbars(tmp_path, monkeypatch, n_train=1200)
    out, err = _one_line_error(argv + ["--units", "1", "--n-train", "100", "--parzen-samples", "150"], capsys)
    assert "--parzen-samples 150" in err and "--n-train 100" in err and "[errorbars " not in out
    assert not os.path.exists(tmp_path / "eb" / "deep-s1")
    _, err = _one_line_error(argv + ["--units", "1", "--parzen-samples", "250"], capsys)  # no --n-train: 200 images
    assert "--parzen-samples 250" in err and f"--data {folder} gives 200" in err


def test_binarize_decides_what_training_reads(tmp_path, monkeypatch):
    """--binarize both (the DAE's default, [C]'s MNIST_binary): binary inputs and targets; targets: grey inputs,
    binary targets (the earlier DAE runs; a checkpoint that stored True); none: grey both."""
    folder = str(tmp_path / "mnist")
    write_fake_mnist(folder, n_train=1100, n_test=20)
    seen = {}
    orig = gsn.GSN.forward

    def spy(self, x, walkbacks, target=None):
        seen["x"], seen["target"] = x.clone(), target.clone()
        return orig(self, x, walkbacks, target)
    monkeypatch.setattr(gsn.GSN, "forward", spy)
    binary = lambda t: bool(((t == 0) | (t == 1)).all())
    for mode, want in (("both", (True, True)), ("targets", (False, True)), ("none", (False, False))):
        gsn.train(_cfg(folder, binarize=mode, max_steps=1), str(tmp_path / mode), quiet=True)
        assert (binary(seen["x"]), binary(seen["target"])) == want, mode
    assert gsn.GSNConfig.for_model("dae").binarize == "both" and gsn.GSNConfig().binarize == "none"
    assert gsn.GSNConfig(binarize=True).binarize == "targets" and gsn.GSNConfig(binarize=False).binarize == "none"
    with pytest.raises(common.UserError, match="binarize must be one of"):
        gsn.GSNConfig(binarize="inputs")


@pytest.mark.parametrize("argv,code,msg", [
    (["report", "--ckpt", "/nonexistent/ckpt.pt"], 1, "error: checkpoint not found"),
    (["figures", "--ckpt", "/nonexistent/ckpt.pt"], 1, "error: checkpoint not found"),
    (["figures", "--ckpt", "x.pt", "--data", "/nonexistent/mnist"], 2, "not found"),
    (["curve", "--budget-scale", "0"], 2, "argument --budget-scale"),
    (["experiment", "--data", "/nonexistent/mnist"], 2, "not found"),
    (["errorbars", "--units", "0"], 2, "argument --units"),
    (["errorbars", "--chains", "x"], 2, "argument --chains"),
    (["errorbars", "--models", "gsn"], 2, "argument --models"),
    (["errorbars", "--seeds", "1", "1"], 1, "error: --seeds lists a value twice"),
])
def test_experiments_cli_bad_input_is_one_line(argv, code, msg):
    r = subprocess.run([sys.executable, os.path.join(ROOT, "gsn_experiments.py")] + argv, capture_output=True,
                       text=True, cwd=ROOT)
    assert r.returncode == code and msg in r.stderr.strip().splitlines()[-1] and "Traceback" not in r.stderr


def test_eval_has_no_gsn_command():
    """The GSN report moved to gsn_experiments.py: eval.py is the GPT tower's and knows nothing of it."""
    with pytest.raises(SystemExit) as e:
        ev.main(["gsn", "--ckpt", "x.pt"])
    assert e.value.code == 2


def test_equal_compute_steps_is_the_experiments_rule():
    """equal_compute_steps gives equal gsn.train_flops: EXPERIMENT's step counts (rounded to tens) from the
    GSN's 3600, a DAE without walkback 5x the steps of the 5-walkback one (the demo's pair)."""
    assert gsn.train_flops([784, 10], 1, 1) == 3 * 2 * (784 * 10 * 2)       # up by W0, down by W0^T
    assert gsn.train_flops([784, 10, 20], 2, 3) == 2 * 3 * 3 * 2 * (784 * 10 * 2 + 10 * 20 * 2)
    ref = gsn_experiments.EXPERIMENT[0][1]
    for _, settings in gsn_experiments.EXPERIMENT:
        assert gsn_experiments.equal_compute_steps(settings, ref, ref["max_steps"]) == pytest.approx(settings["max_steps"], rel=0.005)
    (_, wb), (_, nowb) = gsn_experiments.DEMO_MODELS
    assert (wb["walkbacks"], nowb["walkbacks"]) == (5, 1) and wb["hidden"] == nowb["hidden"]
    assert gsn_experiments.equal_compute_steps(nowb, wb, 295) == 5 * 295
    assert gsn_experiments.equal_compute_steps(wb, wb, 295) == 295


def test_quick_demo_gives_the_claim_with_its_interval_and_the_chains_figure(tmp_path):
    """demo.py's GSN stage (quick): the two DAEs at equal compute, C chain pairs, the gap's t interval over
    the pairs and its verdict row (the shape of the demo's verdict table), the side-by-side chains figure."""
    s = gsn_experiments.demo(str(tmp_path), seed=0, quick=True)
    C = gsn_experiments.DEMO_QUICK["chains"]
    (row,) = s["verdicts"]
    assert set(row) == {"claim", "value", "half", "n", "unit", "verdict"}
    assert (row["claim"], row["n"], row["unit"]) == (gsn_experiments.DEMO_CLAIM, C, "chains (one training seed)")
    wb, nowb = (name for name, _ in gsn_experiments.DEMO_MODELS)
    assert s["steps"] == {wb: 4, nowb: 20}
    assert [gsn.load_model(p)[2]["step"] for p in s["ckpts"].values()] == [4, 20]
    gaps = [a - b for a, b in zip(s["parzen_chains"][wb], s["parzen_chains"][nowb])]
    assert len(gaps) == C and s["gaps"] == pytest.approx(gaps)
    assert (row["value"], row["half"]) == pytest.approx(common.t_interval(gaps))
    assert row["half"] > 0 and row["verdict"] == common.verdict(row["value"], row["half"])
    assert s["parzen"][wb] == pytest.approx(np.mean(s["parzen_chains"][wb]))
    assert set(s["seconds"]) == set(s["cpu_seconds"]) == {"data", "train", "chains_parzen", "figures", "total"}
    with Image.open(s["chains"]) as im:
        assert im.format == "PNG" and im.size[1] > 200  # two panels, one above the other
    assert os.path.isfile(s["inpainting"])
