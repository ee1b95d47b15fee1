"""The README's first command, in miniature: demo.py --quick runs every stage and writes its figures."""
import os

import demo



def test_quick_demo_runs_end_to_end(tmp_path):
    summary = demo.main(["--quick", "--out", str(tmp_path)])
    assert os.path.isfile(tmp_path / "topr_vs_reinforce.png")
    assert os.path.isfile(tmp_path / "sft" / "ckpt.pt")
    assert {s["run"] for s in summary["rl"]} == {"topr", "reinforce"}
    assert os.path.isfile(summary["gsn"]["samples"]) and os.path.isfile(summary["gsn"]["inpainting"])
