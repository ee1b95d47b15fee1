"""
bench.py -- speed benchmarks. Ratios are measured side by side in one process, as medians of
interleaved repetitions (the machine is shared and noisy; absolute numbers drift, ratios much less).

  python bench.py gpt     KV-cached generation vs full recomputation; training tokens/s
  python bench.py rl      RL rollout and update tokens/s, and where the time goes
  python bench.py gsn     GSN training images/s and matmul FLOP/s vs this machine's matmul peak
  python bench.py all
Each section runs at 1 and at 2 threads (--threads 1 2).
"""
import argparse
import statistics
import time

import torch


def median_time(fn, reps):
    """Median wall time of fn() over reps calls."""
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


# =============================================================================
# GPT: KV cache vs recomputation, training throughput (bench.py gpt)
# =============================================================================

# (gpt half goes here)

# =============================================================================
# RL throughput (bench.py rl)
# =============================================================================

# (rl half goes here)

# =============================================================================
# GSN (bench.py gsn) -- owned by the GSN work; defines bench_gsn(threads, args)
# =============================================================================

# (gsn half goes here)

# =============================================================================

def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["gpt", "rl", "gsn", "all"], nargs="?", default="all")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args(argv)
    benches = {name[len("bench_"):]: fn for name, fn in globals().items() if name.startswith("bench_")}
    for what in (["gpt", "rl", "gsn"] if args.what == "all" else [args.what]):
        if what not in benches:
            print(f"[{what}] not implemented yet")
            continue
        for t in args.threads:
            torch.set_num_threads(t)
            print(f"===== {what}, {t} thread(s) =====", flush=True)
            benches[what](t, args)


if __name__ == "__main__":
    main()
