"""The generative verifier: its prompt and reward, P(Yes) from the logits, weighted voting, and the
train.py rl --task verify / eval.py gpt --verifier commands end to end on tiny models."""
import json
import random

import pytest
import torch

import common
import data
import eval as ev
import train
from model import GPT, GPTConfig, verdict_logp


# -----------------------------------------------------------------------------
# Prompt and reward on hand-made cases

def test_verify_prompt_extends_the_solving_prompt():
    q = "Ana has 12 apples. She buys 7 more. How many apples does Ana have now?"
    p = data.format_verify_prompt(q, " 12+7=20. #### 20")
    assert p == "Q: " + q + "\nA: 12+7=20. #### 20\nCorrect? "
    assert p.startswith(data.format_prompt(q))  # what the solver knows carries over
    tok = data.get_tokenizer("byte")
    yes, no = data.verdict_ids(tok)
    assert (yes, no) == (tok.encode("Yes")[0], tok.encode("No")[0]) and yes != no


@pytest.mark.parametrize("verdict, candidate, answer, expected", [
    ("Yes", " 12+7=19. #### 19", "19", 1.0),     # right candidate, judged right
    ("No", " 12+7=19. #### 19", "19", -1.0),     # right candidate, judged wrong
    ("Yes", " 12+7=20. #### 20", "19", -1.0),    # wrong candidate, judged right
    ("No", " 12+7=20. #### 20", "19", 1.0),      # wrong candidate, judged wrong
    ("No", " 12+7=19.", "19", 1.0),              # invalid (no '#### N') is a wrong candidate
    ("Yes", " 12+7=19.", "19", -1.0),
    ("Yes", " 500+500=1000. #### 1,000", "1000", 1.0),  # the answer is compared as a number
    ("yes", " 12+7=19. #### 19", "19", -1.0),    # anything but the two exact words is wrong
    ("Maybe", " 12+7=20. #### 20", "19", -1.0),
    ("", " 12+7=20. #### 20", "19", -1.0),
])
def test_verify_reward_hand_cases(verdict, candidate, answer, expected):
    assert data.verify_reward(verdict, candidate, answer) == expected


# -----------------------------------------------------------------------------
# Voting on hand-made votes and weights

def test_weighted_majority_vote_hand_cases():
    wmv = ev.weighted_majority_vote
    assert wmv(["3", "3", "5"], [0.1, 0.1, 0.9]) == "5"      # the weights overturn the plain majority
    assert wmv(["3", "3", "5"], [0.5, 0.5, 0.9]) == "3"      # 1.0 > 0.9
    assert wmv(["3", "5"], [0.4, 0.4]) == "3"                # a tie goes to the answer seen first
    assert wmv(["5", "3", "3", "5"], [0.2, 0.1, 0.1, 0.0]) == "5"  # 0.2 vs 0.2: first seen
    assert wmv([None, "4"], [0.99, 0.01]) == "4"             # an invalid answer never wins
    assert wmv([None, None, None], [0.9, 0.8, 0.7]) is None  # all invalid: no answer
    assert wmv([], []) is None


def test_weighted_vote_with_equal_weights_is_majority_vote():
    rng = random.Random(0)
    for _ in range(300):
        answers = [rng.choice(["1", "2", "3", None]) for _ in range(rng.randint(1, 9))]
        assert ev.weighted_majority_vote(answers, [0.7] * len(answers)) == ev.majority_vote(answers)


def test_best_of_hand_cases():
    assert ev.best_of(["3", "5", "7"], [0.2, 0.9, 0.5]) == "5"
    assert ev.best_of(["3", None, "7"], [0.2, 0.9, 0.5]) is None  # best-of-k can pick an invalid one
    assert ev.best_of(["3", "5"], [0.6, 0.6]) == "3"                 # tie: the first


def test_verifier_metrics_hand_computed():
    problems = [data.Problem("q1", "", "4"), data.Problem("q2", "", "9")]
    texts = [[" #### 4", " #### 5", " #### 5", " no answer"],    # right, wrong, wrong, invalid
             [" #### 9", " #### 8", " #### 9", " #### 1"]]        # right, wrong, right, wrong
    p_yes = [[0.9, 0.3, 0.2, 0.6],
             [0.45, 0.8, 0.7, 0.1]]
    m = ev.verifier_metrics(problems, texts, p_yes)
    assert m["K"] == 4 and m["candidates_correct"] == 3 / 8
    # verdicts P >= 0.5: Y N N Y | N Y Y N; truth: 1 0 0 0 | 1 0 1 0 -> right on 1,2,3 of q1; 3,4 of q2
    assert m["verifier_acc"] == pytest.approx(5 / 8)
    assert m["brier"] == pytest.approx(sum((p - c) ** 2 for p, c in zip(
        [0.9, 0.3, 0.2, 0.6, 0.45, 0.8, 0.7, 0.1], [1, 0, 0, 0, 1, 0, 1, 0])) / 8)
    assert m["p_yes_correct"] == pytest.approx((0.9 + 0.45 + 0.7) / 3)
    # bins: [0.1]->0 wrong; [0.2]->0 wrong; [0.3]->0 wrong; [0.45]->1; [0.6]->0; [0.7]->1; [0.8]->0; [0.9]->1
    ece = (1 / 8) * (0.1 + 0.2 + 0.3 + abs(0.45 - 1) + 0.6 + abs(0.7 - 1) + 0.8 + abs(0.9 - 1))
    assert m["ece"] == pytest.approx(ece)
    # k = 4: q1 majority "5" (wrong), weighted 4: 0.9 vs 5: 0.5 -> "4" (right), best-of: 0.9 -> "4"
    #        q2 majority "9" (right), weighted 9: 1.15 vs 8: 0.8 -> right, best-of: 0.8 -> "8" (wrong)
    assert (m["maj@4"], m["weighted_maj@4"], m["best_of@4"], m["pass@4"]) == (0.5, 1.0, 0.5, 1.0)
    # k = 2: groups (q1: [4,5], [5,inv]), (q2: [9,8], [9,1]), averaged over the 4 groups
    #   majority (first on ties): 4 / 5 / 9 / 9 -> 3 right; weighted: 4 / 5 / 8 / 9 -> 2 right
    #   best-of: 4 / invalid (0.6 > 0.2) / 8 / 9 -> 2 right, 1 invalid
    assert m["maj@2"] == 0.75 and m["weighted_maj@2"] == 0.5 and m["best_of@2"] == 0.5
    assert m["best_of_invalid@2"] == 0.25 and m["maj_invalid@2"] == 0.0
    # k = 1: every method picks the candidate itself: the mean correctness
    assert m["maj@1"] == m["weighted_maj@1"] == m["best_of@1"] == m["pass@1"] == 3 / 8
    assert m["maj_invalid@1"] == 1 / 8



def test_by_slice_gives_every_verifier_metric_per_slice():
    """The shortcut task's slices: each key computed on that slice's problems alone, and nothing without slices."""
    problems = [data.Problem("q1", "", "4", "conflict"), data.Problem("q2", "", "9", "normal"),
                data.Problem("q3", "", "2", "conflict")]
    texts = [[" #### 4", " #### 5"], [" #### 9", " #### 8"], [" #### 1", " #### 2"]]
    p_yes = [[0.9, 0.3], [0.45, 0.8], [0.2, 0.6]]
    res = ev.by_slice(ev.verifier_metrics, problems, texts, p_yes)
    conflict = ev.verifier_metrics([problems[0], problems[2]], [texts[0], texts[2]], [p_yes[0], p_yes[2]])
    assert {k[len("conflict_"):]: v for k, v in res.items() if k.startswith("conflict_")} == conflict
    assert res["normal_verifier_acc"] == 0.0 and res["conflict_verifier_acc"] == 1.0 and res["normal_n"] == 1
    assert ev.by_slice(ev.verifier_metrics, [data.Problem("q", "", "1")], [[" #### 1"]], [[0.5]]) == {}

def test_ece_is_zero_when_calibrated():
    problems = [data.Problem("q", "", "1")]
    texts = [[" #### 1"] * 3 + [" #### 2"] * 7 + [" #### 1"] * 1 + [" #### 2"] * 9]
    p_yes = [[0.3] * 10 + [0.1] * 10]  # 3 of 10 right at 0.3, 1 of 10 right at 0.1
    assert ev.verifier_metrics(problems, texts, p_yes)["ece"] == pytest.approx(0.0, abs=1e-12)


# -----------------------------------------------------------------------------
# P(Yes) from one forward pass == the probability of generating the Yes token

def _tiny_gpt(seed, vocab=8):
    torch.manual_seed(seed)
    return GPT(GPTConfig(block_size=32, vocab_size=vocab, n_layer=2, n_head=2, n_embd=32)).eval()


def test_p_yes_from_logits_is_the_probability_of_generating_yes():
    model = _tiny_gpt(0)
    yes, no, pad = 3, 5, 7
    prompts = [[1, 2, 4, 6, 2], [2, 2], [6, 1, 4]]  # several lengths in one batch: padding must not leak
    with torch.no_grad():
        restricted = verdict_logp(model, prompts, (yes, no), pad)
        for i, p in enumerate(prompts):
            assert torch.allclose(verdict_logp(model, [p], (yes, no), pad)[0], restricted[i], atol=1e-5)
            raw = torch.log_softmax(model(torch.tensor([p]))[0][:, -1], -1)[:, [yes, no]]  # unpadded, unrestricted
            # generate() samples the next token from the same distribution: its log-prob of a sampled
            # Yes equals log P(Yes), and Yes comes out at the rate P(Yes)
            n = 20000
            tokens, logp = model.generate([p], 1, num_samples=n, generator=torch.Generator().manual_seed(i))
            is_yes = tokens[:, 0] == yes
            p_yes = raw[0, 0].exp().item()
            assert torch.allclose(logp[is_yes, 0], raw[0, 0].expand(int(is_yes.sum())), atol=1e-5)
            rate = is_yes.float().mean().item()
            assert abs(rate - p_yes) < 4 * (p_yes * (1 - p_yes) / n) ** 0.5 + 1e-3, (rate, p_yes)
            # restricted to the two verdicts: renormalised
            p_no = raw[0, 1].exp().item()
            assert restricted[i, 0].exp().item() == pytest.approx(p_yes / (p_yes + p_no), rel=1e-5)
    assert torch.allclose(restricted.exp().sum(-1), torch.ones(3))


def test_verdict_logp_has_gradients():
    model = _tiny_gpt(1).train()
    lp = verdict_logp(model, [[1, 2, 3], [4]], (3, 5), 7)
    lp[:, 0].sum().backward()
    assert model.lm_head.weight.grad is not None and model.lm_head.weight.grad.abs().sum() > 0


# -----------------------------------------------------------------------------
# The rollout and the commands, on a tiny SFT model

@pytest.fixture(scope="module")
def tiny_sft(tmp_path_factory):
    out = tmp_path_factory.mktemp("sft")
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    train.main(["sft", "--out", str(out), "--max-iters", "20", "--n-layer", "1", "--n-head", "2", "--n-embd", "32",
                "--batch-size", "16", "--sft-examples", "200", "--val-examples", "16", "--eval-problems", "4",
                "--eval-k", "2", "--warmup", "5", "--max-new-tokens", "8", "--eval-interval", "20"])
    torch.set_num_threads(n)
    return out / "ckpt.pt"


def test_verify_rollout_rows(tiny_sft):
    solver, tok, _ = ev.load_gpt(str(tiny_sft), "cpu")
    verifier, _, _ = ev.load_gpt(str(tiny_sft), "cpu")
    problems = data.make_problems(5, seed=3)
    rows = train.sample_verdicts(verifier, solver, tok, problems, 3, 12, seed=0, batch=4)
    cands = train.sample_solutions(solver, tok, problems, 3, 12, seed=0)  # the same candidates
    yes_no = data.verdict_ids(tok)
    assert len(rows) == 15
    lp = verdict_logp(verifier.eval(), rows.prompt, yes_no, tok.pad_id).detach()
    for i in range(15):
        p = problems[i // 3]  # k = 3 consecutive rows per problem
        assert tok.decode(rows.prompt[i]) == data.format_verify_prompt(p.question, cands.text[i])
        assert rows.completion[i] in ([yes_no[0]], [yes_no[1]])
        v = yes_no.index(rows.completion[i][0])
        assert rows.text[i] == data.VERDICTS[v]
        assert rows.reward[i] == data.verify_reward(data.VERDICTS[v], cands.text[i], p.answer)
        assert rows.candidate_reward[i] == cands.reward[i]
        assert rows.logp_behavior[i].item() == pytest.approx(lp[i, v].item(), abs=1e-5)
    again = train.sample_verdicts(verifier, solver, tok, problems, 3, 12, seed=0, batch=4)
    assert again.completion == rows.completion  # seeded


def test_a_loaded_checkpoint_samples_with_dropout_off(tmp_path):
    """ev.load_gpt returns the model in eval mode: a checkpoint trained with dropout samples the same candidates
    from the same seed (train.rl_task hands the verifier's frozen solver straight to ev.sample_answers)."""
    torch.manual_seed(0)
    cfg = GPTConfig(block_size=256, vocab_size=258, n_layer=1, n_head=2, n_embd=32, dropout=0.5)
    common.atomic_save({"model": GPT(cfg).state_dict(), "model_config": vars(cfg), "tokenizer": "byte"},
                       str(tmp_path / "ckpt.pt"))
    solver, tok, _ = ev.load_gpt(str(tmp_path / "ckpt.pt"), "cpu")
    assert not solver.training
    problems = data.make_problems(4, seed=3)
    draw = lambda: ev.sample_answers(solver, tok, problems, 4, 1.0, 12, torch.Generator().manual_seed(0))[0]
    assert draw() == draw()


def test_rl_verify_cli_runs_curates_and_resumes(tiny_sft, tmp_path, capsys):
    rl = ["rl", "--task", "verify", "--init", str(tiny_sft), "--prompts", "6", "--k", "4", "--batch-size", "12",
          "--micro-batch", "6", "--eval-problems", "4", "--eval-k", "2", "--max-new-tokens", "8", "--lr", "1e-3",
          "--loss", "topr", "--baseline", "0"]
    a, b = tmp_path / "a", tmp_path / "b"
    train.main([*rl, "--out", str(a), "--iterations", "2"])
    rows = [json.loads(l) for l in open(a / "metrics.jsonl")]
    evals = [r for r in rows if "test_verifier_acc" in r]
    assert [r["iteration"] for r in evals] == [0, 1, 2]
    for key in ("test_ece", "test_maj@2", "test_weighted_maj@2", "test_best_of@2", "test_pass@2"):
        assert 0.0 <= evals[-1][key] <= 1.0
    steps = [r for r in rows if "mean_alpha" in r]
    assert len(steps) == 2 * 2 and all(r["length"] == 1.0 for r in steps)  # 24 verdicts / batch 12
    train.main([*rl, "--out", str(b), "--iterations", "1"])
    train.main([*rl, "--out", str(b), "--iterations", "2", "--resume"])
    wa = torch.load(a / "ckpt.pt", weights_only=True)["model"]
    wb = torch.load(b / "ckpt.pt", weights_only=True)["model"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert not all(torch.equal(wa[k], v) for k, v in torch.load(tiny_sft, weights_only=True)["model"].items())
    # curation: as many right as wrong candidates to judge (when both kinds exist)
    c = tmp_path / "c"
    capsys.readouterr()
    train.main([*rl, "--out", str(c), "--iterations", "1", "--candidate-pos-frac", "0.5", "--k", "8"])
    ds = [r for r in map(json.loads, open(c / "metrics.jsonl")) if "dataset_size" in r][0]
    if "not curated" in capsys.readouterr().out:  # only when one kind is missing
        assert ds["dataset_candidates_correct"] in (0.0, 1.0) and ds["dataset_size"] == 48
    else:
        assert ds["dataset_candidates_correct"] == pytest.approx(0.5, abs=1 / ds["dataset_size"])


@pytest.mark.parametrize("argv, message", [
    (["--candidate-pos-frac", "0.5"], "only apply to --task verify"),
    (["--task", "verify", "--candidate-pos-frac", "1.5"], "argument --candidate-pos-frac: must be in (0, 1), got 1.5"),
])
def test_rl_verify_flag_errors(tmp_path, capsys, argv, message):
    with pytest.raises(SystemExit) as e:
        train.main(["rl", "--init", "x.pt", "--out", str(tmp_path), *argv])
    assert e.value.code in (1, 2) and message in capsys.readouterr().err  # 2: argparse rejected the value


def test_eval_gpt_with_verifier(tiny_sft, capsys):
    res = ev.main(["gpt", "--ckpt", str(tiny_sft), "--verifier", str(tiny_sft), "--n", "4", "--k", "4",
                   "--max-new-tokens", "8"])
    v = res["verifier"]
    assert v["n"] == 4 and v["K"] == 4
    assert v["maj@4"] == res["maj@4"] and v["pass@4"] == res["pass@4"]  # the same samples as the plain eval
    assert abs(v["pass@1"] - res["pass@1"]) < 1e-12
    out = capsys.readouterr().out
    assert json.loads(out.splitlines()[0])["verifier"]["K"] == 4
    assert "weighted" in out and "best-of-k" in out


def test_verification_prompt_longer_than_context_is_a_clear_error():
    model = GPT(GPTConfig(block_size=32, vocab_size=258, n_layer=1, n_head=2, n_embd=16))
    tok = data.get_tokenizer("byte")
    problems = [data.Problem("Ana has 12 apples. How many apples does Ana have?", "", "12")]
    with pytest.raises(common.UserError, match="verification prompt has .* more than the model's context"):
        ev.score_candidates(model, tok, problems, [[" 12. #### 12"]])
