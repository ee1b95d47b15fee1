"""Exercise 18 -- one step of the GSN trainer (gsn.py: train), around the walkback loss of exercise 6.

Exercise 6 is the loss: corrupt x, run the chain N steps, add up the N reconstructions' BCE against the clean
x (GSN.forward). The trainer around it decides WHAT the loss sees and what a step does with it, as the
authors' code [C] does:
    the data    the training set is shuffled ONCE with a fixed seed; an epoch is len // B sequential
                minibatches of it (the rest of the rows is never read); inputs and targets are grey or
                binarised (x > 0.5) as the run's `binarize` says ([C]'s DAE trains on binarised digits)
    the lr      [C]'s SGD multiplies it by lr_decay once per epoch
    the step    the walkback loss of the minibatch, backward, the optimizer step; a step whose gradients
                are not finite is not applied (its gradients become 0; its loss is reported as nan)

PREDICT before you code (write your answers down):
  (a) 1000 training images, batch 100, [C]'s SGD (lr 0.25, x 0.995 per epoch): which images does step 2537
      train on (0-based, in the shuffled order), and at which lr?
  (b) Why does the trainer compute the lr from the step number, lr * decay ** epoch, rather than multiply
      it by 0.995 at the end of each epoch?
  (c) Why is a non-finite step handled with masked_fill on the device rather than
      `if not torch.isfinite(norm): skip`? And what would applying it do to the next step's forward?
  (d) The guard zeroes the gradients. With SGD without momentum the weights do not move. Under Adam,
      after a few good steps, do they?
Then implement both functions and check with
    EXERCISE_TARGET=student .venv/bin/python -m pytest -q tests/test_exercises.py -k ex18
"""
import torch


def training_pairs(X, binarize):
    """(inputs, targets) of the whole (shuffled) training set X (n, D) in [0, 1], binary = (X > 0.5).float():

        "none"      X,       X           grey inputs, real-valued targets (the GSN, as [C])
        "targets"   X,       binary      grey inputs, binary targets
        "both"      binary,  binary      binarised digits in and out ([C]'s DAE)
    """
    raise NotImplementedError("ex18: binary = (X > 0.5).float(); three cases")


def train_step(model, opt, inputs, targets, step, cfg):
    """Step number `step` (0-based) of the trainer, in place on model and opt:

        B = cfg.batch_size; per_epoch = len(inputs) // B
        epoch, i = divmod(step, per_epoch)
        every param group's lr = cfg.lr * cfg.lr_decay ** epoch
        x, target = rows i*B .. (i+1)*B of inputs and targets
        loss = the walkback loss of x against target over cfg.walkbacks chain steps (exercise 6; gsn.GSN's
               forward returns it first: model(x, cfg.walkbacks, target=target)[0])
        zero the gradients, backward
        bad = the total gradient norm (torch.nn.utils.get_total_norm of the grads) is not finite, a tensor:
              every gradient is set to 0 where bad (masked_fill_), the loss to nan -- with no `if` on a
              tensor, .item() or float(): those make the host wait for the device at every step
        opt.step()

    model: a gsn.GSN; opt: its optimizer; inputs, targets: (n, D) from training_pairs; cfg: a gsn.GSNConfig
    (batch_size, walkbacks, lr, lr_decay are read). returns the loss (a scalar tensor, detached; nan if bad).
    Call the random functions as GSN.forward does, and nothing else random (the test replays gsn.train).
    """
    raise NotImplementedError("ex18: grads = [p.grad for p in model.parameters() if p.grad is not None]; "
                              "bad = ~torch.isfinite(torch.nn.utils.get_total_norm(grads))")
