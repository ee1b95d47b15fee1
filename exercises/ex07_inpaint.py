"""Exercise 7 -- inpainting: sample the missing pixels with the observed ones clamped (gsn.py: inpaint).

Check: EXERCISE_TARGET=student .venv/bin/python -m pytest -q tests/test_exercises.py -k ex07
"""
import torch


@torch.no_grad()
def inpaint(model, images, mask, n_steps):
    """Run the chain conditioned on the observed pixels (mask True), which are clamped after EVERY step.

        v_0  = images where mask else U(0, 1) noise             free pixels start as uniform noise
        hs   = model.init_state(v_0)
        record v_0
        for t = 1..n_steps:
            p_t    = sigmoid(model.step(hs))                    the chain's mean P(X | H) (step updates hs)
            hs[0]  = images where mask else hs[0]               clamp the visible the chain feeds back
            record   images where mask else p_t                 clamp the recorded mean too
    Hidden layers (hs[1:]) are never clamped.

    model: a gsn.GSN; images: (n, D) in [0, 1]; mask: (n, D) or (D,) bool; n_steps: int.
    returns (n_steps + 1, n, D) float: the start, then one clamped mean per step.
    Draw the U(0, 1) noise with torch.rand_like(images) BEFORE any step (the test compares with
    gsn.inpaint under one seed).
    """
    raise NotImplementedError("ex07: m = mask.expand_as(images); use torch.where(m, images, ...) for "
                              "the start, the fed-back visible hs[0] and the recorded mean")
