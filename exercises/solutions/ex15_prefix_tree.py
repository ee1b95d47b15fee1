"""Exercise 15, a solution: token-level credit from the group's prefix tree."""


def prefix_tree_advantages(completions, rewards, group_size):
    out = []
    for g in range(0, len(completions), group_size):
        total, count = {}, {}
        for seq, r in zip(completions[g:g + group_size], rewards[g:g + group_size]):
            for t in range(len(seq) + 1):  # every prefix of the sample, the empty one included
                p = tuple(seq[:t])
                total[p], count[p] = total.get(p, 0.0) + r, count.get(p, 0) + 1
        value = lambda p: total[p] / count[p]
        out += [[value(tuple(s[:t + 1])) - value(tuple(s[:t])) for t in range(len(s))]
                for s in completions[g:g + group_size]]
    return out
