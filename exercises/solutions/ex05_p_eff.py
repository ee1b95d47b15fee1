"""Solution to exercise 5 -- p_eff and its inverse."""


def effective_pos_fraction(p, c):
    """p_eff = p (1 - c) / (1 + c (1 - 2p))."""
    return p * (1 - c) / (p * (1 - c) + (1 - p) * (1 + c))


def baseline_for_pos_fraction(p, p_eff):
    """c = (p - p_eff) / (p + p_eff - 2 p p_eff)."""
    return (p - p_eff) / (p + p_eff - 2 * p * p_eff)
