"""The README's first command, in miniature: demo.py --quick runs every stage and writes its figures."""
import os

import demo


def test_quick_demo_runs_end_to_end(tmp_path):
    summary = demo.main(["--quick", "--out", str(tmp_path)])
    assert os.path.isfile(tmp_path / "rl.png")
    assert os.path.isfile(tmp_path / "sft" / "ckpt.pt")
    assert {s["run"] for s in summary["rl"]} == {"topr", "reinforce", "sft_pos"}
    # the shortcut task: every run reports both test slices
    assert all("conflict_pass@1 end" in s and "normal_pass@1 end" in s for s in summary["rl"])
    assert "test_conflict_pass@1" not in summary["sft"] and "conflict_pass@1" in summary["sft"]
    assert os.path.isfile(summary["gsn"]["chains"]) and os.path.isfile(summary["gsn"]["inpainting"])
    assert [v["unit"] for v in summary["gsn"]["verdicts"]] == ["chains (one training seed)"]
