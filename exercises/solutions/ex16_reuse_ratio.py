"""Exercise 16, a solution: log mu once, by the frozen policy, with the updates' own forward and minibatches."""
import torch


def completion_logp(model, tokens, compl_mask):
    logits, _ = model(tokens[:, :-1])
    lp = torch.log_softmax(logits.float(), -1).gather(2, tokens[:, 1:, None]).squeeze(2)
    return torch.where(compl_mask[:, 1:], lp, torch.zeros_like(lp)).sum(1)


def reuse_ratios(model, tokens, compl_mask, epochs, batch_size, update):
    B = len(tokens)
    steps = [torch.arange(s, min(s + batch_size, B)) for s in range(0, B, batch_size)]
    log_mu = torch.zeros(B)
    with torch.no_grad():
        for rows in steps:
            log_mu[rows] = completion_logp(model, tokens[rows], compl_mask[rows]).float()
    rhos = []
    for _ in range(epochs):
        for rows in steps:
            logp = completion_logp(model, tokens[rows], compl_mask[rows])
            rhos.append(torch.exp(logp.detach().float() - log_mu[rows]))
            update(rows, logp, log_mu[rows])
    return log_mu, rhos
