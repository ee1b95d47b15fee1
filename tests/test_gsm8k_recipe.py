"""README's one-GPU recipe, run end to end on the CPU at tiny scale so that its flags cannot rot: the two commands
are read from README.md ("One GPU"), their files written where they name them (a random tiny GPT in GPT-2's Hugging
Face layout, a tiny GPT-2-format BPE in $GPT2_BPE_DIR, GSM8K-format jsonl lines), then run with only the overrides
that make them small (2 steps each). One worked solution is longer than the context: it is dropped and counted."""
import json
import os
import re
import shlex

import torch

import data
import train
from test_data_text import write_tiny_bpe
from test_pretrained import save_hf, tiny

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY_SCALE = {"sft": ["--max-iters", "2", "--log-interval", "1"],  # 2 optimizer steps
              "rl": ["--iterations", "2", "--prompts", "4"]}  # 2 iterations of 4 prompts


def recipe():
    """The commands of README.md's "One GPU" bash block, each as its argv after `python train.py`."""
    text = open(os.path.join(ROOT, "README.md")).read()
    section = text[text.index("## One GPU"):]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1).replace("\\\n", " ")
    cmds = [shlex.split(line) for line in block.splitlines() if line.strip()]
    assert all(c[:2] == ["python", "train.py"] for c in cmds) and [c[2] for c in cmds] == ["sft", "rl"], cmds
    return [c[2:] for c in cmds]


def flag(argv, name):
    return argv[argv.index(name) + 1]


def gsm8k_line(question, steps, answer):
    """One GSM8K jsonl line: the worked steps with their <<calculator>> annotations, then '#### N'."""
    worked = "\n".join(f"{a}{op}{b} = <<{a}{op}{b}={c}>>{c}." for a, op, b, c in steps)
    return json.dumps({"question": question, "answer": f"{worked}\n#### {answer}"})


def gsm8k_lines(problems):
    return [gsm8k_line(p.question, re.findall(r"(\d+)([-+*/])(\d+)=(\d+)\.", p.solution), p.answer) for p in problems]


def over_long_line(block_size):
    """A training problem (not in the 5% validation split) whose question fits any prompt budget but whose worked
    solution makes prompt + completion longer than block_size tokens (the tiny BPE: about one token a byte)."""
    question = next(q for q in (f"Ana has {n} apples. She buys 1 more. How many apples does Ana have now?"
                                for n in range(2, 99)) if not data._gsm8k_is_val(q))
    steps = [("1", "+", "1", "2")] * (block_size // 16)  # each "1+1 = <<1+1=2>>2." step is 18 tokens
    return gsm8k_line(question, steps, "2")


def test_the_readme_recipe_runs_end_to_end_at_tiny_scale(tmp_path, monkeypatch, capsys):
    sft_argv, rl_argv = recipe()
    block = int(flag(sft_argv, "--block-size"))
    monkeypatch.chdir(tmp_path)  # the commands' relative paths (gpt2/, train.jsonl, runs/...) land here
    monkeypatch.setenv(data.GPT2_DIR_ENV, str(write_tiny_bpe(tmp_path / "bpe")))
    # GPT-2's layout without the pad token (259 rows of the tiny BPE's 260, as GPT-2's 50,257 of 50,258)
    save_hf(tmp_path / flag(sft_argv, "--init-from"), tiny(vocab_size=259, block_size=1024, gelu="tanh"))
    pool = data.make_problems(100, seed=0, split="test")  # its hash also puts half of them in GSM8K's val split
    val = [p for p in pool if data._gsm8k_is_val(p.question)][:3]  # sft's validation split (5% by a hash)
    rest = [p for p in pool if not data._gsm8k_is_val(p.question)]
    train_lines = gsm8k_lines(rest[:40] + val) + [over_long_line(block)]
    (tmp_path / flag(sft_argv, "--gsm8k")).write_text("\n".join(train_lines) + "\n")
    (tmp_path / flag(sft_argv, "--gsm8k-test")).write_text("\n".join(gsm8k_lines(rest[40:44])) + "\n")

    train.main([*sft_argv, *TINY_SCALE["sft"]])
    out = capsys.readouterr().out
    sft_dir = tmp_path / flag(sft_argv, "--out")
    rows = [json.loads(l) for l in open(sft_dir / "metrics.jsonl")]
    assert [{k: v for k, v in r.items() if k.startswith("dropped")} for r in rows if "dropped_train" in r] == \
           [{"dropped_train": 1}]  # the over-long worked solution, and nothing else
    assert "dropped over-long examples" in out and "train 1" in out
    assert {r["lr"] for r in rows if "lr" in r} == {3e-5}  # --init-from's fine-tuning lr, constant
    assert "lr 3e-05 constant, clip 1" in out and f"x {flag(sft_argv, '--grad-accum')} micro-steps" in out
    assert rows[-1]["test_n"] == 4  # every test problem
    assert torch.load(sft_dir / "ckpt.pt", weights_only=True)["step"] == 2

    assert flag(rl_argv, "--init") == f"{flag(sft_argv, '--out')}/ckpt.pt"  # rl starts from sft's checkpoint
    train.main([*rl_argv, *TINY_SCALE["rl"]])
    rl_dir = tmp_path / flag(rl_argv, "--out")
    evals = [r for r in map(json.loads, open(rl_dir / "metrics.jsonl")) if "test_n" in r]
    assert [r["iteration"] for r in evals] == [0, 1, 2] and {r["test_n"] for r in evals} == {4}  # the cadence
    assert torch.load(rl_dir / "ckpt.pt", weights_only=True)["iteration"] == 2
