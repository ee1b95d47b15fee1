"""train.py sft and eval.py gpt: tiny end-to-end runs and the metric helpers."""
import dataclasses
import json
import types

import pytest
import torch

import common
import data
import eval as ev
import train
from model import GPT
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
    drop = ("tok_per_s", "rollout_s")  # timings
    return [{k: v for k, v in json.loads(l).items() if k not in drop} for l in open(folder / "metrics.jsonl")]


@pytest.mark.parametrize("vocab", [257, 258])
def test_sft_and_rl_init_from_a_folder_start_from_from_pretrained(tmp_path, vocab):
    """--init-from <folder> is --init <a checkpoint of GPT.from_pretrained(folder)>: the same metrics and final
    weights for sft and rl; with 257 tokens the pad row is added (vocab 258, the byte tokenizer's)."""
    folder = _byte_folder(tmp_path / "weights", vocab)
    model = GPT.from_pretrained(folder, vocab_size=258)
    train.common.atomic_save(dict(model_config=dataclasses.asdict(model.config), model=model.state_dict(), tokenizer="byte"),
                             tmp_path / "init.pt")
    for cmd, small in (("sft", SMALL_SFT), ("rl", SMALL_RL)):
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

