"""RESULTS.md "SFT: the base policy", What "held-out" means here (`experiments.py overlap`): how often a held-out
test problem's worked solution is also a training problem's. No model; seconds."""
import dataclasses
import os

import data
from topr_experiments.runs import ONPOLICY_EVAL, task_flags, write_table


def exp_overlap(args):
    """How often a held-out test problem's worked solution is also a training problem's. The splits' question
    texts are disjoint (data._question_split), but a test question can be a training question with other names,
    items, phrasings and pronouns, and the same numbers and operations: the same solution string. Training
    problems: those of the task's SFT base (train.py sft: --sft-examples 20,000 of --seed, the base's conflict
    fraction); test problems: its held-out evaluation's (ONPOLICY_EVAL of them, --seed). No model; seconds."""
    out = os.path.join(args.out, "exp_overlap")
    os.makedirs(out, exist_ok=True)
    lines = ["| task | slice | test problems | solution also a training solution | distinct training solutions |",
             "|---|---|---|---|---|"]
    for task in args.tasks:
        flags = task_flags(task)
        sft_task = dataclasses.replace(flags, sft_conflict_frac=data.CALIBRATED_SFT_CONFLICT_FRAC)  # the base's
        train_problems = sft_task.problems(20000, args.seed, "train", use="sft")
        test = flags.problems(int(ONPOLICY_EVAL[task]), args.seed, "test")
        seen = {p.solution for p in train_problems}
        for sl in (["normal", "conflict"] if task == "shortcut" else ["all"]):
            chosen = [p for p in test if sl in ("all", p.slice)]
            shared = sum(p.solution in seen for p in chosen)
            lines.append(f"| {task} | {sl} | {len(chosen)} | {shared} ({shared / len(chosen):.1%}) | {len(seen)} |")
    write_table(out, lines + [f"\n20,000 training problems (seed {args.seed}) vs the held-out test problems "
                              f"(seed {args.seed}); `python experiments.py overlap`"])
