"""Reference solution of exercise 13 (see exercises/ex13_weighted_vote.py)."""


def weighted_majority_vote(answers, weights):
    totals = {}  # insertion-ordered: max() returns the first answer among equal totals
    for a, w in zip(answers, weights):
        if a is not None:
            totals[a] = totals.get(a, 0.0) + w
    return max(totals, key=totals.get) if totals else None


def best_of(answers, weights):
    return answers[max(range(len(answers)), key=lambda i: weights[i])]
