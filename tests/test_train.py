"""train.py sft and eval.py gpt: tiny end-to-end runs and the metric helpers."""
import contextlib
import dataclasses
import json
import sys
import types

import pytest
import torch

import common
import data
import eval as ev
import train
from model import GPT, GPTConfig
from test_pretrained import save_hf, tiny


TINY = ["--n-layer", "1", "--n-head", "2", "--n-embd", "32", "--block-size", "192", "--batch-size", "16",
        "--sft-examples", "400", "--val-examples", "32", "--eval-problems", "8", "--eval-k", "2",
        "--warmup", "5", "--log-interval", "5", "--eval-interval", "20", "--max-new-tokens", "12"]


def read_metrics(folder):
    return [json.loads(l) for l in open(folder / "metrics.jsonl")]


def test_tiny_sft_loss_falls_and_checkpoint_loads(tmp_path):
    train.main(["sft", "--out", str(tmp_path), "--max-iters", "40", *TINY])
    rows = [r for r in read_metrics(tmp_path) if "loss" in r]
    assert rows[-1]["loss"] < rows[0]["loss"] - 1.0  # from ~5.5 nats (uniform over 258) to well below
    vals = [r["val_loss"] for r in read_metrics(tmp_path) if "val_loss" in r]
    assert vals[-1] < vals[0]
    model, tok, ckpt = ev.load_gpt(str(tmp_path / "ckpt.pt"), "cpu")
    assert ckpt["step"] == 40 and ckpt["kind"] == "sft" and tok.vocab_size == model.config.vocab_size
    final = read_metrics(tmp_path)[-1]
    assert 0.0 <= final["test_pass@1"] <= 1.0 and 0.0 <= final["test_invalid"] <= 1.0


def test_sft_resume_continues_exactly(tmp_path):
    """40 iterations in one go == 20 iterations, then --resume for 20 more (same losses, same weights)."""
    a, b = tmp_path / "a", tmp_path / "b"
    train.main(["sft", "--out", str(a), "--max-iters", "40", *TINY])
    # a run that stops at 20 with the same schedule: --max-iters stays 40 for the lr schedule, so stop it
    # by hand: run 20 iterations through a smaller budget is NOT the same schedule; instead use resume
    # from a checkpoint written at iteration 20 by the same 40-iteration run.
    train.main(["sft", "--out", str(b), "--max-iters", "40", "--stop-at", "20", *TINY])
    train.main(["sft", "--out", str(b), "--max-iters", "40", "--resume", *TINY])
    la = [r["loss"] for r in read_metrics(a) if "loss" in r]
    lb = [r["loss"] for r in read_metrics(b) if "loss" in r]
    assert la == lb
    wa = common.load_checkpoint(str(a / "ckpt.pt"))["model"]
    wb = common.load_checkpoint(str(b / "ckpt.pt"))["model"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_bad_flags_are_one_line_errors(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        train.main(["sft", "--out", str(tmp_path), "--batch-size", "-3"])
    assert e.value.code == 2 and "argument --batch-size: must be >= 1, got -3" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        train.main(["sft", "--out", str(tmp_path), "--sft-examples", "10", "--batch-size", "32"])
    err = capsys.readouterr().err
    assert e.value.code == 1 and err.startswith("error:") and "larger than the training set" in err
    with pytest.raises(SystemExit) as e:
        ev.main(["gpt", "--ckpt", str(tmp_path / "missing.pt")])
    assert e.value.code == 1 and "checkpoint not found" in capsys.readouterr().err
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(SystemExit) as e:
        ev.main(["gpt", "--ckpt", str(bad)])
    assert e.value.code == 1 and "corrupt" in capsys.readouterr().err


@pytest.mark.parametrize("argv, code, message", [
    (["sft", "--n-head", "5"], 1, "--n-embd 128 is not divisible by --n-head 5"),
    (["sft", "--lr", "nan"], 2, "argument --lr: must be a finite number"),
    (["sft", "--lr", "0"], 2, "argument --lr: must be > 0, got 0"),
    (["rl", "--init", "x.pt", "--baseline", "half"], 2, "argument --baseline: not a number: 'half'"),
    (["rl", "--init", "x.pt", "--target-pos-frac", "1.5"], 2, "argument --target-pos-frac: must be in (0, 1), got 1.5"),
])
def test_bad_values_are_caught_where_they_enter(tmp_path, capsys, argv, code, message):
    with pytest.raises(SystemExit) as e:
        train.main([*argv, "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert e.value.code == code and message in err and "Traceback" not in err


def test_out_folder_that_cannot_be_created_is_a_one_line_error(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("a file, not a folder")
    with pytest.raises(SystemExit) as e:
        train.main(["sft", "--out", str(blocker / "run")])
    err = capsys.readouterr().err
    assert e.value.code == 1 and err.startswith("error: --out") and "cannot create the folder" in err


def test_eval_negative_n_is_a_one_line_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        ev.main(["gpt", "--ckpt", str(tmp_path / "x.pt"), "--n", "-3"])
    assert e.value.code == 2 and "argument --n: must be >= 1, got -3" in capsys.readouterr().err


def test_a_bug_keeps_its_traceback(monkeypatch):
    """Only UserError becomes a one-line error: any other exception (a student's bug) propagates."""
    def broken(*a, **kw):
        raise ZeroDivisionError("a bug")
    monkeypatch.setattr(train.data, "problems", broken)
    with pytest.raises(ZeroDivisionError):
        train.main(["sft", "--out", "/tmp/unused-run"])


def test_majority_vote():
    assert ev.majority_vote(["3", "4", "4", None]) == "4"
    assert ev.majority_vote(["5", "3", "3", "5"]) == "5"  # tie: the answer seen first
    assert ev.majority_vote([None, None]) is None  # all invalid: no vote
    assert ev.majority_vote([None, "7"]) == "7"  # invalid never wins


def test_evaluate_gpt_metrics_on_a_scripted_model(monkeypatch):
    """Replace sampling by fixed answers and check every metric by hand."""
    problems = [data.Problem("q1", "1+1=2. #### 2", "2"), data.Problem("q2", "2+2=4. #### 4", "4")]
    scripted = {0.0: [[" #### 2"], [" 4"]],  # greedy: right, invalid
                1.0: [[" #### 2", " #### 3", " #### 3", " x"], [" #### 4", " #### 4", " #### 5", " #### 4"]]}

    def fake(model, tok, probs, k, temperature, max_new_tokens, generator, batch_prompts=64):
        texts = scripted[temperature]
        return texts, [[len(t) for t in ts] for ts in texts]
    monkeypatch.setattr(ev, "sample_answers", fake)
    model = types.SimpleNamespace(training=False, eval=lambda: None, train=lambda mode: None,
                                  lm_head=torch.nn.Linear(1, 1))  # evaluate_gpt reads the device from lm_head
    res = ev.evaluate_gpt(model, None, problems, k=4)
    assert res["greedy"] == 0.5 and res["greedy_invalid"] == 0.5
    assert res["pass@1"] == (1 / 4 + 3 / 4) / 2
    assert res["maj@4"] == 0.5  # q1's majority is 3 (wrong), q2's is 4 (right)
    assert res["pass@4"] == 1.0
    assert res["invalid"] == 1 / 8


def test_evaluate_gpt_without_greedy_gives_the_same_samples_and_no_greedy_keys():
    """greedy=False (band checks; rl --no-greedy-eval) skips the greedy decode and nothing else: greedy draws no
    random number, so the k samples, and every sampled metric, are the same bit for bit."""
    torch.manual_seed(0)
    tok = data.get_tokenizer("byte")
    model = GPT(GPTConfig(block_size=256, vocab_size=tok.vocab_size, n_layer=1, n_head=2, n_embd=32)).eval()
    problems = data.Task(shortcut=True).problems(6, 3, "test")
    (with_g, s1), (without, s2) = (ev.evaluate_gpt(model, tok, problems, k=3, max_new_tokens=10, seed=5,
                                                   return_samples=True, greedy=g) for g in (True, False))
    assert s1 == s2
    greedy_keys = {k for k in with_g if k.endswith(("greedy", "greedy_invalid"))}
    assert greedy_keys >= {"greedy", "greedy_invalid", "conflict_greedy", "normal_greedy_invalid"}
    assert without == {k: v for k, v in with_g.items() if k not in greedy_keys}


def test_band_check_decodes_greedily_only_when_a_band_names_greedy(monkeypatch):
    seen = []
    monkeypatch.setattr(ev, "evaluate_gpt", lambda *a, greedy, **kw: seen.append(greedy) or {"pass@1": 0.5, "greedy": 0.5})
    args = types.SimpleNamespace(eval_k=2, max_new_tokens=8, seed=0)
    for band, greedy in ([("pass@1", 0, 1)], False), ([("pass@1", 0, 1), ("greedy", 0, 1)], True):
        args.band = band
        assert train.band_check(None, None, [], args, 10, types.SimpleNamespace(log=lambda **kw: None))
        assert seen[-1] is greedy


def test_rl_no_greedy_eval_logs_the_same_sampled_metrics_and_is_refused_by_the_verifier(tmp_path, capsys):
    train.main(["sft", "--out", str(tmp_path / "sft"), *SMALL_SFT])
    init = ["--init", str(tmp_path / "sft" / "ckpt.pt")]
    printed = []
    for flag in ([], ["--no-greedy-eval"]):
        capsys.readouterr()
        train.main(["rl", *init, "--out", str(tmp_path / f"rl{len(flag)}"), *SMALL_RL, *flag])
        printed.append([line for line in capsys.readouterr().out.splitlines() if "test pass@1" in line])
    a, b = ([r for r in _rows(tmp_path / f"rl{i}") if "test_pass@1" in r] for i in (0, 1))
    assert len(a) == len(b) == 2 and all("test_greedy" in r and "test_greedy" not in s for r, s in zip(a, b))
    assert [{k: v for k, v in r.items() if "greedy" not in k} for r in a] == b
    assert all("greedy" in line for line in printed[0]) and not any("greedy" in line for line in printed[1])
    with pytest.raises(SystemExit) as e:
        train.main(["rl", *init, "--out", str(tmp_path / "v"), *SMALL_RL, "--task", "verify", "--no-greedy-eval"])
    assert e.value.code == 1 and "--no-greedy-eval only applies to --task solve" in capsys.readouterr().err


# -----------------------------------------------------------------------------
# train.py sft / rl --init-from <folder>

def _byte_folder(folder, vocab):
    """A small random GPT with the byte tokenizer's vocabulary (258), or without its pad (257), in GPT-2's
    Hugging Face layout: as GPT-2's 50,257-token weights stand to --tokenizer gpt2's 50,258."""
    return save_hf(folder, tiny(vocab_size=vocab, block_size=256, n_embd=32, gelu="tanh"))


SMALL_SFT = ["--max-iters", "3", "--batch-size", "8", "--sft-examples", "50", "--val-examples", "8", "--eval-problems",
             "2", "--eval-k", "1", "--warmup", "1", "--max-new-tokens", "8", "--eval-interval", "3", "--log-interval", "1"]
SMALL_RL = ["--prompts", "2", "--k", "4", "--batch-size", "8", "--iterations", "1", "--eval-problems", "2", "--eval-k",
            "1", "--max-new-tokens", "8", "--baseline", "0", "--lr", "1e-3"]


def _rows(folder):
    drop = ("tok_per_s", "rollout_s", "_mfu")  # timings (and what is computed from them)
    return [{k: v for k, v in json.loads(l).items() if not k.endswith(drop)} for l in open(folder / "metrics.jsonl")]


@pytest.mark.parametrize("vocab", [257, 258])
def test_sft_and_rl_init_from_a_folder_start_from_from_pretrained(tmp_path, vocab):
    """--init-from <folder> is --init <a checkpoint of GPT.from_pretrained(folder)>: the same metrics and final
    weights for sft and rl; with 257 tokens the pad row is added (vocab 258, the byte tokenizer's). sft's lr is
    given: its defaults differ between the two (test_sft_lr_defaults_depend_on_how_the_run_starts)."""
    folder = _byte_folder(tmp_path / "weights", vocab)
    model = GPT.from_pretrained(folder, vocab_size=258)
    train.common.atomic_save(dict(model_config=dataclasses.asdict(model.config), model=model.state_dict(), tokenizer="byte"),
                             tmp_path / "init.pt")
    for cmd, small in (("sft", [*SMALL_SFT, "--lr", "1e-3", "--min-lr", "1e-4"]), ("rl", SMALL_RL)):
        train.main([cmd, "--init-from", str(folder), "--out", str(tmp_path / f"{cmd}_folder"), *small])
        train.main([cmd, "--init", str(tmp_path / "init.pt"), "--out", str(tmp_path / f"{cmd}_ckpt"), *small])
        a, b = (torch.load(tmp_path / f"{cmd}_{x}" / "ckpt.pt", weights_only=True) for x in ("folder", "ckpt"))
        assert a["config"] == b["config"] and a["config"]["vocab_size"] == 258
        assert a["config"]["gelu"] == "tanh"  # GPT-2's, from config.json
        assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
        assert _rows(tmp_path / f"{cmd}_folder") == _rows(tmp_path / f"{cmd}_ckpt")


@pytest.mark.parametrize("argv, message", [
    (["sft", "--init-from", "{tmp}/nowhere"], "error: --init-from {tmp}/nowhere: no such folder"),
    (["sft", "--init-from", "{tmp}/vocab40"], "error: --init-from {tmp}/vocab40: the weights have a 40-token vocabulary, "
                                              "the tokenizer 'byte' 258 tokens; they must match (GPT-2's weights need --tokenizer gpt2)"),
    (["rl", "--init-from", "{tmp}/vocab40"], "error: --init-from {tmp}/vocab40: the weights have a 40-token vocabulary"),
    (["sft", "--init-from", "{tmp}/vocab40", "--init", "{tmp}/x.pt"], "error: --init and --init-from exclude each other"),
    (["rl", "--init", "{tmp}/x.pt", "--tokenizer", "gpt2"], "error: --tokenizer only applies with --init-from"),
    (["rl"], "error: rl needs --init <sft ckpt.pt> or --init-from <folder> (or --resume)"),
    (["sft", "--init-from", "{tmp}/empty"], "error: --init-from {tmp}/empty: no weights in {tmp}/empty"),
])
def test_init_from_errors_are_one_line(tmp_path, capsys, argv, message):
    save_hf(tmp_path / "vocab40", tiny(block_size=256))
    (tmp_path / "empty").mkdir()
    argv = [a.format(tmp=tmp_path) for a in argv] + ["--out", str(tmp_path / "out")]
    with pytest.raises(SystemExit) as e:
        train.main(argv)
    err = capsys.readouterr().err
    assert e.value.code == 1 and err.startswith(message.format(tmp=tmp_path)) and err.count("\n") == 1


def test_sft_stop_when_stops_inside_the_band_and_resume_keeps_it(tmp_path, capsys):
    """--stop-when: the first evaluation inside the band stops training (then the test evaluation runs);
    --resume of a base in its band trains no further."""
    train.main(["sft", "--out", str(tmp_path), "--max-iters", "60", *TINY, "--stop-when", "pass@1=0:1", "invalid=0:1"])
    rows = read_metrics(tmp_path)
    assert "env" in rows[0]
    band = [r for r in rows if "band_in" in r]
    assert [r["iter"] for r in band] == [20] and band[0]["band_in"] and 0 <= band[0]["band_pass@1"] <= 1
    assert rows[-1]["test_in_band"] is True and common.load_checkpoint(str(tmp_path / "ckpt.pt"))["step"] == 20
    train.main(["sft", "--out", str(tmp_path), "--max-iters", "60", *TINY, "--stop-when", "pass@1=0:1", "--resume"])
    assert common.load_checkpoint(str(tmp_path / "ckpt.pt"))["step"] == 20


def test_sft_stop_when_out_of_reach_runs_to_the_cap_and_says_so(tmp_path, capsys):
    train.main(["sft", "--out", str(tmp_path), "--max-iters", "40", *TINY, "--stop-when", "pass@1=1:1", "invalid=0:0"])
    out = capsys.readouterr().out
    assert "not reached by iter 40 (the cap)" in out
    band = [r for r in read_metrics(tmp_path) if "band_in" in r]
    assert [r["iter"] for r in band] == [20, 40] and not any(r["band_in"] for r in band)
    assert read_metrics(tmp_path)[-1]["test_in_band"] is False


@pytest.mark.parametrize("band, message", [
    ("conflict_pass@1=0.3:0.5", "unknown metric 'conflict_pass@1'"),  # no slices without --shortcut
    ("pass@1=0.5", "expected METRIC=LO:HI"), ("pass@1=0.6:0.2", "0 <= LO <= HI <= 1"),
    ("pass@1=x:1", "expected METRIC=LO:HI")])
def test_sft_stop_when_bad_bands_are_one_line_errors(tmp_path, capsys, band, message):
    with pytest.raises(SystemExit) as e:
        train.main(["sft", "--out", str(tmp_path), *TINY, "--stop-when", band])
    err = capsys.readouterr().err
    assert e.value.code == 1 and message in err and len(err.strip().splitlines()) == 1


def test_lr_schedule_warms_up_decays_by_lr_decay_iters_then_holds():
    lr = lambda it: train.lr_at(it, 1.0, 0.1, 10, 110)
    assert lr(0) == 0.1 and lr(9) == 1.0 and lr(10) == 1.0
    assert abs(lr(60) - 0.55) < 1e-12  # half-way through the cosine: the mean of lr and min_lr
    assert lr(110) == lr(500) == 0.1


def test_sft_lr_decay_iters_holds_min_lr_after_the_decay(tmp_path):
    train.main(["sft", "--out", str(tmp_path), "--max-iters", "30", "--lr-decay-iters", "20", "--min-lr", "1e-4", *TINY])
    lrs = {r["iter"]: r["lr"] for r in read_metrics(tmp_path) if "lr" in r}
    assert lrs[15] > 1e-4 and lrs[25] == lrs[30] == pytest.approx(1e-4)


def test_sft_init_takes_dropout_from_the_flag(tmp_path):
    """sft --init <ckpt> trains with --dropout (its value, or its default 0), not the checkpoint's: as --init-from
    does, and as nanoGPT's init_from='resume' / 'gpt2' do."""
    small = ["--n-layer", "1", "--n-head", "2", "--n-embd", "32", *SMALL_SFT]
    train.main(["sft", "--out", str(tmp_path / "a"), "--dropout", "0.3", *small])
    for flag, want in ((["--dropout", "0.1"], 0.1), ([], 0.0)):
        out = tmp_path / f"init_{want}"
        train.main(["sft", "--init", str(tmp_path / "a" / "ckpt.pt"), "--out", str(out), *flag, *small])
        assert torch.load(out / "ckpt.pt", weights_only=True)["config"]["dropout"] == want


# -----------------------------------------------------------------------------
# sft's learning-rate defaults: from scratch, or fine-tuning pretrained weights (--init-from)

def parsed(monkeypatch, argv):
    """train.main's flags after check_args, the run itself not started."""
    monkeypatch.setattr(train.common, "distributed", lambda fn, args, device: args)
    return train.main(argv)


@pytest.mark.parametrize("flags, want", [
    ([], (3e-3, 3e-4, 100)),  # from random weights: warm-up, cosine decay
    (["--init", "{tmp}/x.pt"], (3e-3, 3e-4, 100)),  # this repo's own SFT checkpoint: as before
    (["--init-from", "{tmp}/weights"], (3e-5, 3e-5, 0)),  # nanoGPT's fine-tuning: 3e-5, constant, no warm-up
    (["--init-from", "{tmp}/weights", "--lr", "1e-4"], (1e-4, 1e-4, 0)),  # still constant, at the given lr
    (["--init-from", "{tmp}/weights", "--min-lr", "0", "--warmup", "10"], (3e-5, 0.0, 10)),  # given flags win
    (["--lr", "1e-3", "--min-lr", "1e-5", "--warmup", "3"], (1e-3, 1e-5, 3)),
])
def test_sft_lr_defaults_depend_on_how_the_run_starts(tmp_path, monkeypatch, flags, want):
    (tmp_path / "weights").mkdir()
    args = parsed(monkeypatch, ["sft", "--out", str(tmp_path / "out"), *(f.format(tmp=tmp_path) for f in flags)])
    assert (args.lr, args.min_lr, args.warmup, args.grad_clip) == (*want, 1.0)


def test_sft_from_pretrained_weights_runs_at_the_fine_tuning_lr_and_says_so(tmp_path, capsys):
    folder = _byte_folder(tmp_path / "weights", 257)
    w = SMALL_SFT.index("--warmup")
    train.main(["sft", "--init-from", str(folder), "--out", str(tmp_path / "run"), *SMALL_SFT[:w], *SMALL_SFT[w + 2:]])
    assert {r["lr"] for r in read_metrics(tmp_path / "run") if "lr" in r} == {3e-5}
    assert "lr 3e-05 constant, clip 1" in capsys.readouterr().out
    assert torch.load(tmp_path / "run" / "ckpt.pt", weights_only=True)["args"]["lr"] == 3e-5  # what was used


# -----------------------------------------------------------------------------
# --grad-accum: N micro-steps of batch B are one step of batch N x B

def _tiny_gpt_and_examples(n=12):
    tok = data.get_tokenizer()
    torch.manual_seed(0)
    model = GPT(train.GPTConfig(block_size=192, vocab_size=tok.vocab_size, n_layer=1, n_head=2, n_embd=32, bias=True))
    return model, tok, [data.encode_example(tok, p) for p in data.make_problems(n, seed=0)]


def _step_grads(model, examples, ix, micro_steps, pad_id, rank=0, world=1):
    model.zero_grad(set_to_none=True)
    loss, _ = train.sft_step(model, examples, ix, micro_steps, pad_id, rank, world, torch.device("cpu"),
                                  common.grad_scaler(torch.device("cpu")))
    return loss, [p.grad.clone() for p in model.parameters()]


def test_grad_accum_micro_steps_give_the_big_batchs_gradient():
    """sft_step over 8 rows in 1, 2, 4 or 8 micro-steps: the same loss and gradient (float tolerance). The loss is
    the per-token mean over the WHOLE batch; a mean of the micro-steps' own means (rows of other lengths) would
    give another gradient, which the test tells apart."""
    model, tok, examples = _tiny_gpt_and_examples()
    ix = [3, 0, 7, 7, 11, 2, 5, 9]
    loss, grads = _step_grads(model, examples, ix, 1, tok.pad_id)
    for micro in (2, 4, 8):
        l, g = _step_grads(model, examples, ix, micro, tok.pad_id)
        assert torch.allclose(l, loss, rtol=1e-6)
        assert all(torch.allclose(a, b, rtol=1e-5, atol=1e-7) for a, b in zip(g, grads)), micro
    halves = [_step_grads(model, examples, h, 1, tok.pad_id)[1] for h in (ix[:4], ix[4:])]
    assert sum(len(examples[i][1]) for i in ix[:4]) != sum(len(examples[i][1]) for i in ix[4:])
    mean_of_means = [(a + b) / 2 for a, b in zip(*halves)]
    assert not all(torch.allclose(a, b, rtol=1e-5, atol=1e-7) for a, b in zip(mean_of_means, grads))


class NoSyncRecorder(torch.nn.Module):
    """A stand-in for DDP's wrapper: records, for each forward pass, whether it ran inside no_sync()."""

    def __init__(self, model):
        super().__init__()
        self.model, self.inside, self.forwards = model, False, []

    def forward(self, x):
        self.forwards.append(self.inside)
        return self.model(x)

    @contextlib.contextmanager
    def no_sync(self):
        self.inside = True
        yield
        self.inside = False


def test_grad_accum_under_ddp_syncs_on_the_last_micro_step_only():
    """With 2 processes each micro-step's forward and backward but the last run inside no_sync (DDP all-reduces
    once per optimizer step); the two processes' gradients, averaged as DDP does, are the one-process gradient."""
    model, tok, examples = _tiny_gpt_and_examples()
    ix = [3, 0, 7, 7, 11, 2, 5, 9]
    _, alone = _step_grads(model, examples, ix, 1, tok.pad_id)
    per_rank = []
    for rank in (0, 1):
        wrapped = NoSyncRecorder(model)
        per_rank.append(_step_grads(wrapped, examples, ix, 4, tok.pad_id, rank, world=2)[1])
        assert wrapped.forwards == [True, True, True, False]
    averaged = [(a + b) / 2 for a, b in zip(*per_rank)]
    assert all(torch.allclose(a, b, rtol=1e-5, atol=1e-7) for a, b in zip(averaged, alone))


def test_sft_grad_accum_trains_as_the_bigger_batch(tmp_path):
    """--batch-size 16 == --batch-size 8 --grad-accum 2 == --batch-size 4 --grad-accum 4 (the same rows, the same
    steps: weights and logged losses up to float rounding); --batch-size 8 alone is another run."""
    runs = {"16x1": ["--batch-size", "16"], "8x2": ["--batch-size", "8", "--grad-accum", "2"],
            "4x4": ["--batch-size", "4", "--grad-accum", "4"], "8x1": ["--batch-size", "8"]}
    for name, flags in runs.items():
        train.main(["sft", "--out", str(tmp_path / name), "--max-iters", "10", *TINY, "--eval-interval", "10", *flags])
    ckpt = {n: common.load_checkpoint(str(tmp_path / n / "ckpt.pt"))["model"] for n in runs}
    losses = {n: [r["loss"] for r in read_metrics(tmp_path / n) if "loss" in r] for n in runs}
    close = lambda a, b: all(torch.allclose(ckpt[a][k], ckpt[b][k], rtol=1e-4, atol=1e-5) for k in ckpt[a])
    for name in ("8x2", "4x4"):
        assert close(name, "16x1") and losses[name] == pytest.approx(losses["16x1"], rel=1e-5)
    assert not close("8x1", "16x1")


def test_sft_grad_accum_under_torchrun_equals_one_process(tmp_path):
    """2 processes x 2 micro-steps of 4 rows (2 each) == 1 process, one step of 8: DDP's no_sync on the first
    micro-step, its all-reduce on the last."""
    from test_ddp import TINY as DDP_TINY, run
    one, two = tmp_path / "one", tmp_path / "two"
    run([sys.executable, "train.py", "sft", "--out", str(one), *DDP_TINY], tmp_path)
    run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "train.py", "sft",
         "--out", str(two), *DDP_TINY, "--batch-size", "4", "--grad-accum", "2"], tmp_path)
    a, b = (torch.load(d / "ckpt.pt", weights_only=True) for d in (one, two))
    assert a["step"] == b["step"] == 6
    assert all(torch.allclose(a["model"][k], b["model"][k], atol=1e-5, rtol=1e-4) for k in a["model"])
    la, lb = ([r["loss"] for r in read_metrics(d) if "loss" in r] for d in (one, two))
    assert len(la) == 2 and la == pytest.approx(lb, abs=1e-4)


@pytest.mark.parametrize("argv, code, message", [
    (["--grad-accum", "0"], 2, "argument --grad-accum: must be >= 1, got 0"),
    (["--sft-examples", "20", "--batch-size", "8", "--grad-accum", "4"], 1,
     "--batch-size 8 x --grad-accum 4 = 32 is larger than the training set (20 examples)"),
])
def test_grad_accum_bad_values_are_one_line_errors(tmp_path, capsys, argv, code, message):
    with pytest.raises(SystemExit) as e:
        train.main(["sft", "--out", str(tmp_path), *argv])
    lines = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == code and message in lines[-1] and (code == 2 or len(lines) == 1)  # 2: argparse's usage


# -----------------------------------------------------------------------------
# Over-long examples are dropped and counted, not the run

def test_sft_drops_over_long_examples_and_prompts_with_a_count(tmp_path, capsys):
    """At --block-size 130 some worked solutions are longer than the context and some test prompts leave less than
    --max-new-tokens 12: sft drops exactly those (a metrics row, a printed line) and trains on the rest. Before,
    the first over-long example ended the run."""
    block, new = 130, 12
    train.main(["sft", "--out", str(tmp_path), "--max-iters", "2", *TINY, "--block-size", str(block)])
    tok, task = data.get_tokenizer(), data.Task()
    examples = [data.encode_example(tok, p) for p in task.problems(400, 0, "train", use="sft")]
    prompts = [tok.encode(data.format_prompt(p.question)) for p in task.problems(8, 0, "test")]
    want = dict(dropped_train=sum(len(p) + len(c) > block for p, c in examples),
                dropped_test=sum(len(p) + new > block for p in prompts))
    assert want["dropped_train"] > 0 and want["dropped_test"] > 0  # the test checks a real drop
    row = next(r for r in read_metrics(tmp_path) if "dropped_train" in r)
    assert {k: row[k] for k in want} == want
    out = capsys.readouterr().out
    assert f"train {want['dropped_train']}" in out and f"{400 - want['dropped_train']} examples" in out
    assert read_metrics(tmp_path)[-1]["test_n"] == 8 - want["dropped_test"]


def test_sft_with_no_example_that_fits_is_a_one_line_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        train.main(["sft", "--out", str(tmp_path), *TINY, "--block-size", "60"])
    err = capsys.readouterr().err
    assert e.value.code == 1 and err.startswith("error: every training example (400) is longer than 60 tokens")
    assert err.count("\n") == 1


def test_the_module_index_lists_what_train_py_holds():
    """Every top-level definition of train.py (functions, classes, constants) is in its docstring's index, and
    every name in the index exists."""
    import ast
    import re
    tree = ast.parse(open(train.__file__).read())
    defined = {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
    defined |= {t.id for n in tree.body if isinstance(n, ast.Assign) for t in n.targets if isinstance(t, ast.Name)}
    index = train.__doc__[train.__doc__.index("  1. SFT"):]
    listed = set(re.findall(r"\b[A-Za-z_][A-Za-z0-9_]*\b", re.sub(r"\([^)]*\)", "", index)))
    listed = {n for n in listed if "_" in n or n in defined}  # the prose between the names has no underscores
    assert defined <= listed and listed <= defined, (sorted(defined - listed), sorted(listed - defined))



def test_sft_step_under_fp16s_loss_scaler():
    """common.grad_scaler on an fp16 card, enabled here on the CPU: sft_step's parts scaled by a power of two,
    unscaled before the clip, give the unscaled gradients bit for bit, over 2 micro-steps."""
    model, tok, examples = _tiny_gpt_and_examples(16)
    ix = list(range(8))
    model.zero_grad(set_to_none=True)
    train.sft_step(model, examples, ix, 2, tok.pad_id, 0, 1, torch.device("cpu"), torch.amp.GradScaler("cpu", enabled=False))
    plain = [p.grad.clone() for p in model.parameters()]
    model.zero_grad(set_to_none=True)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 16)
    train.sft_step(model, examples, ix, 2, tok.pad_id, 0, 1, torch.device("cpu"), scaler)
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    scaler.unscale_(opt)
    assert all(torch.equal(a, p.grad) for a, p in zip(plain, model.parameters()))
