"""
eval.py -- evaluation and figures.

  python eval.py gpt --ckpt runs/sft/ckpt.pt      GPT accuracy: pass@1, maj@k, pass@k, invalid rate, greedy
  python eval.py compare runs/a runs/b ...        one figure comparing RL runs (metrics.jsonl)
  python eval.py gsn --ckpt runs/gsn/ckpt.pt      GSN: Parzen log-likelihood, chain and inpainting figures
"""
import argparse
import sys

from data import DataError

# =============================================================================
# GPT evaluation (eval.py gpt) and run comparison (eval.py compare)
# =============================================================================

# (gpt half goes here)

# =============================================================================
# GSN evaluation (eval.py gsn) -- owned by the GSN work
# =============================================================================

# (gsn half goes here)

# =============================================================================

def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    for name, obj in list(globals().items()):
        if name.startswith("add_") and name.endswith("_parser"):
            obj(sub)  # each section registers its subcommand and sets func=
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (DataError, ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
