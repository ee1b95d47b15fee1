"""experiments.py and topr_experiments/: the commands' train.py runs, tables and figures from metrics.jsonl files
written here (the runs themselves take CPU-hours); the analyses on a tiny real checkpoint; the map from each
command to the file of its RESULTS.md section."""
import json
import math
import os
import re
import shlex
import shutil
import sys
import types

import pytest
import torch

import common
import data
import eval as ev
import experiments
import topr
import train
from topr_experiments import f_onpolicy, hi_reuse_composition, k_regime, k_replicates, l_tokencredit
from topr_experiments import runs as shared_runs


def test_onpolicy_report_table_and_figure(tmp_path):
    out, figures = tmp_path / "runs", tmp_path / "figures"
    figures.mkdir()
    args = types.SimpleNamespace(out=str(out), figures=str(figures), tasks=["default", "shortcut"], seeds=[0, 1, 2],
                                 iterations=4, lr=1e-4, length_norm="sequence", optimizer="adamw")
    runs = {}
    methods = list(f_onpolicy.ONPOLICY_METHODS) + ["sft_more"]
    for task in args.tasks:
        for m in methods:
            for s in args.seeds:
                folder = out / "exp_onpolicy" / f"{task}_{m}_s{s}"
                folder.mkdir(parents=True)
                rows = [{"samples": n, **{f"test_{sl}{k}": 0.1 * s + 0.01 * i for k in ("pass@1", "greedy", "pass@8")
                                          for sl in ("", "normal_", "conflict_")},
                         "test_mean_len": 10.0 + s, "test_invalid": 0.01 * s} for i, n in enumerate((0, 512, 1024))]
                rows.insert(1, {"step": 1, "entropy": 0.5 + s})
                (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
                runs[task, m, s] = shared_runs.eval_rows(str(folder))
    f_onpolicy.onpolicy_report(args, runs, methods)
    table = (out / "exp_onpolicy" / "table.md").read_text()
    # end values 0.02, 0.12, 0.22 over seeds: mean 0.12, s.e. 0.1 / sqrt(3); start 0.1 on average
    se = 0.1 / math.sqrt(3)
    assert f"0.100 -> 0.120 +- {se:.3f}" in table
    assert "| method | pass@1 | greedy | pass@8 | mean_len | invalid | entropy (end) |" in table  # default: no slices
    assert "| method | normal_pass@1 | normal_greedy | normal_pass@8 | conflict_pass@1 |" in table
    assert "| reinforce |" in table and "| sft_more |" in table and "| 1.500 |" in table  # entropy: mean of 0.5, 1.5, 2.5
    assert f"11.000 -> 11.000 +- {1 / math.sqrt(3):.3f}" in table  # mean length 10, 11, 12 over the seeds
    assert (figures / "topr_onpolicy.png").stat().st_size > 1000


def train_parser(monkeypatch):
    """argv -> the args that train.py's own parser makes of it: train.main up to the point where it would train
    (common.distributed records the args instead), so a renamed or removed flag fails the test that runs it."""
    parsed = []
    monkeypatch.setattr(common, "distributed", lambda run, args, **kw: parsed.append(args))

    def parse(argv):
        n = len(parsed)
        train.main(argv)  # argparse: SystemExit 2 on an unknown flag; train.check_args: its own checks
        assert len(parsed) == n + 1, f"train.py {shlex.join(argv)} did not reach the point where it trains"
        return parsed[-1]
    return parse


def fake_rl(calls, monkeypatch):
    """Stands in for train.py rl: records the argv, parses it with train.py's parser and writes the metrics rows
    such a run writes (seeded values: pass@1 at evaluation i of a run with --seed s is 0.1 * s + 0.01 * i on
    every slice)."""
    parse = train_parser(monkeypatch)
    share = {("possible", "right"): 0.4, ("possible", "other_op"): 0.6, ("impossible", "swapped"): 1.0}

    def run_train(argv):
        calls.append(argv)
        args = parse(argv)
        assert args.cmd == "rl", "the bases exist: only train.py rl runs here"
        n_evals = 1 + (args.iterations * args.epochs if args.eval_each_epoch else args.iterations)
        rows = [{"iteration": 0, "dataset_size": 512, "dataset_pos_frac": 0.25}]
        for i in range(n_evals):
            if i:
                rows.append({"step": 8 * i, "samples": 512 * i, "logp_reward_pos": -0.5, "logp_reward_neg": -1.0 - i,
                             "frac_neg_ratio_lt1": 0.5})
            rows.append({"iteration": 0 if args.eval_each_epoch else i, "step": 8 * i, "samples": 512 * i,
                         "test_invalid": 0.0, "test_mean_len": 12.0, "test_conflict_possible_n": 3,
                         "test_conflict_impossible_n": 1, **{f"test_conflict_{g}_{k}": share.get((g, k), 0.0)
                                                            for g in ("possible", "impossible") for k in ev.ANSWER_KINDS},
                         **{f"test_{sl}pass@1": 0.1 * args.seed + 0.01 * i for sl in ("", "normal_", "conflict_")}})
        with open(os.path.join(args.out, "metrics.jsonl"), "w") as f:
            f.write("".join(json.dumps(r) + "\n" for r in rows))
        open(os.path.join(args.out, "ckpt.pt"), "w").close()
    return run_train


def test_offpolicy_experiments_commands_tables_and_figures(tmp_path, monkeypatch):
    """stability, reuse and composition: the train.py commands they run (flags, seeds, the baseline c that
    gives each p_eff), the tables' means and standard errors, the figures; run outputs faked."""
    calls = []
    monkeypatch.setattr(shared_runs, "run_train", fake_rl(calls, monkeypatch))
    for task in ("shortcut", "default"):  # the bases exist
        os.makedirs(tmp_path / "runs" / "exp_onpolicy" / f"base_{task}")
        open(tmp_path / "runs" / "exp_onpolicy" / f"base_{task}" / "ckpt.pt", "w").close()
    where = ["--out", str(tmp_path / "runs"), "--figures", str(tmp_path / "figures"), "--tasks", "shortcut", "default"]
    experiments.main(["stability", *where, "--seeds", "0", "1"])
    assert len(calls) == 2 * 2 * len(shared_runs.OFF_LOSSES)
    assert all("--shortcut" in c for c in calls[:12]) and not any("--shortcut" in c for c in calls[12:])
    table = (tmp_path / "runs" / "exp_stability" / "table.md").read_text()
    # seeds 0 and 1 end at 0.08 and 0.18 (8 epochs): mean 0.13, s.e. 0.05; after epoch 2: 0.02 and 0.12
    assert "| topr | 0.050 -> 0.070 -> 0.130 +- 0.050 | 0.050 -> 0.070 -> 0.130 +- 0.050 |" in table
    assert ("| reinforce | 0.050 -> 0.070 -> 0.130 +- 0.050 | 0.000 -> 0.000 -> 0.000 +- 0.000 | "
            "12.000 -> 12.000 -> 12.000 +- 0.000 | -0.50 / -9.00 | 0.50 |") in table
    assert all(c[c.index("--length-norm") + 1] == "sequence" for c in calls)
    n = len(calls)  # one loss under another normaliser: its own folders, table and figure
    experiments.main(["stability", *where[:-1], "--seeds", "0", "--methods", "neg_only", "--length-norm", "constant"])
    assert [c[c.index("--out") + 1].endswith("shortcut_neg_only_s0_constant") for c in calls[n:]] == [True]
    assert (tmp_path / "runs" / "exp_stability" / "table_constant.md").read_text().count("| neg_only |") == 1
    assert (tmp_path / "figures" / "topr_stability_shortcut_constant.png").exists()
    del calls[n:]
    experiments.main(["composition", *where, "--seed", "0"])
    comp = calls[24:]
    assert len(comp) == 2 * 2 * len(hi_reuse_composition.COMPOSITION_P_EFF)
    cs = [float(c[c.index("--baseline") + 1]) for c in comp if "--target-pos-frac" not in c][:5]
    for c, f in zip(cs, hi_reuse_composition.COMPOSITION_P_EFF):  # the dataset's p = 0.25 (stability's seed-0 topr run)
        assert abs(topr.effective_pos_fraction(0.25, c) - f) < 1e-3
    assert [c[c.index("--target-pos-frac") + 1] for c in comp if "--target-pos-frac" in c][:5] == ["0.05", "0.1", "0.2", "0.5", "0.9"]
    assert "p = 0.250" in (tmp_path / "runs" / "exp_composition" / "table.md").read_text()
    experiments.main(["reuse", *where, "--seeds", "0"])
    reuse = calls[44:]
    assert [c[c.index("--epochs") + 1] for c in reuse[:4]] == ["1", "2", "4", "8"]
    assert all(c[c.index("--iterations") + 1] == "4" and c[c.index("--prompts") + 1] == "32" for c in reuse)
    assert "| sft_pos | 8 | 32 |" in (tmp_path / "runs" / "exp_reuse" / "table.md").read_text()
    for name in ("topr_stability_shortcut", "topr_stability_default", "topr_reuse_shortcut", "topr_composition"):
        assert (tmp_path / "figures" / f"{name}.png").stat().st_size > 1000


def test_verifier_experiment_reports_each_slice(tmp_path, monkeypatch):
    """verifier --tasks shortcut: one table per slice and both slices in the figure, from rows with the keys
    that eval.evaluate_verifier logs (computed here on 2 toy problems per slice, 16 candidates each)."""
    problems = [data.Problem(f"q{i}", "", "4", "conflict" if i % 2 else "normal") for i in range(4)]
    texts = [[" #### 4"] * 4 + [" #### 5"] * 12 if p.slice == "conflict" else [" #### 4"] * 16 for p in problems]
    p_yes = [[0.9] * 4 + [0.2] * 12 if p.slice == "conflict" else [0.7] * 16 for p in problems]
    res = {**ev.verifier_metrics(problems, texts, p_yes), **ev.by_slice(ev.verifier_metrics, problems, texts, p_yes)}
    calls = []
    parse = train_parser(monkeypatch)

    def run_train(argv):
        calls.append(argv)
        out = parse(argv).out  # train.main made the folder
        with open(os.path.join(out, "metrics.jsonl"), "w") as f:
            f.write(json.dumps({"iteration": 0, **{f"test_{k}": v for k, v in res.items()}}) + "\n")
        open(os.path.join(out, "ckpt.pt"), "w").close()
    monkeypatch.setattr(shared_runs, "run_train", run_train)
    os.makedirs(tmp_path / "runs" / "exp_onpolicy" / "base_shortcut")
    open(tmp_path / "runs" / "exp_onpolicy" / "base_shortcut" / "ckpt.pt", "w").close()
    experiments.main(["verifier", "--tasks", "shortcut", "--out", str(tmp_path / "runs"), "--figures", str(tmp_path)])
    assert len(calls) == 4 and all("--shortcut" in c and "verify" in c for c in calls)
    table = (tmp_path / "runs" / "exp_verifier_shortcut" / "table.md").read_text()
    # conflict slice: majority picks the wrong "5", best-of-16 by P(Yes) the right "4"; ECE = 1/4 * 0.1 (the
    # 0.9s, all right) + 3/4 * 0.2 (the 0.2s, all wrong) = 0.175; Brier = 1/4 * 0.1^2 + 3/4 * 0.2^2 = 0.0325
    assert "**shortcut task, conflict slice** (2 problems x 16 candidates)" in table
    assert "| untrained | 1.000 | 0.175 | 0.033 | 0.900 / 0.200 | 0.000 | 1.000 | 1.000 | 0.000 |" in table
    assert "**shortcut task, normal slice**" in table and (tmp_path / "topr_verifier_shortcut.png").stat().st_size > 1000


def test_errors_and_credit_on_a_tiny_policy(tmp_path, capsys):
    """experiments.py errors and credit read real checkpoints: a 20-step SFT model stands in for the shortcut
    base and one stability run. Every answer falls in exactly one class (the fractions sum to 1), and every
    completion character gets one token group (credit asserts it) with a log-probability <= 0."""
    base = tmp_path / "runs" / "exp_onpolicy" / "base_shortcut"
    train.main(["sft", "--shortcut", "--out", str(base), "--max-iters", "20", "--n-layer", "1", "--n-head", "2",
                "--n-embd", "32", "--batch-size", "16", "--sft-examples", "200", "--val-examples", "16",
                "--eval-problems", "4", "--eval-k", "2", "--warmup", "5", "--max-new-tokens", "8", "--eval-interval", "20"])
    run = tmp_path / "runs" / "exp_stability" / "shortcut_topr_s0"
    run.mkdir(parents=True)
    shutil.copy(base / "ckpt.pt", run / "ckpt.pt")
    experiments.main(["errors", "--out", str(tmp_path / "runs"), "--figures", str(tmp_path)])
    rows = [l for l in (tmp_path / "runs" / "exp_onpolicy" / "errors" / "table.md").read_text().splitlines()
            if l.startswith("| base") or l.startswith("| topr")]
    assert len(rows) % 2 == 0 and len(rows) >= 6  # 2 policies x (2 slices, split by whether the shortcut was possible)
    assert rows[:len(rows) // 2] == [r.replace("| topr (stability, seed 0) |", "| base |") for r in rows[len(rows) // 2:]]
    for r in rows:
        assert abs(sum(float(x) for x in r.split("|")[4:9]) - 1) < 0.003
    experiments.main(["credit", "--out", str(tmp_path / "runs"), "--figures", str(tmp_path)])
    rows = [l for l in (tmp_path / "runs" / "exp_stability" / "credit" / "table.md").read_text().splitlines()
            if l.startswith("| base") or l.startswith("| topr")]
    assert len(rows) == 2 and rows[0].split("|")[2:] == rows[1].split("|")[2:]  # the same weights, the same numbers
    assert all(float(x) <= 0 for x in rows[0].split("|")[2:-1])
    # what the prefix tree has to work with on this policy's first dataset: fractions, one row per slice
    stats = l_tokencredit.tree_stats("base", str(base), data.Task(shortcut=True))
    assert [r.split("|")[2].strip() for r in stats] == ["conflict", "normal"]
    assert all(0 <= float(x) <= 1 for r in stats for x in r.split("|")[3:6] if x.strip() != "nan")


def test_tree_stats_finds_the_operator_of_a_negative_that_writes_a_negative_result(monkeypatch):
    """tree_stats' last column: is a negative's most negative token its first operator? A completion whose step
    has a negative result (the shortcut 3-5=-2) is asked like any other (data.parse_step reads it). Faked: the
    policy's first dataset (two mixed groups, one negative kind each) and the tree's credit, all on the operator."""
    tok = data.get_tokenizer("byte")
    monkeypatch.setattr(ev, "load_gpt", lambda path, device: (None, tok, {}))
    texts = {0: " 3-5=-2. #### -2", 1: " 13-5=8. #### 8"}  # the negatives of group 0 and of group 1
    text = [(" 2+3=5. #### 5" if i % 8 == 0 else texts[i // 8]) if i < 16 else " 1+1=2. #### 2" for i in range(512)]
    reward = torch.tensor([1.0 if i < 16 and i % 8 == 0 else -1.0 for i in range(512)])
    batch = types.SimpleNamespace(text=text, reward=reward, completion=[tok.encode(t) for t in text])
    monkeypatch.setattr(train, "sample_solutions", lambda *a, **kw: batch)

    def credit(completion, reward, k):  # a negative's whole credit on its operator: " 3-" and " 13-"
        return [torch.zeros(len(c)).index_fill(0, torch.tensor([max(t.find("-", 2), 0)]), -1.0)
                for c, t in zip(completion, text)]
    monkeypatch.setattr(topr, "prefix_tree_advantages", credit)
    (row,) = l_tokencredit.tree_stats("fake", "nowhere", data.Task())
    assert row == "| fake | all | 0.97 | 1.00 | 1.00 |"  # 62 of 64 groups one reward; 14 negatives, all on "-"


def test_regime_onepass_and_tokencredit_commands_and_tables(tmp_path, monkeypatch):
    """regime, onepass and tokencredit: the train.py commands they run (bases, losses, --credit, the settings),
    the tables (the paired gain difference, the answers), the regime figure; run outputs faked."""
    calls = []
    monkeypatch.setattr(shared_runs, "run_train", fake_rl(calls, monkeypatch))
    for i, name in enumerate(k_regime.REGIME_BASES):  # the bases exist, with their own evaluation
        base = tmp_path / "runs" / "exp_regime" / f"base_{name}"
        base.mkdir(parents=True)
        (base / "ckpt.pt").touch()
        row = {"iter": 1200, "test_pass@1": 0.5, **{f"test_{sl}_{m}": 0.1 * i for sl in ("conflict", "normal")
                                                     for m in ("pass@1", "pass@8")}}
        (base / "metrics.jsonl").write_text(json.dumps(row) + "\n")
    where = ["--out", str(tmp_path / "runs"), "--figures", str(tmp_path / "figures"), "--seeds", "0", "1"]
    experiments.main(["regime", *where])
    assert len(calls) == len(k_regime.REGIME_BASES) * len(k_regime.REGIME_LOSSES) * 2
    assert all(c[c.index("--epochs") + 1] == str(k_regime.REGIME_EPOCHS) and "--eval-each-epoch" in c for c in calls)
    assert sum("--conflict-direction" in c for c in calls) == len(k_regime.REGIME_LOSSES) * 2  # the add base
    table = (tmp_path / "runs" / "exp_regime" / "table.md").read_text()
    # every loss ends like every other (the fake's rows depend on the seed only): gain differences 0, no s.e.
    assert "| both_c0.03 | 0.200 | 0.200 | 0.200 | 0.200 |" in table
    assert "| both_c0.01 | topr | 0.050 -> 0.060 -> 0.090 +- 0.050 | 0.050 -> 0.060 -> 0.090 +- 0.050 |" in table
    assert "| 0.000 +- 0.000 |" in table and "| 0.30 / 0.45 / 0.25 / 0.00 / 0.00 |" in table  # 3:1 possible:impossible
    assert (tmp_path / "figures" / "topr_regime.png").stat().st_size > 1000
    n = len(calls)
    experiments.main(["onepass", *where, "--skip-done"])  # only the one-pass runs are new
    assert len(calls) - n == len(k_regime.ONEPASS_BASES) * len(k_regime.ONEPASS_LOSSES) * 2
    assert all(c[c.index("--prompts") + 1] == str(64 * k_regime.REGIME_EPOCHS) and c[c.index("--epochs") + 1] == "1"
               for c in calls[n:])
    assert "| both_c0.03 | reinforce | one pass |" in (tmp_path / "runs" / "exp_regime" / "table_onepass.md").read_text()
    n = len(calls)
    tabled = []
    monkeypatch.setattr(l_tokencredit, "credit_table", lambda policies: tabled.append(policies) or ["| credit |"])
    monkeypatch.setattr(l_tokencredit, "tree_stats", lambda name, folder, task: [f"| {name} | tree |"])
    default = tmp_path / "runs" / "exp_onpolicy" / "base_default"
    default.mkdir(parents=True)
    (default / "ckpt.pt").touch()
    experiments.main(["tokencredit", *where, "--skip-done"])
    new = calls[n:]
    # first_error and prefix reused, prefix in one pass; then topr and topr_prefix on the default task
    assert len(new) == len(k_regime.ONEPASS_BASES) * 2 * 3 + 2 * 2
    assert sorted(c[c.index("--credit") + 1] for c in new if "--credit" in c) == ["first_error"] * 4 + ["prefix"] * 10
    assert [("--shortcut" in c, "--credit" in c) for c in new[-4:]] == [(False, False), (False, True)] * 2
    table = (tmp_path / "runs" / "exp_regime" / "table_tokencredit.md").read_text()
    assert "| both_c0.01 | topr_prefix | one pass |" in table and "| both_c0.03 | topr_first_error | reuse |" in table
    assert "| topr_prefix | 0.050 -> 0.090 +- 0.050 |" in table and "| default | tree |" in table
    assert [name for name, _ in tabled[0]] == ["base", "sft_pos (reuse)", "sft_pos (one pass)", "topr (reuse)",
                                               "topr (one pass)", "topr_first_error (reuse)", "topr_prefix (reuse)",
                                               "topr_prefix (one pass)"]


def test_each_command_lives_in_the_section_file_experiments_py_names():
    """experiments.py's table (NAME, RESULTS.md section, file of topr_experiments/): every command is listed, its
    function is in that file, and the file's docstring names the command, quotes a heading of RESULTS.md and
    names each section letter of the table's row."""
    rows = re.findall(r"^  (\w+) +(SFT|\([^)]*\)(?:, \([^)]*\))?) +(\w+\.py) ", experiments.__doc__, re.M)
    assert sorted(name for name, _, _ in rows) == sorted(experiments.EXPERIMENTS)
    with open(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "RESULTS.md")) as f:
        headings = [" ".join(h.split()) for h in re.findall(r"^#{2,4} (.+)$", f.read(), re.M)]
    for name, section, file in rows:
        function = experiments.EXPERIMENTS[name]
        assert function.__module__ == f"topr_experiments.{file[:-3]}", f"{name}: not in {file}"
        doc = " ".join(sys.modules[function.__module__].__doc__.split())
        assert doc.startswith("RESULTS.md ") and (f"`experiments.py {name}`" in doc or f"`{name}`" in doc), file
        assert any(h in doc for h in headings), f"{file}: quotes no heading of RESULTS.md"
        for letter in re.findall(r"[a-l]'?", section if section != "SFT" else ""):
            assert re.search(rf"\((?:[a-l]'?, )*{letter}[,)]", doc), f"{file}: section {letter} not named"


def test_rl_dataset_is_the_dataset_train_rl_samples(tmp_path, monkeypatch):
    """runs.rl_dataset (the rollout of gradnoise and tree_stats) is what `train.py rl --seed s` samples at each
    iteration: the same problems, the same sampling seed; recorded from a tiny real run (seed 3, 2 iterations)."""
    sampled, real = [], train.sample_solutions

    def record(policy, tok, problems, *a, seed, **kw):
        sampled.append(([p.question for p in problems], seed))
        return real(policy, tok, problems, *a, seed=seed, **kw)
    monkeypatch.setattr(train, "sample_solutions", record)
    sft = tmp_path / "sft"
    train.main(["sft", "--shortcut", "--out", str(sft), "--max-iters", "5", "--n-layer", "1", "--n-head", "2",
                "--n-embd", "32", "--batch-size", "8", "--sft-examples", "50", "--val-examples", "8", "--eval-problems",
                "2", "--eval-k", "1", "--warmup", "1", "--max-new-tokens", "8", "--eval-interval", "5"])
    sampled.clear()
    train.main(["rl", "--shortcut", "--init", str(sft / "ckpt.pt"), "--out", str(tmp_path / "rl"), "--seed", "3",
                "--iterations", "2", "--prompts", "4", "--k", "2", "--batch-size", "8", "--eval-problems", "2",
                "--eval-k", "1", "--max-new-tokens", "8"])
    assert len(sampled) == 2 and sampled[0] != sampled[1]
    policy, tok, _ = ev.load_gpt(str(sft / "ckpt.pt"), "cpu")
    for itr in (0, 1):
        problems, batch = shared_runs.rl_dataset(policy, tok, shared_runs.task_flags("shortcut"), 4, k=2,
                                                 max_new_tokens=8, seed=3, iteration=itr)
        assert sampled[-1] == sampled[itr] and len(batch) == 4 * 2


def test_replicates_and_peff_take_the_base_as_the_unit(tmp_path, monkeypatch):
    """replicates and peff: every SFT seed of every recipe is a base (trained as `train.py sft --seed`), topr and
    sft_pos from each in both settings, topr at the c that gives each p_eff from the run's own dataset; the
    tables' gaps are means over RL seeds per base, then t-intervals over the bases. Faked runs: topr's conflict
    gain is 0.05 (SFT seed + 1) + 0.01 RL seed, sft_pos' is 0, so a recipe's gap over its 3 bases is
    0.105 [0.105 -+ t(0.975, 2) x 0.05 / sqrt(3)] = +0.105 [-0.019, +0.229]."""
    calls, parse = [], train_parser(monkeypatch)

    def run_train(argv):
        calls.append(argv)
        args = parse(argv)
        sft_seed = int(re.search(r"_sft(\d)", args.init).group(1)) if "_sft" in args.init else 0
        gain = 0.05 * (sft_seed + 1) + 0.01 * args.seed if args.loss == "topr" else 0.0
        rows = [{"iteration": 0, "dataset_pos_frac": 0.25, "frac_reward_zero_std_conflict": 0.5}]
        rows += [{"step": 32 * i, "test_pass@1": 0.5, "test_conflict_pass@1": 0.1 + gain * i,
                  "test_normal_pass@1": 0.9 - (0.1 * (sft_seed + 1) if args.loss == "topr" else 0.0) * i} for i in (0, 1)]
        with open(os.path.join(args.out, "metrics.jsonl"), "w") as f:
            f.write("".join(json.dumps(r) + "\n" for r in rows))
        open(os.path.join(args.out, "ckpt.pt"), "w").close()
    monkeypatch.setattr(shared_runs, "run_train", run_train)
    for name in k_replicates.REPLICATE_BASES:
        for s in k_replicates.BASE_SEEDS:  # the bases exist, with their own evaluation
            base = tmp_path / "runs" / "exp_regime" / f"base_{k_regime.base_label(name, s)}"
            base.mkdir(parents=True)
            (base / "ckpt.pt").touch()
            row = {"test_pass@1": 0.5, **{f"test_{k}": 0.1 * s for k in ("conflict_pass@1", "conflict_pass@8", "normal_pass@1")}}
            (base / "metrics.jsonl").write_text(json.dumps(row) + "\n")
    where = ["--out", str(tmp_path / "runs"), "--figures", str(tmp_path / "figures"), "--seeds", "0", "1"]
    experiments.main(["replicates", *where])
    assert len(calls) == 3 * 3 * 2 * 2 * 2
    assert {c[c.index("--init") + 1].split("exp_regime")[1] for c in calls} == {
        os.path.join(os.sep + f"base_{k_regime.base_label(n, s)}", "ckpt.pt") for n in k_replicates.REPLICATE_BASES
        for s in (0, 1, 2)}
    table = (tmp_path / "runs" / "exp_regime" / "table_replicates.md").read_text()
    assert "| both_c0.03 | 2 | 0.200 | 0.200 | 0.200 | 0.250 | 0.50 |" in table  # the base's own point
    assert "| both_c0.01 | 1 | 0.100 | +0.105 [+0.041, +0.169] | -0.200 [-0.200, -0.200] |" in table  # t(0.975, 1) x 0.005
    # the price, topr's normal drop 0.1 (SFT seed + 1): -0.2 -+ t(0.975, 2) x 0.1 / sqrt(3); over 9 bases t(0.975, 8)
    assert "| reuse | add_c0.03 | 3 | +0.105 [-0.019, +0.229] | -0.200 [-0.448, +0.048] |" in table
    assert "| onepass | all | 9 | +0.105 [+0.072, +0.138] | -0.200 [-0.267, -0.133] |" in table
    assert (tmp_path / "figures" / "topr_replicates.png").stat().st_size > 1000
    n = len(calls)
    experiments.main(["peff", *where, "--skip-done"])
    new = calls[n:]
    assert len(new) == 3 * 3 * 2 * 2 and all(c[c.index("--loss") + 1] == "topr" for c in new)
    # p = 0.25: c = (p - p_eff) / (p + p_eff - 2 p p_eff) = 0.05 / 0.35 for 0.2, -0.25 / 0.5 for 0.5
    assert sorted({c[c.index("--baseline") + 1] for c in new}) == ["-0.5000", "0.1429"]
    table = (tmp_path / "runs" / "exp_regime" / "table_peff.md").read_text()
    assert "| both_c0.01 | 0 | 0.000 | 0.250 | +0.00 / +0.055 [-0.009, +0.119] / -0.100 [-0.100, -0.100] |" in table
    # the price falls with pass@8 (0.1 x SFT seed) exactly; the positive share and single groups are constant
    assert "| c = 0 | -1.00 | +nan | +nan |" in table and "| 0.5 | -1.00 | +nan | +nan |" in table
    with pytest.raises(SystemExit):
        experiments.main(["regime", *where, "--base-seeds", "1"])  # another command refuses --base-seeds
