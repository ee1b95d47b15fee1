"""Exercise 17 -- the SFT loss mask: which tokens of "prompt + completion" supervised fine-tuning learns
(train.py sft: sft_batch, and the cross-entropy with ignore_index=-1 after it).

An example is (prompt ids, completion ids ending in EOS) (data.encode_example): the prompt is the question,
"Q: ...\\nA:", the completion the worked solution, " 7-4=3. 3+9=12. #### 12" + EOS. SFT maximises
log pi(completion | prompt) = sum of the completion tokens' log-probs: the model is trained to ANSWER, not
to write questions. Next-token prediction over a row s = prompt + completion of length n reads inputs
x = s[:-1] and targets y = s[1:], position t predicting s[t+1]; the targets that are not completion tokens
are set to -1, which F.cross_entropy(..., ignore_index=-1) skips.

PREDICT before you code (write your answers down):
  (a) A prompt of P tokens and a completion of C tokens (EOS included): how many targets count? Which
      input position predicts the first completion token? Is EOS ever an input?
  (b) In this task a prompt has about 100 byte tokens and a completion about 20. If the prompt's tokens
      were counted too, what share of the loss would be spent on them, and what would the model learn?
  (c) train.py sft divides the batch's summed loss by the number of counted targets in the batch. Does a
      long solution weigh more than a short one? What is a row's summed loss in terms of log pi(y|x)?
  (d) Padding fills x after a short row's end. Why can those pads stay in x (only y marks them), and why
      is the ignored target -1 and not the pad id?
Then implement sft_batch and check with
    EXERCISE_TARGET=student .venv/bin/python -m pytest -q tests/test_exercises.py -k ex17
"""
import torch


def sft_batch(examples, pad_id):
    """Right-padded inputs and targets for next-token prediction, the loss on completion tokens only.

        s_r  = prompt_r + completion_r                        (length n_r)
        T    = max_r n_r - 1
        x[r] = s_r[:-1], then pad_id up to T                  (B, T) long
        y[r, t] = s_r[t + 1] if s_r[t + 1] is a completion token, else -1      (B, T) long (-1 on pads too)

    examples: a list of B (prompt ids, completion ids) pairs of ints. returns (x, y).
    """
    raise NotImplementedError("ex17: the first counted target sits at position len(prompt) - 1 (the "
                              "prompt's last token predicts the completion's first): y[r, P - 1:n - 1] = s[P:]")
