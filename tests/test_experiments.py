"""experiments.py's on-policy report: the table's means and standard errors over seeds, per slice, and the
figure, from metrics.jsonl files written here (the runs themselves take CPU-hours)."""
import json
import math
import types

import experiments


def test_onpolicy_report_table_and_figure(tmp_path):
    out, figures = tmp_path / "runs", tmp_path / "figures"
    figures.mkdir()
    args = types.SimpleNamespace(out=str(out), figures=str(figures), tasks=["default", "shortcut"], seeds=[0, 1, 2],
                                 iterations=4, lr=1e-4)
    runs = {}
    methods = list(experiments.ONPOLICY_METHODS) + ["sft_more"]
    for task in args.tasks:
        for m in methods:
            for s in args.seeds:
                folder = out / "exp_onpolicy" / f"{task}_{m}_s{s}"
                folder.mkdir(parents=True)
                rows = [{"samples": n, **{f"test_{sl}{k}": 0.1 * s + 0.01 * i for k in ("pass@1", "greedy", "pass@8")
                                          for sl in ("", "normal_", "conflict_")}} for i, n in enumerate((0, 512, 1024))]
                rows.insert(1, {"step": 1, "entropy": 0.5 + s})
                (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
                runs[task, m, s] = experiments.evals(str(folder))
    experiments.onpolicy_report(args, runs)
    table = (out / "exp_onpolicy" / "table.md").read_text()
    # end values 0.02, 0.12, 0.22 over seeds: mean 0.12, s.e. 0.1 / sqrt(3); start 0.1 on average
    se = 0.1 / math.sqrt(3)
    assert f"0.100 -> 0.120 +- {se:.3f}" in table
    assert "| method | pass@1 | greedy | pass@8 | entropy (end) |" in table  # the default task: no slices
    assert "| method | normal_pass@1 | normal_greedy | normal_pass@8 | conflict_pass@1 |" in table
    assert "| reinforce |" in table and "| sft_more |" in table and "| 1.500 |" in table  # entropy: mean of 0.5, 1.5, 2.5
    assert (figures / "topr_onpolicy.png").stat().st_size > 1000
