"""Every `python experiments.py ...` command quoted in RESULTS.md, run dry: each train.py run it would start is
parsed by train.py's own parser (train.main up to the point where it would train), recorded and not run; the
settings of its RL runs must be the ones its section of RESULTS.md states. A command quoted there without an
entry in EXPECT below fails test_every_quoted_command_is_checked: quoting a new one means stating its settings."""
import os
import re
import shlex
import subprocess
import sys

import matplotlib.figure
import pytest

import common
import data
import eval as ev
import experiments
import train
from topr_experiments import l_tokencredit
from topr_experiments import runs as shared_runs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
with open(os.path.join(ROOT, "RESULTS.md")) as f:
    RESULTS = f.read()
RESULTS_FLAT = " ".join(RESULTS.split())  # phrases may wrap across lines

# Experiments that only analyse existing checkpoints (they load real models and start no train.py run).
ANALYSIS_ONLY = {"gradnoise", "errors", "credit", "overlap"}

# command (as quoted, after `python experiments.py `) -> what its section states:
#   phrases: text of RESULTS.md (whitespace-normalised) that states the settings below;
#   runs: number of RL runs; rl: field of train.py rl's parsed args -> the set of its values over the RL runs
#   (one value: every run has it); sft: the same for the continued-SFT runs (train.py sft --init; samples =
#   max_iters x batch_size); before: a command whose runs this one reads (run dry first, not checked);
#   xfail: the reason, where the command and the text are known to disagree (a strict xfail until fixed).
EXPECT = {
    "offpolicy": dict(
        section="(a)", runs=5,
        phrases=["python experiments.py offpolicy # seed 0; 5 runs",
                 "One dataset of 64 prompts x 8 samples (21% positive) from the SFT policy, then 6 epochs over it "
                 "(96 AdamW steps of 32 sequences, lr 3e-5, constant baseline c = 0",
                 "Held-out metrics are on 256 test problems, 4 samples each"],
        rl=dict(iterations={1}, prompts={64}, k={8}, epochs={6}, batch_size={32}, lr={3e-5}, baseline={0.0},
                seed={0}, loss={"topr", "reinforce", "tis", "ppo", "sft_pos"}, eval_problems={256}, eval_k={4})),
    "iterated": dict(
        section="(b, d)", runs=9,
        phrases=["# seeds 0, 1, 2; 3 iterations x (32 prompts x 16 samples), one step per dataset",
                 "uses a per-prompt group-mean baseline and takes one AdamW step on all 512 (lr 3e-5)",
                 "(48 steps x 32 = 1,536 sequences, lr 3e-5)"],
        rl=dict(iterations={3}, prompts={32}, k={16}, epochs={1}, batch_size={512}, lr={3e-5}, baseline={"group"},
                seed={0, 1, 2}, loss={"topr", "reinforce", "sft_pos"}, eval_problems={256}, eval_k={4}),
        sft=dict(max_iters={48}, batch_size={32}, lr={3e-5}, seed={0, 1, 2})),
    "baseline": dict(
        section="(c)", runs=5,
        phrases=["# seed 0; topr with c in {-0.9, -0.6, -0.3, 0, +0.3}, 2 iterations of 32 x 16",
                 "With 1,024 samples per run"],
        rl=dict(iterations={2}, prompts={32}, k={16}, baseline={-0.9, -0.6, -0.3, 0.0, 0.3}, seed={0}, loss={"topr"},
                eval_problems={256}, eval_k={4})),
    "verifier --tasks default": dict(
        section="(e)", runs=4,
        phrases=["each sees 8 iterations x 128 prompts x 8 candidates", "AdamW lr 3e-4, batch 64, group-mean baseline",
                 "Evaluation: 256 held-out problems x 16 candidates", "--tasks default # seed 0"],
        rl=dict(task={"verify"}, iterations={8}, prompts={128}, k={8}, batch_size={64}, lr={3e-4}, baseline={"group"},
                seed={0}, loss={"topr", "reinforce", "sft_pos"}, candidate_pos_frac={0.5, None},
                eval_problems={256}, eval_k={16})),
    "onpolicy": dict(
        section="(f)", runs=2 * 4 * 3,
        phrases=["(`python experiments.py onpolicy`: 20 on-policy steps of 32 prompts x 8 samples, lr 1e-4, seeds 0 1 2",
                 "**shortcut task** (20 on-policy steps of 256 samples, lr 0.0001, seeds 0 1 2",
                 "**default task** (20 on-policy steps of 256 samples, lr 0.0001, seeds 0 1 2",
                 "`sft_more` = continued SFT for the same 5,120 optimizer samples, same lr",
                 "1000 test problems per slice, 8 samples each", "held-out evaluation at the start and the end"],
        rl=dict(iterations={20}, prompts={32}, k={8}, epochs={1}, batch_size={256}, lr={1e-4}, seed={0, 1, 2}, eval_every={20},
                loss={"reinforce", "sft_pos", "neg_only"}, eval_problems={1000, 2000}, eval_k={8}),
        sft=dict(samples={5120}, lr={1e-4}, min_lr={1e-4}, seed={0, 1, 2})),
    "onpolicy --tasks shortcut --methods reinforce sft_pos neg_only --skip-done": dict(
        section="(f')", runs=9,
        phrases=["Every run above divides each sequence's term by its own length (`--length-norm sequence`)"],
        rl=dict(iterations={20}, prompts={32}, k={8}, epochs={1}, batch_size={256}, lr={1e-4}, seed={0, 1, 2},
                length_norm={"sequence"}, optimizer={"adamw"}, loss={"reinforce", "sft_pos", "neg_only"},
                eval_problems={2000}, eval_k={8})),
    "onpolicy --tasks shortcut --methods reinforce sft_pos neg_only --length-norm constant --skip-done": dict(
        section="(f')", runs=9,
        phrases=["`--length-norm constant` divides every sequence by `--max-new-tokens` (48)"],
        rl=dict(iterations={20}, prompts={32}, k={8}, epochs={1}, batch_size={256}, lr={1e-4}, seed={0, 1, 2},
                length_norm={"constant"}, max_new_tokens={48}, optimizer={"adamw"}, grad_clip={1.0},
                loss={"reinforce", "sft_pos", "neg_only"}, eval_problems={2000}, eval_k={8})),
    "onpolicy --tasks shortcut --methods reinforce sft_pos neg_only group --length-norm constant --optimizer sgd --lr 0.4 "
    "--skip-done": dict(
        section="(f')", runs=12,
        phrases=["with plain SGD (no momentum, no clipping", "so lr = 0.091 / 0.242 = 0.38, rounded to 0.4"],
        rl=dict(iterations={20}, prompts={32}, k={8}, epochs={1}, batch_size={256}, lr={0.4}, seed={0, 1, 2},
                length_norm={"constant"}, optimizer={"sgd"}, grad_clip={1e9}, loss={"reinforce", "sft_pos", "neg_only"},
                baseline={0.0, "group"}, eval_problems={2000}, eval_k={8})),
    "onpolicy --out runs/base2 --tasks shortcut --methods reinforce sft_pos neg_only --skip-done": dict(
        section="(f') second attempt", runs=9,
        phrases=["with AdamW (lr 1e-4, `sequence`, as (f))"],
        rl=dict(iterations={20}, prompts={32}, k={8}, epochs={1}, batch_size={256}, lr={1e-4}, seed={0, 1, 2},
                length_norm={"sequence"}, optimizer={"adamw"}, loss={"reinforce", "sft_pos", "neg_only"},
                eval_problems={2000}, eval_k={8})),
    "onpolicy --out runs/base2 --tasks shortcut --methods reinforce sft_pos neg_only --length-norm constant "
    "--optimizer sgd --lr 0.1 --skip-done": dict(
        section="(f') second attempt", runs=9,
        phrases=["with plain SGD (lr 0.1, a quarter of the rate that diverged, `constant`, no clipping)"],
        rl=dict(iterations={20}, prompts={32}, k={8}, epochs={1}, batch_size={256}, lr={0.1}, seed={0, 1, 2},
                length_norm={"constant"}, optimizer={"sgd"}, grad_clip={1e9},
                loss={"reinforce", "sft_pos", "neg_only"}, eval_problems={2000}, eval_k={8})),
    "stability --tasks shortcut --methods neg_only --seeds 0 1 --skip-done": dict(
        section="(f')", runs=2,
        phrases=["Off-policy (g), `neg_only` on the new base"],
        rl=dict(iterations={1}, prompts={64}, k={8}, epochs={8}, batch_size={64}, lr={1e-4}, seed={0, 1},
                length_norm={"sequence"}, loss={"neg_only"}, eval_each_epoch={True}, eval_problems={400}, eval_k={4})),
    "stability --tasks shortcut --methods neg_only --seeds 0 1 --length-norm constant --skip-done": dict(
        section="(f')", runs=2,
        phrases=["Off-policy (g) under `constant`: `neg_only`"],
        rl=dict(iterations={1}, prompts={64}, k={8}, epochs={8}, batch_size={64}, lr={1e-4}, seed={0, 1},
                length_norm={"constant"}, loss={"neg_only"}, eval_each_epoch={True}, eval_problems={400}, eval_k={4})),
    "stability --tasks shortcut default --seeds 0 1": dict(
        section="(g)", runs=24,
        phrases=["(one dataset of 64 prompts x 8 samples, 8 epochs, lr 1e-4, seeds 0 1;",
                 "Common settings: 8 samples per prompt, batch 64, lr 1e-4, c = 0 unless the loss fixes it, 400 held-out "
                 "problems x 4 samples per evaluation", "26 CPU-minutes for the 12 shortcut runs, 40 for the 12 default-task runs",
                 "Evaluations after every epoch"],
        rl=dict(iterations={1}, prompts={64}, k={8}, epochs={8}, batch_size={64}, lr={1e-4}, seed={0, 1}, eval_each_epoch={True},
                loss={"topr", "reinforce", "tis", "ppo", "sft_pos", "neg_only"}, eval_problems={400}, eval_k={4})),
    "composition --tasks shortcut default --seed 0": dict(
        section="(i)", runs=20, before="stability --tasks shortcut default --seeds 0",
        phrases=["TOPR on (g)'s seed-0 dataset (the same 512 samples", "(dataset positive fraction p = 0.553; TOPR, 4 epochs, seed 0;",
                 "One seed (16 CPU-minutes for the 20 runs)"],
        rl=dict(iterations={1}, prompts={64}, k={8}, epochs={4}, batch_size={64}, lr={1e-4}, seed={0}, loss={"topr"},
                target_pos_frac={None, 0.05, 0.1, 0.2, 0.5, 0.9}, eval_problems={400}, eval_k={4})),
    "reuse --tasks shortcut default --seeds 0": dict(
        section="(h)", runs=24,
        phrases=["4 datasets of 32 prompts x 8 samples (1,024 samples generated in all), each used for E = 1, 2, 4 or 8 "
                 "epochs (batches of 64: 16 to 128 optimizer steps)", "evaluated after each dataset", "One seed (the 24 runs"],
        rl=dict(iterations={4}, prompts={32}, k={8}, epochs={1, 2, 4, 8}, batch_size={64}, lr={1e-4}, seed={0},
                eval_every={1}, eval_each_epoch={False},
                loss={"topr", "reinforce", "sft_pos"}, eval_problems={400}, eval_k={4})),
    "verifier --tasks shortcut": dict(
        section="(j)", runs=4,
        phrases=["`python experiments.py verifier --tasks shortcut` (seed 0; 18 CPU-minutes): section (e)'s recipe "
                 "(8 iterations x 128 prompts x 8 candidates, balanced unless \"uncurated\", group baseline, lr 3e-4)",
                 "400 test problems (200 per slice) x 16 candidates", "AdamW lr 3e-4, batch 64"],
        rl=dict(task={"verify"}, shortcut={True}, iterations={8}, prompts={128}, k={8}, batch_size={64}, lr={3e-4},
                baseline={"group"}, seed={0}, loss={"topr", "reinforce", "sft_pos"}, candidate_pos_frac={0.5, None},
                eval_problems={400}, eval_k={16})),
    "regime --seeds 0 1 2": dict(
        section="(k)", runs=48,
        phrases=["4 epochs over one dataset of 64 prompts x 8 samples (32 optimizer steps of 64), evaluated after every "
                 "epoch on 300 problems per slice x 4 samples",
                 "Every table in this section uses the default length normalisation (`--length-norm sequence`) and c = 0"],
        rl=dict(iterations={1}, prompts={64}, k={8}, epochs={4}, batch_size={64}, lr={1e-4}, seed={0, 1, 2},
                eval_each_epoch={True}, length_norm={"sequence"}, credit={"sequence"}, baseline={0.0, "group"},
                loss={"topr", "sft_pos", "tis", "reinforce"}, eval_problems={600}, eval_k={4})),
    "onepass --seeds 0 1 2 --skip-done": dict(
        section="(k)", runs=18, before="regime --seeds 0 1 2",
        phrases=["one pass over 4x the samples (256 prompts x 8, generated once), the same 32 steps"],
        rl=dict(iterations={1}, prompts={256}, k={8}, epochs={1}, batch_size={64}, lr={1e-4}, seed={0, 1, 2},
                eval_each_epoch={False}, length_norm={"sequence"}, loss={"topr", "sft_pos", "reinforce"},
                eval_problems={600}, eval_k={4})),
    "onepass --bases both_c0.03": dict(
        section="The demo", runs=18,
        phrases=["then 18 runs of about 1 CPU-minute: one pass, and the reuse runs beside it"],
        rl=dict(iterations={1}, prompts={64, 256}, epochs={4, 1}, batch_size={64}, lr={1e-4}, seed={0, 1, 2},
                shortcut={True}, conflict_direction={None}, loss={"topr", "sft_pos", "reinforce"})),
    "replicates --skip-done": dict(
        section="(k')", runs=3 * 3 * 2 * 3 * 2,
        phrases=["are each trained from SFT seeds 0, 1 and 2", "From each base, topr and sft_pos (c = 0) x RL seeds "
                 "0 1 2, in (k)'s reuse setting and its one-pass setting"],
        rl=dict(iterations={1}, prompts={64, 256}, k={8}, epochs={4, 1}, batch_size={64}, lr={1e-4}, seed={0, 1, 2},
                length_norm={"sequence"}, credit={"sequence"}, loss={"topr", "sft_pos"}, baseline={0.0, "group"},
                conflict_direction={None, "add"}, eval_problems={600}, eval_k={4})),
    "peff --skip-done": dict(
        section="(k')", runs=3 * 3 * 2 * 3, before="replicates --skip-done",
        phrases=["runs topr at matched effective positive fractions (p_eff 0.2 and 0.5, c from "
                 "`topr.baseline_for_pos_fraction` and each dataset's own p)"],
        # the fake rows' positive share is 0.5: c = 0.6 for p_eff 0.2, 0 for 0.5
        rl=dict(iterations={1}, prompts={64}, k={8}, epochs={4}, batch_size={64}, lr={1e-4}, seed={0, 1, 2},
                loss={"topr"}, baseline={0.6, 0.0}, eval_problems={600}, eval_k={4})),
    "tokencredit --seeds 0 1 2 --skip-done": dict(
        section="(l)", runs=18 + 6, before="onepass --seeds 0 1 2 --skip-done",
        phrases=["topr with `--credit first_error`", "with `--credit prefix`", "in (k)'s reuse setting; prefix also in "
                 "the one-pass setting", "(its base of (f); the reuse setting;"],
        rl=dict(iterations={1}, prompts={64, 256}, k={8}, epochs={4, 1}, batch_size={64}, lr={1e-4}, seed={0, 1, 2},
                loss={"topr"}, baseline={0.0}, credit={"first_error", "prefix", "sequence"}, shortcut={True, False},
                eval_problems={600}, eval_k={4})),
}


def quoted_commands(text):
    """'NAME [flags]' of every `python experiments.py NAME [flags]` in ```bash blocks (comments, line
    continuations, an OMP_NUM_THREADS=1 prefix and .venv/bin/ stripped) and in inline `code` of text."""
    blocks = re.findall(r"```bash\n(.*?)```", text, re.S)
    lines = [line.split("#")[0] for b in blocks for line in b.replace("\\\n", " ").splitlines()]
    inline = re.findall(r"`([^`]+)`", re.sub(r"```.*?```", "", text, flags=re.S))
    found = set()
    for s in lines + inline:
        m = re.fullmatch(r"(?:OMP_NUM_THREADS=\d+ )?(?:\.venv/bin/)?python experiments\.py (.+)", " ".join(s.split()))
        if m:
            found.add(m.group(1))
    return found


def fake_rows(n=12):
    """metrics.jsonl rows with every key the experiments read: the held-out keys of eval's own metrics (solver
    and verifier, whole test set and per slice, from 2 toy problems per slice), training statistics, and
    increasing samples / step / iteration. Keys nobody logs yet read as 0.5."""
    problems = [data.Problem(f"q{i}", "2+2=4. #### 4", "4", sl) for i, sl in enumerate(["normal", "conflict"] * 2)]
    texts = [[" #### 4"] * 8 + [" #### 5"] * 8] * len(problems)
    p_yes = [[0.7] * 8 + [0.2] * 8] * len(problems)
    solver = lambda *cols: ev.accuracy(*cols, 8)
    cols = [[t[:1] for t in texts], [t[:8] for t in texts], [[10] * 8] * len(problems)]  # greedy, sampled, lengths
    held_out = {**solver(problems, *cols), **ev.by_slice(solver, problems, *cols), **ev.answer_breakdown(problems, cols[1]),
                **ev.verifier_metrics(problems, texts, p_yes), **ev.by_slice(ev.verifier_metrics, problems, texts, p_yes)}

    class Row(dict):
        __contains__ = lambda self, key: True
        __missing__ = lambda self, key: 0.5

    stats = dict(dataset_pos_frac=0.5, dataset_size=512, entropy=0.5, logp_reward_pos=-1.0, logp_reward_neg=-2.0,
                 frac_neg_ratio_lt1=0.5)
    return [Row({f"test_{k}": v for k, v in held_out.items()}, **stats, iteration=i, step=i, samples=256 * i)
            for i in range(n)]


def dry_run(command, tmp_path, monkeypatch):
    """experiments.main(command) on placeholder checkpoints and fake metrics; -> the parsed args of each
    train.py run it starts (train.main parses and checks them, then common.distributed records them)."""
    runs, rows = [], fake_rows()
    monkeypatch.setattr(common, "distributed", lambda run, args, **kw: runs.append(args))

    def run_train(argv):
        n = len(runs)
        train.main(argv)  # a renamed or removed flag fails here (argparse: SystemExit 2)
        assert len(runs) == n + 1, f"train.py {shlex.join(argv)} did not reach the point where it trains"
        for name in ("ckpt.pt", "metrics.jsonl"):  # what later existence checks look for
            open(os.path.join(runs[-1].out, name), "w").close()
    monkeypatch.setattr(shared_runs, "run_train", run_train)
    monkeypatch.setattr(ev, "read_metrics", lambda folder: rows)
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", lambda *a, **kw: None)  # figures: not checked here, slow
    for analysis in ("credit_table", "tree_stats"):  # they read real checkpoints (tests/test_experiments.py runs them)
        monkeypatch.setattr(l_tokencredit, analysis, lambda *a, **kw: [])
    sft = tmp_path / "sft_ckpt.pt"
    sft.touch()
    experiments.main([*shlex.split(command), "--out", str(tmp_path / "runs"), "--figures", str(tmp_path / "figures"),
                      "--sft", str(sft)])
    return runs


def settings(args):
    return {**vars(args), "samples": args.max_iters * args.batch_size} if args.cmd == "sft" else vars(args)


def test_every_quoted_command_is_checked():
    quoted = quoted_commands(RESULTS)
    assert quoted, "no `python experiments.py` command found in RESULTS.md"
    assert ANALYSIS_ONLY <= set(experiments.EXPERIMENTS)
    train_runs = {c for c in quoted if c.split()[0] not in ANALYSIS_ONLY}
    assert not train_runs - set(EXPECT), "quoted in RESULTS.md: state their settings in EXPECT"
    assert not set(EXPECT) - train_runs, "in EXPECT but no longer quoted in RESULTS.md"


@pytest.mark.parametrize("command", [pytest.param(c, marks=pytest.mark.xfail(strict=True, reason=e["xfail"]))
                                     if "xfail" in e else c for c, e in EXPECT.items()])
def test_quoted_command_runs_the_settings_its_section_states(command, tmp_path, monkeypatch):
    e = EXPECT[command]
    for phrase in e["phrases"]:
        assert phrase in RESULTS_FLAT, f"{e['section']}: RESULTS.md no longer says {phrase!r}"
    if "before" in e:
        dry_run(e["before"], tmp_path, monkeypatch)
    runs = dry_run(command, tmp_path, monkeypatch)
    groups = {"rl": [a for a in runs if a.cmd == "rl"],
              "sft": [a for a in runs if a.cmd == "sft" and a.init]}  # continued SFT, not the bases
    assert len(groups["rl"]) == e["runs"], f"{e['section']} `{command}`: number of RL runs"
    for kind, group in groups.items():
        assert bool(group) == (kind in e), f"{e['section']} `{command}`: {kind} runs {'unexpected' if group else 'missing'}"
        for field, stated in e.get(kind, {}).items():
            produced = {settings(a)[field] for a in group}
            assert produced == stated, (f"{e['section']} `python experiments.py {command}`: {kind} {field} is "
                                        f"{sorted(produced, key=str)} over its runs; RESULTS.md states {sorted(stated, key=str)}")


def test_onpolicy_shortcut_base_is_the_quoted_calibrated_base(tmp_path, monkeypatch):
    """(f): the base that `experiments.py onpolicy` trains is the quoted `train.py sft` command, flag for flag."""
    line = re.search(r"^python (train\.py sft --shortcut .*)$", RESULTS, re.M).group(1)
    quoted = []
    monkeypatch.setattr(common, "distributed", lambda run, args, **kw: quoted.append(args))
    train.main(shlex.split(line)[1:] + ["--out", str(tmp_path / "quoted")])
    runs = dry_run("onpolicy", tmp_path, monkeypatch)
    base = [a for a in runs if a.cmd == "sft" and a.init is None and a.shortcut]
    assert len(base) == 1
    differ = {k: (v, vars(quoted[0]).get(k)) for k, v in vars(base[0]).items() if k != "out" and v != vars(quoted[0]).get(k)}
    assert not differ, f"(f) base: (experiments.py, RESULTS.md) differ in {differ}"
    assert set(vars(base[0])) == set(vars(quoted[0]))


def test_iterations_and_lr_are_honoured_by_onpolicy_and_refused_elsewhere(tmp_path, monkeypatch, capsys):
    """--iterations and --lr set onpolicy's on-policy steps and learning rate (sft_more: as many optimizer samples,
    the same constant lr); every other command refuses them with one line naming the flag and the command."""
    runs = dry_run("onpolicy --tasks default --methods reinforce sft_more --seeds 0 --iterations 3 --lr 0.001",
                   tmp_path, monkeypatch)
    assert [(a.iterations, a.lr, a.eval_every) for a in runs if a.cmd == "rl"] == [(3, 0.001, 3)]
    sft_more = [(settings(a)["samples"], a.lr, a.min_lr) for a in runs if a.cmd == "sft" and a.init]
    assert sft_more == [(3 * 256, 0.001, 0.001)]
    for name in set(experiments.EXPERIMENTS) - {"onpolicy"}:
        for flag in ("--iterations", "--lr"):
            with pytest.raises(SystemExit) as e:
                experiments.main([name, flag, "3", "--out", str(tmp_path / "refused")])
            assert e.value.code == 1 and capsys.readouterr().err == f"error: {flag} applies to onpolicy, not {name}\n"
    assert not (tmp_path / "refused").exists()


def test_overlap_end_to_end_writes_the_quoted_table(tmp_path):
    """`python experiments.py overlap` run as RESULTS.md quotes it (the script from another folder, real data, no
    model; seconds): the table it writes is the one quoted under "What "held-out" means here"."""
    r = subprocess.run([sys.executable, os.path.join(ROOT, "experiments.py"), "overlap", "--out", "runs"],
                       cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    rows = [line for line in (tmp_path / "runs" / "exp_overlap" / "table.md").read_text().splitlines()
            if line.startswith("|")]
    assert len(rows) == 5 and "\n".join(rows) in RESULTS
