"""Exercise 16 -- why rho = pi / mu is EXACTLY 1 on the first on-policy step, and what reusing a dataset does
to it (train.py rl, step 3 of its loop: log mu recomputed by the frozen policy before the first update).

TOPR weighs each sample by its sequence ratio rho = pi(y|x) / mu(y|x) = exp(log pi - log mu), where mu is the
policy that sampled the dataset. One generated dataset is trained on for several epochs of minibatch steps:
    log mu  = log pi_theta0(y|x) of every row, by the FROZEN policy, before any update
    step s: log pi = log pi_theta_s(y|x) of this minibatch's rows (with grad); rho = exp(log pi - log mu)
The first step has theta_s = theta0, so rho = 1 -- in exact arithmetic. In floats it is 1 to the last bit only
if log mu and log pi are the SAME computation: one function, the same rows in the same minibatches (on a GPU
the kernels depend on the batch's shape), the same precision, the same model mode (eval: dropout off).

PREDICT before you code (write your answers down):
  (a) 2 epochs of 2 minibatches each over one dataset: at which of the 4 steps is every rho exactly 1?
  (b) Generate returns its own log-probs of the tokens it sampled (summed, untempered: log mu itself).
      Why does train.py rl NOT use them as log mu, and compute log mu again with the training forward?
  (c) Negatives that the updates have already pushed down: rho < 1 or > 1 at the next epoch? What weight
      does TOPR give them then, and what weight does naive REINFORCE give them?
  (d) What goes wrong if log mu is recomputed at the start of EVERY epoch instead of once?
Then implement both functions and check with
    EXERCISE_TARGET=student .venv/bin/python -m pytest -q tests/test_exercises.py -k ex16
"""
import torch


def completion_logp(model, tokens, compl_mask):
    """log pi(y|x): the summed log-probs of each row's completion tokens, (B,), in ONE forward pass.

        logits   = model(tokens[:, :-1])[0]                          (B, T-1, vocab): position t predicts t+1
        logp_t   = log_softmax(logits)[t - 1, tokens[t]]             for t = 1 .. T-1
        log pi   = sum over t with compl_mask[t] of logp_t           (token 0 is never a completion token)

    model: a model.GPT; tokens: (B, T) long, prompt + completion right-padded (model.pack's layout);
    compl_mask: (B, T) bool, True on the completion's tokens. Gradients flow (the caller adds no_grad).
    """
    raise NotImplementedError("ex16: lp = torch.log_softmax(logits.float(), -1).gather(2, tokens[:, 1:, None])"
                              ".squeeze(2); sum lp where compl_mask[:, 1:] is True")


def reuse_ratios(model, tokens, compl_mask, epochs, batch_size, update):
    """The ratios rho that `epochs` passes of minibatch updates over ONE stored dataset see:

        with no grad, before any update, minibatch by minibatch as the first epoch will read them:
            log_mu[rows] = completion_logp(model, tokens[rows], compl_mask[rows])
        for each epoch, for each minibatch rows = torch.arange(s, min(s + batch_size, B)), s = 0, batch_size, ...:
            logp = completion_logp(model, tokens[rows], compl_mask[rows])         with grad
            rho  = exp(logp - log_mu[rows]), detached                             record it
            update(rows, logp, log_mu[rows])                                      the caller's loss + optimizer step

    Rows in their stored order in every epoch (train.py rl shuffles each epoch; that changes nothing here).
    Leave the model's mode as the caller set it (eval: dropout off).
    returns (log_mu (B,) detached, [rho of step 1, rho of step 2, ...], each (len(rows),)).
    """
    raise NotImplementedError("ex16: compute log_mu under torch.no_grad() before the loop, with the same "
                              "minibatches; the ratio of each step uses that log_mu, never a fresh one")
