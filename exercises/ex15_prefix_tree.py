"""Exercise 15 -- token-level credit from the group's own samples (topr.py: prefix_tree_advantages).

k completions of one prompt form a tree of shared prefixes. The value of a prefix is the mean reward of the
samples that pass through it (the empty prefix: the group's mean); token t of a sample gets the value after
it minus the value before it.
Check: EXERCISE_TARGET=student .venv/bin/python -m pytest -q tests/test_exercises.py -k ex15
"""


def prefix_tree_advantages(completions, rewards, group_size):
    """completions: list of N token-id lists, grouped by prompt in consecutive runs of group_size;
    rewards: list of N floats. Returns a list of N lists of floats, one advantage per token:
        A_t = V(y_<=t) - V(y_<t),   V(prefix) = mean reward of the group's samples that start with prefix.
    Groups never share values."""
    raise NotImplementedError("ex15: per group, sum and count the rewards of every prefix (a dict keyed by "
                              "tuple(prefix)), then take differences of means along each sample")
