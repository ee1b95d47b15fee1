"""The README's first command, in miniature: demo.py --quick runs every stage, writes its figures, records
its environment and ends with a verdict table (its structure is checked here, not its values)."""
import json
import os

import torch

import common
import demo

VERDICTS = {"holds", "does not hold", "within noise"}


def test_quick_demo_runs_end_to_end(tmp_path, capsys):
    summary = demo.main(["--quick", "--out", str(tmp_path)])
    assert os.path.isfile(tmp_path / "rl.png") and os.path.isfile(tmp_path / "sft" / "ckpt.pt")
    assert summary["env"] == common.environment(torch.device("cpu"))
    # every run's first metrics line is its environment
    for run in ["sft", "rl_topr_seed0", "rl_sft_pos_seed2", "rl_reinforce_seed0"]:
        assert json.loads(open(tmp_path / run / "metrics.jsonl").readline())["env"]["threads"] == torch.get_num_threads()
    assert not os.path.exists(tmp_path / "rl_reinforce_seed1")  # reinforce runs once
    assert "in_band" in summary["sft"] and "conflict_pass@1" in summary["sft"]
    table = summary["verdicts"]
    assert len(table) >= 4 and {r["verdict"] for r in table} <= VERDICTS
    for r in table:
        assert r["half"] >= 0 and r["n"] >= 2 and r["claim"] and r["unit"]
        sign = -1 if "loses" in r["claim"] or "pays" in r["claim"] else 1
        assert r["verdict"] == common.verdict(r["value"], r["half"], sign)
    assert json.load(open(tmp_path / "summary.json"))["verdicts"] == json.loads(json.dumps(table))
    out = capsys.readouterr().out
    assert "environment:" in out and all(r["claim"] in out for r in table)
    assert set(summary["seconds"]) == {"sft", "rl", "gsn"}
    assert os.path.isfile(summary["gsn"]["chains"]) and os.path.isfile(summary["gsn"]["inpainting"])
    assert [v["unit"] for v in summary["gsn"]["verdicts"]] == ["chains (one training seed)"]
    assert table[-1] == summary["gsn"]["verdicts"][0] and len(table) == 5


def test_gpt_verdicts_pair_topr_and_sft_pos_by_seed(tmp_path):
    """The verdict rows from hand-written evaluation logs: the paired differences and their t-interval."""
    def log(name, conflict, normal, n=400):
        os.makedirs(tmp_path / name)
        rows = [{"env": {}}] + [{"step": 4 * i, "test_pass@1": 0.5, "test_n": n, "test_conflict_pass@1": c,
                                 "test_normal_pass@1": m} for i, (c, m) in enumerate(zip(conflict, normal))]
        open(tmp_path / name / "metrics.jsonl", "w").write("".join(json.dumps(r) + "\n" for r in rows))
        return str(tmp_path / name)

    runs = {"topr": {s: log(f"t{s}", [0.4, 0.6 + s / 100], [0.9, 0.9]) for s in demo.RL_SEEDS},
            "sft_pos": {s: log(f"s{s}", [0.4, 0.5], [0.9, 0.92 - s / 100]) for s in demo.RL_SEEDS},
            "reinforce": {0: log("r0", [0.4, 0.4], [0.9, 0.3])}}
    table = demo.gpt_verdicts(demo.read_evals(runs))
    gain, gap, price, collapse = table
    assert abs(gain["value"] - 0.21) < 1e-9 and gain["verdict"] == "holds"
    assert abs(gap["value"] - 0.11) < 1e-9 and abs(gap["half"] - 4.303 * 0.01 / 3 ** 0.5) < 1e-3
    assert abs(price["value"] - (-0.01)) < 1e-9 and price["verdict"] == "within noise"  # [-0.035, 0.015]
    assert abs(collapse["value"] + 0.6) < 1e-9 and collapse["n"] == 200 and collapse["verdict"] == "holds"
    assert abs(collapse["half"] - 1.96 * ((0.09 + 0.21) / 200) ** 0.5) < 1e-9
