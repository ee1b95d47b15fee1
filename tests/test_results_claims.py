"""RESULTS.md's error bars: every "mean +- s.e. [lo, hi]" is the t-based 95% interval of that mean and s.e. for
some number of runs (common.t_quantile, df = n - 1), and the claims table the README points to is there, each
row with a status of the one rule (common.verdict)."""
import os
import re

import common

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = open(os.path.join(ROOT, "RESULTS.md")).read()
README = open(os.path.join(ROOT, "README.md")).read()
NUM = r"[+-]?\d+(?:\.\d+)?"
INTERVAL = re.compile(rf"(?<![\w.])({NUM}) \+- ({NUM}) \[({NUM}), ({NUM})\]")
T = [common.t_quantile(0.975, df) for df in range(1, 10)]  # 2 to 10 runs


def decimals(s):
    return len(s.split(".")[1]) if "." in s else 0


def test_every_interval_is_a_t_interval_of_its_mean_and_se():
    found = INTERVAL.findall(" ".join(RESULTS.split()))
    assert len(found) > 100
    for mean, se, lo, hi in found:
        m, e, a, b = map(float, (mean, se, lo, hi))
        tol = 1.01 * 10 ** -decimals(lo)  # both the mean and the s.e. were printed rounded
        assert any(abs(a - (m - t * e)) <= tol * (1 + t) and abs(b - (m + t * e)) <= tol * (1 + t) for t in T), \
            f"{mean} +- {se} [{lo}, {hi}] is not mean +- t x s.e. for 2 to 10 runs"


def test_the_claims_table_is_there_and_uses_the_rule():
    assert "RESULTS.md#claims-at-a-glance" in README
    section = RESULTS.split("## Claims at a glance", 1)[1].split("\n## ", 1)[0]
    rows = [r for r in section.splitlines() if r.startswith("| ") and not r.startswith("| claim")]
    assert len(rows) >= 10
    for row in rows:
        status = row.split("|")[2]
        assert re.search(r"holds|does not hold|within noise|hypothesis", status), row
