"""
model.py -- a nanoGPT-compatible GPT with KV-cached sampling, in the shape of nanochat's gpt.py:
ONE forward pass serves training, prefill and decode (an edit to MLP or attention reaches all three).

Read in this order (the file's order):
  1. GPTConfig                                      -- the model's size (and its vocabulary's padding: VOCAB_PAD).
  2. KVCache                                        -- per-layer K and V tensors, preallocated.
  3. LayerNorm, _dropout, CausalSelfAttention, MLP, Block  -- nanoGPT's modules, same parameter names,
     so a nanoGPT state_dict loads with strict=True; attention reads and writes the optional KV cache.
  4. GPT: forward, new_cache, generate              -- ONE forward for training, prefill and decode;
     generate prefills the prompts once (forward with a cache), copies the cache to num_samples rows,
     then decodes one token at a time: the same forward, one token per row, reading K/V of the past
     from the cache (DONE_CHECK_EVERY: how often it asks whether every row is done).
  5. the helpers of forward and generate:
     left_pad, completion_mask, attention_mask      padding and masks
     _filter_logits, exponential_race, sample_next  top-k / top-p truncation and drawing the next token
  6. pack, sequence_logprobs, verdict_logp(_at), entropy -- the same per-token log-probs of given completions
     in one forward pass (what the RL loss differentiates), the verifier's log pi(Yes | x), log pi(No | x),
     and the policy's entropy.
  7. GPT.from_pretrained(folder)                    -- GPT-2's weights in the Hugging Face layout, or a nanoGPT
     checkpoint, from a folder the user supplies (nothing is downloaded): pretrained.py reads the files,
     from_pretrained builds the GPT of their config and loads them.

Padding convention: prompts of different lengths are LEFT-padded (right-aligned), so that every
row writes its next token into the same cache slot. A boolean `pad_mask` (True = real token) tells
attention to ignore the pads, and a token's position id is the number of real tokens before it, so
it does not depend on how much padding sits in front of it.

Imports torch only (and pretrained.py, torch only too, which reads weight files).
"""
import math
import os
from dataclasses import dataclass

import torch
import torch.nn as nn
from torch.nn import functional as F

from pretrained import PRETRAINED_FILES, read_weights


@dataclass
class GPTConfig:
    block_size: int = 256
    vocab_size: int = 258  # byte-level tokenizer: 256 bytes + <|endoftext|> + <|pad|>
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    dropout: float = 0.0
    bias: bool = True  # bias in Linears and LayerNorms, like GPT-2
    # the MLP's GELU: "none" = exact (erf), nanoGPT's nn.GELU; "tanh" = GPT-2's approximation ("gelu_new").
    # Checkpoints saved before this field existed load with the default, the function they were trained with.
    gelu: str = "none"
    # The embedding (and the tied LM head) holds vocab_size rounded up to a multiple of pad_vocab_to rows: GPT-2's
    # 50,258 tokens (with the pad) in 50,304 rows, as nanoGPT pads, so the LM head's matmul has a width tensor
    # cores tile evenly (from_pretrained pads GPT-2's weights: VOCAB_PAD). The rows past vocab_size are no token:
    # forward cuts their logits off, so they are never sampled, never the argmax, and every softmax and
    # log-prob is over the vocab_size real tokens only. 1 (the default, and older checkpoints): no padding.
    pad_vocab_to: int = 1

    def __post_init__(self):
        if isinstance(self.pad_vocab_to, bool) or not isinstance(self.pad_vocab_to, int) or self.pad_vocab_to < 1:
            raise ValueError(f"pad_vocab_to must be an integer >= 1, got {self.pad_vocab_to!r}")

    @property
    def vocab_rows(self):
        """The embedding's rows: vocab_size rounded up to a multiple of pad_vocab_to."""
        return -(-self.vocab_size // self.pad_vocab_to) * self.pad_vocab_to


VOCAB_PAD = 64  # GPT-2's weights from from_pretrained: 50,304 rows, as nanoGPT's


# -----------------------------------------------------------------------------
# The KV cache: explicit, preallocated, written in place (no per-step torch.cat).

class KVCache:
    """K and V of every layer for B rows and up to T_max positions.

    kv: (n_layer, 2, B, n_head, T_max, head_dim); `pos` = number of filled positions, the same for
    every row (prompts are left-padded). key_mask: (B, T_max) bool, False on padding."""

    def __init__(self, n_layer, B, n_head, T_max, head_dim, device, dtype):
        # K and V side by side: kv[layer, 0] = K, kv[layer, 1] = V, so one copy writes both
        self.kv = torch.zeros(n_layer, 2, B, n_head, T_max, head_dim, device=device, dtype=dtype)
        self.key_mask = torch.ones(B, T_max, dtype=torch.bool, device=device)
        self.padded = False  # any padding written? If not, forward builds no mask (the decode hot path)
        self.pos = 0

    def write(self, layer, kv):
        """Store this call's keys/values kv (2, B, nh, T, hs) at [pos, pos+T); return views (K, V) of
        every position so far, each (B, nh, pos+T, hs)."""
        kv_layer = self.kv[layer]  # narrow = a view along time in one call (cheaper than a 5-index slice)
        kv_layer.narrow(3, self.pos, kv.size(3)).copy_(kv)
        return kv_layer.narrow(3, 0, self.pos + kv.size(3)).unbind(0)

    def advance(self, T):
        self.pos += T  # called once per forward, after every layer has written

    def repeat_rows(self, n):
        """Each row becomes n consecutive rows: prefill a prompt once, then sample n completions from it."""
        self.kv = self.kv.repeat_interleave(n, dim=2)
        self.key_mask = self.key_mask.repeat_interleave(n, dim=0)


# -----------------------------------------------------------------------------
# The modules of a GPT (nanoGPT's, same parameter names)

class LayerNorm(nn.Module):
    """LayerNorm with an optional bias (PyTorch's has no bias=False before 2.1; kept for nanoGPT's keys)."""

    def __init__(self, ndim, bias):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(ndim))
        self.bias = nn.Parameter(torch.zeros(ndim)) if bias else None

    def forward(self, x):
        return F.layer_norm(x, self.weight.shape, self.weight, self.bias, 1e-5)


def _dropout(p):
    # no parameters either way, so nanoGPT's state_dict keys are unchanged; Identity skips a module
    # call per use, which is measurable when decoding one token at a time
    return nn.Dropout(p) if p > 0 else nn.Identity()


class CausalSelfAttention(nn.Module):
    def __init__(self, config, layer):
        super().__init__()
        assert config.n_embd % config.n_head == 0
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)  # q, k, v in one matmul
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.resid_dropout = _dropout(config.dropout)
        self.n_head = config.n_head
        self.n_embd = config.n_embd
        self.dropout = config.dropout
        self.layer = layer  # which slice of a KV cache is ours

    def forward(self, x, attn_mask=None, cache=None):
        """x: (B, T, C). attn_mask: bool (B, 1, T, T_keys) with True = may attend, or None = plain causal.
        With a cache, this call's K and V are written at cache.pos and attention reads all cached keys."""
        B, T, C = x.size()
        # q, k, v in one matmul, then one reshape: (3, B, nh, T, hs) (same numbers as nanoGPT's
        # split/view/transpose, fewer small ops -- decode at batch 1 is bound by per-op overhead)
        qkv = self.c_attn(x).view(B, T, 3, self.n_head, C // self.n_head).permute(2, 0, 3, 1, 4)
        if cache is not None:
            q, k, v = qkv[0], *cache.write(self.layer, qkv[1:])  # k, v: (B, nh, pos+T, hs), the past + this call
        else:
            q, k, v = qkv.unbind(0)
        dropout_p = self.dropout if self.training else 0.0
        # without a mask: plain causal attention; a single decoded query (T = 1) attends to every cached key
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=dropout_p,
                                           is_causal=attn_mask is None and T > 1)
        y = y.transpose(1, 2).reshape(B, T, C)  # re-assemble all head outputs side by side
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = _dropout(config.dropout)
        if config.gelu not in ("none", "tanh"):
            raise ValueError(f"gelu must be 'none' (exact) or 'tanh' (GPT-2's approximation), got {config.gelu!r}")
        self.gelu = config.gelu

    def forward(self, x):
        # F.gelu, not nanoGPT's nn.GELU module: same numbers, one module call less per layer (decode);
        # approximate="none" is F.gelu's default, so the default config computes what it always did
        return self.dropout(self.c_proj(F.gelu(self.c_fc(x), approximate=self.gelu)))


class Block(nn.Module):
    def __init__(self, config, layer):
        super().__init__()
        self.ln_1 = LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config, layer)
        self.ln_2 = LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x, attn_mask=None, cache=None):
        x = x + self.attn(self.ln_1(x), attn_mask, cache)
        x = x + self.mlp(self.ln_2(x))
        return x


# -----------------------------------------------------------------------------
# The GPT: one forward for training, prefill and decode; generate on top of it

# Decode asks whether every row is done (a read on the host: the CPU waits for the GPU to finish the
# step) only every DONE_CHECK_EVERY steps on a GPU, so the GPU can run ahead; the few steps taken after
# the last row is done are cut off, so the output is the same. On CPU there is nothing to wait for, and
# checking every step draws exactly as many samples as before, leaving a shared generator (eval.py's
# chunks share one; the global RNG when none is given) where it was: the CPU numbers do not change.
DONE_CHECK_EVERY = 8


class GPT(nn.Module):

    def __init__(self, config):
        super().__init__()
        assert config.vocab_size is not None and config.block_size is not None
        self.config = config
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(config.vocab_rows, config.n_embd),
            wpe=nn.Embedding(config.block_size, config.n_embd),
            drop=_dropout(config.dropout),
            h=nn.ModuleList([Block(config, layer) for layer in range(config.n_layer)]),
            ln_f=LayerNorm(config.n_embd, bias=config.bias),
        ))
        self.lm_head = nn.Linear(config.n_embd, config.vocab_rows, bias=False)
        self.transformer.wte.weight = self.lm_head.weight  # weight tying (Press & Wolf 2017)
        self.apply(self._init_weights)
        for pn, p in self.named_parameters():  # GPT-2: scaled init of residual projections
            if pn.endswith("c_proj.weight"):
                torch.nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    def _init_weights(self, module):
        if isinstance(module, nn.Linear):
            torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                torch.nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def get_num_params(self, non_embedding=True):
        n = sum(p.numel() for p in self.parameters())
        return n - self.transformer.wpe.weight.numel() if non_embedding else n

    @classmethod
    def from_pretrained(cls, folder, vocab_size=None, **overrides):
        """A GPT with the weights in `folder` (the user supplies it; nothing is downloaded; pretrained.py reads
        it), looked for in this order: model.safetensors, pytorch_model.bin (GPT-2 in the Hugging Face layout,
        with its config.json if there is one), ckpt.pt (nanoGPT's checkpoint, or train.py's). vocab_size: larger
        than the file's to add tokens (GPT-2's 50257 + this repo's pad = 50258, `tok.vocab_size`); the new
        rows are set so that they never hold the top logit (see _add_vocab_rows). overrides: GPTConfig
        fields (dropout=0.1, gelu=..., n_head=... when there is no config.json, block_size=... smaller than
        the file's keeps the first positions, pad_vocab_to=1 to keep GPT-2's embedding unpadded: by default
        the Hugging Face layout's is padded to a multiple of VOCAB_PAD, a checkpoint's kept as it was saved).
        Errors are one-line ValueErrors."""
        return _from_pretrained(cls, folder, vocab_size, overrides)

    def forward(self, idx, targets=None, pad_mask=None, cache=None, logits_at=None):
        """idx: (B, T) token ids. Returns (logits (B, T, vocab), loss or None).

        Unlike nanoGPT, logits are returned at every position even without targets (the RL loss
        needs them all). targets: (B, T) with -1 = ignore. pad_mask: (B, T) bool, True = real token,
        or None = no padding (the fast path). cache: a KVCache to read the past from and write this
        call's K/V into -- training (no cache), prefill and decode are all this one function.
        logits_at: (B,) one position per row: the LM head runs there only, logits (B, 1, vocab) (with a
        50k vocabulary the head is most of the memory; the verifier reads one position)."""
        B, T = idx.size()
        past = cache.pos if cache is not None else 0  # this call holds positions past .. past+T-1
        if past + T > self.config.block_size:
            raise ValueError(f"sequence of length {past + T} is longer than block_size {self.config.block_size}")
        keys = pad_mask  # (B, past+T) bool over every key this call attends to, or None = no padding
        if cache is not None:
            if pad_mask is not None:  # remembered, so that later decode steps keep ignoring the pads
                cache.key_mask[:, past:past + T] = pad_mask
                cache.padded = True
            keys = cache.key_mask[:, :past + T] if cache.padded else None
        if keys is None and past > 0 and T > 1:
            # several tokens appended to a non-empty cache: SDPA's is_causal would align the queries with
            # the first keys, not the last, so spell the mask out (decode, T = 1, never gets here)
            keys = torch.ones(B, past + T, dtype=torch.bool, device=idx.device)
        if keys is None:
            # no padding, the hot path of training and decode: no mask to build, and the position
            # embeddings are a view of wpe (no lookup)
            attn_mask, pos_emb = None, self.transformer.wpe.weight[past:past + T]
        else:
            # a token's position = the number of real tokens before it (pads get any valid id: never read)
            pos = (keys.cumsum(1) - keys.long())[:, past:]
            attn_mask, pos_emb = attention_mask(keys, T), self.transformer.wpe(pos)
        x = self.transformer.drop(self.transformer.wte(idx) + pos_emb)
        for block in self.transformer.h:
            x = block(x, attn_mask, cache)
        if cache is not None:
            cache.advance(T)
        if logits_at is not None:
            x = x[torch.arange(B, device=x.device), logits_at][:, None]
        logits = self.lm_head(self.transformer.ln_f(x))
        if logits.size(-1) > self.config.vocab_size:  # padded (GPTConfig.pad_vocab_to): only real tokens have logits
            logits = logits[..., :self.config.vocab_size]  # a view: no copy
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)).float(), targets.reshape(-1), ignore_index=-1)
        return logits, loss

    def new_cache(self, B, T_max):
        """A cache in the dtype attention produces: the autocast dtype under autocast (bf16: half the memory
        of fp32, and no cast per step), else the weights'."""
        c = self.config
        p = self.lm_head.weight
        dtype = torch.get_autocast_dtype(p.device.type) if torch.is_autocast_enabled(p.device.type) else p.dtype
        return KVCache(c.n_layer, B, c.n_head, T_max, c.n_embd // c.n_head, p.device, dtype)

    @torch.inference_mode()
    def generate(self, prompts, max_new_tokens, temperature=1.0, top_k=None, top_p=None,
                 eos_id=None, num_samples=1, generator=None, pad_id=0, done_check_every=None):
        """Sample completions with a KV cache.

        prompts: a (B, T) LongTensor (all the same length) or a list of B token lists (any lengths,
        left-padded here). Each prompt is prefilled ONCE; its cache is copied to num_samples rows
        (rows are grouped: prompt 0's samples first). temperature=0 means greedy. top_k / top_p
        truncate the sampling distribution. A row stops after emitting eos_id; its later slots are
        filled with eos_id (tokens) and 0 (logprobs) -- use completion_mask(tokens, eos_id).

        Returns (tokens (B*num_samples, T_new) long, logprobs (B*num_samples, T_new) float) where
        logprobs are log pi(token) under the UNTEMPERED, UNTRUNCATED model distribution (TOPR's
        behavior log-probs, log mu), and T_new <= max_new_tokens (stops early when all rows are done).
        Under autocast (bf16) it runs in the training precision, the KV cache in the autocast dtype.
        done_check_every: decode steps between two checks for "all rows done" (default: every step on
        CPU, DONE_CHECK_EVERY on a GPU); the output does not depend on it.
        """
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {temperature}")
        if top_p is not None and not (0.0 < top_p <= 1.0):
            raise ValueError(f"top_p must be in (0, 1], got {top_p}")
        if top_k is not None and top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {top_k}")
        if num_samples < 1 or max_new_tokens < 1:
            raise ValueError("num_samples and max_new_tokens must be >= 1")
        device = self.lm_head.weight.device
        if isinstance(prompts, torch.Tensor):
            idx, pad_mask = prompts.to(device), None
        else:
            idx, pad_mask = left_pad(prompts, pad_id)
            idx, pad_mask = idx.to(device), pad_mask.to(device)
            if bool(pad_mask.all()):
                pad_mask = None
        B, T = idx.shape
        if T + max_new_tokens > self.config.block_size:
            raise ValueError(f"prompt of {T} tokens + max_new_tokens={max_new_tokens} exceeds "
                             f"block_size={self.config.block_size}")
        cache = self.new_cache(B, T + max_new_tokens)
        # prefill: one forward over all prompts; the LM head only at the last position, the one sampled from
        # (left-padded: T - 1 in every row), not a (B, T, vocab) tensor of logits never read
        last = torch.full((B,), T - 1, dtype=torch.long, device=device)
        logits = self(idx, pad_mask=pad_mask, cache=cache, logits_at=last)[0][:, 0, :]
        if num_samples > 1:
            cache.repeat_rows(num_samples)
            logits = logits.repeat_interleave(num_samples, dim=0)
        N = B * num_samples
        out_tokens = torch.empty(N, max_new_tokens, dtype=torch.long, device=device)
        out_logp = torch.zeros(N, max_new_tokens, dtype=torch.float32, device=device)
        done = torch.zeros(N, dtype=torch.bool, device=device)
        check_every = done_check_every or (1 if device.type == "cpu" else DONE_CHECK_EVERY)
        for t in range(max_new_tokens):
            logits = logits.float()
            logp_all = F.log_softmax(logits, dim=-1)  # untempered: this is log mu for TOPR
            if temperature == 0:
                nxt = torch.argmax(logits, dim=-1, keepdim=True)
            else:
                probs = F.softmax(_filter_logits(logits / temperature, top_k, top_p), dim=-1)
                nxt = sample_next(probs, generator)
            lp = logp_all.gather(1, nxt).squeeze(1)
            if eos_id is not None:
                nxt = nxt.masked_fill(done[:, None], eos_id)
                lp = lp.masked_fill(done, 0.0)
            out_tokens[:, t] = nxt.squeeze(1)
            out_logp[:, t] = lp
            if eos_id is not None:
                done = done | (nxt.squeeze(1) == eos_id)
                if (t + 1) % check_every == 0 and bool(done.all()):  # a host sync: not every step on a GPU
                    break
            if t + 1 < max_new_tokens:
                logits = self(nxt, cache=cache)[0][:, -1, :]  # decode: the same forward, one token per row
        T_new = t + 1
        if eos_id is not None and bool(done.all()):
            # end at the step where the last row finished (its first EOS), as if checked every step
            T_new = int(completion_mask(out_tokens[:, :T_new], eos_id).sum(1).max())
        return out_tokens[:, :T_new], out_logp[:, :T_new]


# -----------------------------------------------------------------------------
# Helpers of forward and generate: padding, masks, sampling

def left_pad(prompts, pad_id):
    """List of token lists -> (idx (B, T) long, pad_mask (B, T) bool), right-aligned."""
    T = max(len(p) for p in prompts)
    idx = torch.full((len(prompts), T), pad_id, dtype=torch.long)
    pad_mask = torch.zeros(len(prompts), T, dtype=torch.bool)
    for i, p in enumerate(prompts):
        if len(p) == 0:
            raise ValueError(f"prompt {i} is empty")
        idx[i, T - len(p):] = torch.tensor(p, dtype=torch.long)
        pad_mask[i, T - len(p):] = True
    return idx, pad_mask


def completion_mask(tokens, eos_id):
    """(B, T) bool: True up to and including the first eos_id of each row (all True if eos_id is None)."""
    if eos_id is None:
        return torch.ones_like(tokens, dtype=torch.bool)
    is_eos = (tokens == eos_id).long()
    before = torch.cumsum(is_eos, dim=1) - is_eos  # number of EOS strictly before t
    return before == 0


def attention_mask(keys, T):
    """keys: (B, T_k) bool, True = real token, over every key of this call; the last T are the queries.
    Returns (B, 1, T, T_k) bool, True = may attend: causal (query t sits at key T_k - T + t) and never to
    a pad. A pad query would then see no key at all and SDPA would give NaN, so it sees every earlier
    key instead (its output is never used)."""
    T_k = keys.size(1)
    causal = torch.ones(T, T_k, dtype=torch.bool, device=keys.device).tril(diagonal=T_k - T)
    return (causal & (keys[:, None, :] | ~keys[:, T_k - T:, None]))[:, None]  # broadcast over heads


def _filter_logits(logits, top_k, top_p):
    """Top-k then nucleus (top-p) truncation: excluded tokens get -inf."""
    if top_k is not None:
        v, _ = torch.topk(logits, min(top_k, logits.size(-1)))
        logits = logits.masked_fill(logits < v[:, [-1]], float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, sorted_idx = torch.sort(logits, descending=True)
        probs = F.softmax(sorted_logits, dim=-1)
        # drop a token if the tokens strictly more likely than it already hold >= top_p of the mass;
        # the most likely token is always kept.
        drop_sorted = (torch.cumsum(probs, dim=-1) - probs) >= top_p
        drop = drop_sorted.scatter(1, sorted_idx, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def exponential_race(probs, generator=None):
    """One draw per row of probs (N, V) from that categorical distribution, as (N, 1), without a host
    sync: with E_v ~ Exp(1) independent, E_v / probs_v ~ Exp(rate probs_v), and the smallest of
    independent exponentials is v with probability probs_v / sum(probs) -- so argmax(probs / E) is an
    exact categorical draw (the Gumbel-max trick: -log E is Gumbel). A zero-probability outcome scores
    0 and is never drawn."""
    e = torch.empty_like(probs).exponential_(generator=generator)
    return torch.argmax(probs / e, dim=-1, keepdim=True)


def sample_next(probs, generator=None):
    """The next token of each row, (N, 1), drawn from probs (N, V) with `generator` (on probs' device).
    CUDA: the exponential race, because torch.multinomial first checks its input with host syncs (.item())
    on every call, which stalls each decode step. CPU: torch.multinomial, with which every sample behind
    the numbers in RESULTS.md was drawn (on CPU there is no device to wait for). For one sample PyTorch's
    multinomial is this same race after its checks, so both draw the same tokens from the same generator."""
    if probs.device.type == "cuda":
        return exponential_race(probs, generator)
    return torch.multinomial(probs, 1, generator=generator)


# -----------------------------------------------------------------------------
# Log-probs of given completions in one forward pass (what the RL loss differentiates).

def pack(prompts, completions, pad_id):
    """Lay out (prompt, completion) pairs as one batch: each row is prompt + completion, right-padded.
    Returns tokens (B, T), pad_mask (B, T) (True = real token) and completion_mask (B, T) (True on
    completion tokens). Positions start at 0 at each prompt's first token, exactly as in generate()
    (where prompts are left-padded but position ids skip the pads), so the log-probs agree; and with
    padding only at the END of rows, the causal mask alone keeps pads out of every real token's view:
    the fast attention path, no mask needed."""
    rows = [list(p) + list(c) for p, c in zip(prompts, completions)]
    T = max(len(r) for r in rows)
    tokens = torch.full((len(rows), T), pad_id, dtype=torch.long)
    pad_mask = torch.zeros(len(rows), T, dtype=torch.bool)
    compl_mask = torch.zeros(len(rows), T, dtype=torch.bool)
    for i, (p, c) in enumerate(zip(prompts, completions)):
        tokens[i, :len(rows[i])] = torch.tensor(rows[i], dtype=torch.long)
        pad_mask[i, :len(rows[i])] = True
        compl_mask[i, len(p):len(rows[i])] = True
    return tokens, pad_mask, compl_mask


def sequence_logprobs(model, tokens, pad_mask, compl_mask, return_entropy=False, chunk=64):
    """Per-token log pi(tokens[:, t] | tokens[:, :t]) for t on the completion (zero elsewhere), (B, T).

    One forward pass; gradients flow (call under no_grad for behavior log-probs). With
    return_entropy, also the per-token entropy of pi at those positions (for logging).
    Memory, which a 50k vocabulary makes matter: log pi(token) = logit(token) - logsumexp(logits), so no
    (B, T, vocab) log-softmax copy is kept for the backward pass; the entropy is a statistic, computed
    without gradients, `chunk` rows at a time.
    pad_mask None: the rows are padded only at their ends, as `pack` lays them out (the RL updates pass None
    rather than a check here, which reads the device on the host: one stall per micro-batch on a GPU)."""
    if pad_mask is not None:
        pad_mask = pad_mask[:, :-1]
        if bool((pad_mask[:, 1:] <= pad_mask[:, :-1]).all()):
            pad_mask = None  # padding only at the end of rows: causal attention already ignores it
    logits, _ = model(tokens[:, :-1], pad_mask=pad_mask)
    logits = logits.float()  # (a no-op in fp32; under bf16 autocast, log-probs in fp32)
    logp = logits.gather(2, tokens[:, 1:, None]).squeeze(2) - torch.logsumexp(logits, dim=-1)
    logp = torch.cat([torch.zeros_like(logp[:, :1]), logp], dim=1)  # token 0 is never a completion token
    logp = torch.where(compl_mask, logp, torch.zeros_like(logp))
    if not return_entropy:
        return logp
    with torch.no_grad():
        ent = torch.cat([entropy(logits[i:i + chunk]) for i in range(0, len(logits), chunk)])
    ent = torch.cat([torch.zeros_like(ent[:, :1]), ent], dim=1)
    return logp, torch.where(compl_mask, ent, torch.zeros_like(ent))


def verdict_logp(model, prompts, yes_no, pad_id):
    """(B, 2) [log pi(Yes | x), log pi(No | x)] for verification prompts (token lists), in one forward pass,
    pi = the next-token distribution restricted to the two verdicts: the softmax of their two logits. The
    generative verifier's policy; gradients flow (the RL update differentiates it via verdict_logp_at)."""
    device = next(model.parameters()).device
    tokens, _, _ = pack(prompts, [[] for _ in prompts], pad_id)  # right-padded: causal attention ignores pads
    last = torch.tensor([len(p) - 1 for p in prompts])
    return verdict_logp_at(model, tokens.to(device), last.to(device), yes_no)


def verdict_logp_at(model, tokens, last, yes_no):
    """verdict_logp of rows already on the device: tokens (B, T) padded at the ends of rows only, last (B,)
    each row's last prompt position (what follows it in the row is never read: attention is causal)."""
    logits, _ = model(tokens, logits_at=last)  # the LM head at each prompt's last token only
    logits = logits[:, 0].float()  # (B, vocab): next-token logits
    # the two columns as views, stacked: indexing with a list would copy an index to the device (a stall)
    return F.log_softmax(torch.stack([logits[:, yes_no[0]], logits[:, yes_no[1]]], dim=1), dim=-1)


def entropy(logits):
    """-sum_v p_v log p_v over the last dimension."""
    logp = F.log_softmax(logits, dim=-1)
    return -(logp.exp() * logp).sum(-1)


# -----------------------------------------------------------------------------
# GPT.from_pretrained: the weights that pretrained.py reads from a folder, in a GPT of their config

def _add_vocab_rows(wte, vocab_size):
    """wte with rows appended up to vocab_size (new tokens: the pad, GPT-2's 50257 -> 50258).

    The LM head is tied to wte, so a new token's logit is h . r for its row r and the final hidden state h.
    No fixed r is below every real logit for every h if it is chosen alone (r = 0 gives logit 0, and all
    the real logits can be negative); but r = the MEAN of the real rows gives the pad the mean of the real
    logits, h . mean(w) = mean(h . w): never above their maximum, for every input, and equal to it only
    when all real logits are equal, where argmax (first maximal index) still returns a real token. (Up to
    float rounding, which could matter only when every real logit agrees to ~7 digits.) The pad then has
    about an average token's probability, far below the top one; it is also how Hugging Face initialises
    new embeddings. No mask, no new parameter or buffer: the state_dict keys stay nanoGPT's."""
    extra = vocab_size - wte.shape[0]
    mean = wte.double().mean(0).to(wte.dtype)
    return torch.cat([wte, mean.expand(extra, -1)]) if extra > 0 else wte


def _from_pretrained(cls, folder, vocab_size, overrides):
    state, cfg, path = read_weights(folder)
    names = GPTConfig.__dataclass_fields__
    unknown = sorted(set(overrides) - set(names))
    if unknown:
        raise ValueError(f"unknown GPTConfig field(s) {unknown}: choose from {sorted(names)}")
    wte, file_block = state["transformer.wte.weight"], state["transformer.wpe.weight"].shape[0]
    file_vocab = wte.shape[0]
    if cfg.get("pad_vocab_to", 1) > 1:  # a padded checkpoint of this repo: the rows past its vocab_size are padding
        file_vocab = cfg["vocab_size"]
        if file_vocab > wte.shape[0]:
            raise ValueError(f"{path}: vocab_size {file_vocab} but {wte.shape[0]} embedding rows")
    # GPT-2's embedding padded (VOCAB_PAD); a checkpoint's as it was saved (nanoGPT pads its vocab_size itself)
    hf_layout = os.path.basename(path) in PRETRAINED_FILES[:2]
    cfg = {"pad_vocab_to": VOCAB_PAD if hf_layout else 1, **cfg, **overrides}
    cfg = {k: v for k, v in cfg.items() if k in names}  # a nanoGPT checkpoint's args may hold more
    cfg["vocab_size"] = file_vocab if vocab_size is None else vocab_size
    if cfg["vocab_size"] < file_vocab:
        raise ValueError(f"vocab_size {cfg['vocab_size']} is smaller than the {file_vocab} tokens in {path}")
    if cfg["block_size"] > file_block:
        raise ValueError(f"block_size {cfg['block_size']} is larger than the {file_block} positions in {path}")
    if not cfg.get("n_head"):
        raise ValueError(f"{path}: the number of heads is unknown (no config.json): pass n_head=...")
    if cfg["n_embd"] % cfg["n_head"]:
        raise ValueError(f"n_embd {cfg['n_embd']} is not divisible by n_head {cfg['n_head']}")
    config = GPTConfig(**cfg)
    wte = _add_vocab_rows(wte[:file_vocab], config.vocab_size)
    # the padding rows: zeros (no token: forward never shows their logits)
    state["transformer.wte.weight"] = torch.cat([wte, wte.new_zeros(config.vocab_rows - len(wte), wte.shape[1])])
    state["transformer.wpe.weight"] = state["transformer.wpe.weight"][:cfg["block_size"]]  # causal: a prefix
    state["lm_head.weight"] = state["transformer.wte.weight"]  # tied
    model = cls(config)
    want = model.state_dict()
    for k in sorted(set(want) | set(state)):
        if k not in state:
            raise ValueError(f"{path}: no weight for parameter {k} (config {cfg})")
        if k not in want:
            raise ValueError(f"{path}: parameter {k} is not in the model (config {cfg})")
        if tuple(state[k].shape) != tuple(want[k].shape):
            raise ValueError(f"{path}: parameter {k} has shape {tuple(state[k].shape)} in the file, "
                             f"the model expects {tuple(want[k].shape)} (config {cfg})")
    model.load_state_dict(state)
    return model
