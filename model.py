"""
model.py -- a nanoGPT-compatible GPT with hand-written KV-cached sampling.

Read in this order:
  1. GPTConfig, the Block modules and GPT.forward  -- nanoGPT's model, same parameter names, so a
     nanoGPT state_dict loads with strict=True.
  2. KVCache                                        -- per-layer K and V tensors, preallocated.
  3. GPT.generate                                   -- prefill the prompts once, copy the cache to
     num_samples rows, then decode one token at a time, reading K/V of the past from the cache.
  4. sequence_logprobs                              -- the same per-token log-probs in one forward
     pass (what the RL loss differentiates).

Padding convention: prompts of different lengths are LEFT-padded (right-aligned), so that every
row writes its next token into the same cache slot. A boolean `pad_mask` (True = real token) tells
attention to ignore the pads, and position ids are `cumsum(pad_mask) - 1`, so a token's position
does not depend on how much padding sits in front of it.

Imports torch only.
"""
import math
from dataclasses import dataclass

import torch
import torch.nn as nn
from torch.nn import functional as F


@dataclass
class GPTConfig:
    block_size: int = 256
    vocab_size: int = 258  # byte-level tokenizer: 256 bytes + <|endoftext|> + <|pad|>
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    dropout: float = 0.0
    bias: bool = True  # bias in Linears and LayerNorms, like GPT-2


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
    def __init__(self, config):
        super().__init__()
        assert config.n_embd % config.n_head == 0
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)  # q, k, v in one matmul
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.resid_dropout = _dropout(config.dropout)
        self.n_head = config.n_head
        self.n_embd = config.n_embd
        self.dropout = config.dropout

    def forward(self, x, attn_mask=None, cache=None, layer=0):
        """x: (B, T, C). attn_mask: bool (B, 1, T, T_keys) with True = may attend, or None = plain causal.
        With a cache, this call's K and V are written at cache.pos and attention reads all cached keys."""
        B, T, C = x.size()
        # q, k, v in one matmul, then one reshape: (3, B, nh, T, hs) (same numbers as nanoGPT's
        # split/view/transpose, fewer small ops -- decode at batch 1 is bound by per-op overhead)
        qkv = self.c_attn(x).view(B, T, 3, self.n_head, C // self.n_head).permute(2, 0, 3, 1, 4)
        if cache is not None:
            q, k, v = qkv[0], *cache.write(layer, qkv[1:])  # k, v: (B, nh, pos+T, hs), the past + this call
        else:
            q, k, v = qkv.unbind(0)
        dropout_p = self.dropout if self.training else 0.0
        if attn_mask is None:
            # no padding: plain causal attention. A single decoded query attends to every cached key.
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=(T > 1))
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=dropout_p)
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.gelu = nn.GELU()
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = _dropout(config.dropout)

    def forward(self, x):
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))


class Block(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.ln_1 = LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x, attn_mask=None, cache=None, layer=0):
        x = x + self.attn(self.ln_1(x), attn_mask, cache, layer)
        x = x + self.mlp(self.ln_2(x))
        return x


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
        self.padded = False  # any padding written? If not, decode skips building a mask (hot path)
        self.pos = 0
        self.T_max = T_max

    def write(self, layer, kv):
        """Store this call's keys/values kv (2, B, nh, T, hs) at [pos, pos+T); return views (K, V) of
        every position so far, each (B, nh, pos+T, hs)."""
        end = self.pos + kv.size(3)
        self.kv[layer, :, :, :, self.pos:end] = kv
        return self.kv[layer, :, :, :, :end].unbind(0)

    def advance(self, T):
        self.pos += T  # called once per forward, after every layer has written

    def repeat_rows(self, n):
        """Each row becomes n consecutive rows: prefill a prompt once, then sample n completions from it."""
        self.kv = self.kv.repeat_interleave(n, dim=2)
        self.key_mask = self.key_mask.repeat_interleave(n, dim=0)


# -----------------------------------------------------------------------------

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


class GPT(nn.Module):

    def __init__(self, config):
        super().__init__()
        assert config.vocab_size is not None and config.block_size is not None
        self.config = config
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(config.vocab_size, config.n_embd),
            wpe=nn.Embedding(config.block_size, config.n_embd),
            drop=_dropout(config.dropout),
            h=nn.ModuleList([Block(config) for _ in range(config.n_layer)]),
            ln_f=LayerNorm(config.n_embd, bias=config.bias),
        ))
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
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

    def forward(self, idx, targets=None, pad_mask=None, cache=None):
        """idx: (B, T) token ids. Returns (logits (B, T, vocab), loss or None).

        Unlike nanoGPT, logits are returned at every position even without targets (the RL loss
        needs them all). targets: (B, T) with -1 = ignore. pad_mask: (B, T) bool, True = real token
        (left padding). cache: a KVCache to read the past from and write this call's K/V into."""
        B, T = idx.size()
        past = cache.pos if cache is not None else 0
        if past + T > self.config.block_size:
            raise ValueError(f"sequence of length {past + T} is longer than block_size {self.config.block_size}")
        attn_mask = None
        keys = pad_mask  # (B, past+T) bool over every key this call attends to, True = real token
        if cache is not None:
            if pad_mask is not None and not bool(pad_mask.all()):
                cache.key_mask[:, past:past + T] = pad_mask
                cache.padded = True
            keys = cache.key_mask[:, :past + T] if cache.padded else None
        # The fast path (is_causal / no mask) is exact only without padding, and, with a cache,
        # for a single decoded token or a prefill from an empty cache.
        needs_mask = keys is not None and (cache is not None or not bool(keys.all()))
        needs_mask = needs_mask or (past > 0 and T > 1)
        if needs_mask:
            if keys is None:
                keys = torch.ones(B, past + T, dtype=torch.bool, device=idx.device)
            pos = (torch.cumsum(keys.long(), dim=1) - 1).clamp(min=0)[:, past:]  # position ids skip the padding
            causal = torch.ones(T, past + T, dtype=torch.bool, device=idx.device).tril(diagonal=past)
            attn_mask = causal[None] & keys[:, None, :]
            # a padding query row would see no key at all (SDPA -> NaN): let every query see itself
            attn_mask = attn_mask | torch.eye(T, past + T, dtype=torch.bool, device=idx.device).roll(past, 1)[None]
            attn_mask = attn_mask[:, None]  # (B, 1, T, past+T), broadcast over heads
            pos_emb = self.transformer.wpe(pos)
        else:
            pos_emb = self.transformer.wpe.weight[past:past + T]  # positions past..past+T-1 (a view, no lookup)
        x = self.transformer.drop(self.transformer.wte(idx) + pos_emb)
        for layer, block in enumerate(self.transformer.h):
            x = block(x, attn_mask, cache, layer)
        if cache is not None:
            cache.advance(T)
        logits = self.lm_head(self.transformer.ln_f(x))
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)).float(), targets.reshape(-1), ignore_index=-1)
        return logits, loss

    def new_cache(self, B, T_max):
        c = self.config
        p = self.lm_head.weight
        return KVCache(c.n_layer, B, c.n_head, T_max, c.n_embd // c.n_head, p.device, p.dtype)

    @torch.inference_mode()
    def generate(self, prompts, max_new_tokens, temperature=1.0, top_k=None, top_p=None,
                 eos_id=None, num_samples=1, generator=None, pad_id=0):
        """Sample completions with a KV cache.

        prompts: a (B, T) LongTensor (all the same length) or a list of B token lists (any lengths,
        left-padded here). Each prompt is prefilled ONCE; its cache is copied to num_samples rows
        (rows are grouped: prompt 0's samples first). temperature=0 means greedy. top_k / top_p
        truncate the sampling distribution. A row stops after emitting eos_id; its later slots are
        filled with eos_id (tokens) and 0 (logprobs) -- use completion_mask(tokens, eos_id).

        Returns (tokens (B*num_samples, T_new) long, logprobs (B*num_samples, T_new) float) where
        logprobs are log pi(token) under the UNTEMPERED, UNTRUNCATED model distribution (TOPR's
        behaviour log-probs, log mu), and T_new <= max_new_tokens (stops early when all rows are done).
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
        logits, _ = self(idx, pad_mask=pad_mask, cache=cache)  # prefill: one forward over all prompts
        logits = logits[:, -1, :]
        if num_samples > 1:
            cache.repeat_rows(num_samples)
            logits = logits.repeat_interleave(num_samples, dim=0)
        N = B * num_samples
        out_tokens = torch.empty(N, max_new_tokens, dtype=torch.long, device=device)
        out_logp = torch.zeros(N, max_new_tokens, dtype=torch.float32, device=device)
        done = torch.zeros(N, dtype=torch.bool, device=device)
        weights = self._decode_weights()
        for t in range(max_new_tokens):
            logits = logits.float()
            logp_all = F.log_softmax(logits, dim=-1)  # untempered: this is log mu for TOPR
            if temperature == 0:
                nxt = torch.argmax(logits, dim=-1, keepdim=True)
            else:
                probs = F.softmax(_filter_logits(logits / temperature, top_k, top_p), dim=-1)
                nxt = torch.multinomial(probs, 1, generator=generator)
            lp = logp_all.gather(1, nxt).squeeze(1)
            if eos_id is not None:
                nxt = nxt.masked_fill(done[:, None], eos_id)
                lp = lp.masked_fill(done, 0.0)
            out_tokens[:, t] = nxt.squeeze(1)
            out_logp[:, t] = lp
            if eos_id is not None:
                done = done | (nxt.squeeze(1) == eos_id)
                if bool(done.all()):
                    return out_tokens[:, :t + 1], out_logp[:, :t + 1]
            if t + 1 < max_new_tokens:
                logits = self._decode(nxt, cache, weights)  # decode: one token per row
        return out_tokens, out_logp


    def _decode_weights(self):
        """Every layer's parameter tensors, looked up once per generate() call (see _decode)."""
        return [(b.ln_1.weight, b.ln_1.bias, b.attn.c_attn.weight, b.attn.c_attn.bias, b.attn.c_proj.weight,
                 b.attn.c_proj.bias, b.ln_2.weight, b.ln_2.bias, b.mlp.c_fc.weight, b.mlp.c_fc.bias,
                 b.mlp.c_proj.weight, b.mlp.c_proj.bias) for b in self.transformer.h]

    def _decode(self, idx, cache, weights):
        """One new token per row, (B, 1) -> next-token logits (B, vocab): exactly forward()'s math for
        T = 1 with a cache (the cache tests compare the two), written with plain functional calls.
        Why a second path: at batch 1 a decode step is ~90 tiny kernels, and nn.Module.__call__ plus
        attribute lookups cost about as much as the kernels themselves."""
        B, C, nh = idx.size(0), self.config.n_embd, self.config.n_head
        pos = cache.pos
        if pos + 1 > self.config.block_size:
            raise ValueError(f"sequence of length {pos + 1} is longer than block_size {self.config.block_size}")
        attn_mask = None
        if cache.padded:  # left-padded prompts: per-row positions skip the pads, keys hide them
            cache.key_mask[:, pos] = True
            keys = cache.key_mask[:, :pos + 1]
            x = self.transformer.wte(idx) + self.transformer.wpe(keys.sum(1, keepdim=True) - 1)
            attn_mask = keys[:, None, None, :]
        else:
            x = self.transformer.wte(idx) + self.transformer.wpe.weight[pos]
        for layer, (w1, b1, wa, ba, wp, bp, w2, b2, wf, bf, wm, bm) in enumerate(weights):
            h = F.layer_norm(x, (C,), w1, b1, 1e-5)
            qkv = F.linear(h, wa, ba).view(B, 1, 3, nh, C // nh).permute(2, 0, 3, 1, 4)
            k, v = cache.write(layer, qkv[1:])
            y = F.scaled_dot_product_attention(qkv[0], k, v, attn_mask=attn_mask)
            x = x + F.linear(y.transpose(1, 2).reshape(B, 1, C), wp, bp)
            h = F.layer_norm(x, (C,), w2, b2, 1e-5)
            x = x + F.linear(F.gelu(F.linear(h, wf, bf)), wm, bm)
        cache.advance(1)
        return self.lm_head(self.transformer.ln_f(x))[:, -1, :]


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


def sequence_logprobs(model, tokens, pad_mask, compl_mask, return_entropy=False):
    """Per-token log pi(tokens[:, t] | tokens[:, :t]) for t on the completion (zero elsewhere), (B, T).

    One forward pass; gradients flow (call under no_grad for behaviour log-probs). With
    return_entropy, also the per-token entropy of pi at those positions (for logging)."""
    pad_mask = pad_mask[:, :-1]
    if bool((pad_mask[:, 1:] <= pad_mask[:, :-1]).all()):
        pad_mask = None  # padding only at the end of rows: causal attention already ignores it
    logits, _ = model(tokens[:, :-1], pad_mask=pad_mask)
    logp_all = F.log_softmax(logits.float(), dim=-1)
    logp = logp_all.gather(2, tokens[:, 1:, None]).squeeze(2)
    logp = torch.cat([torch.zeros_like(logp[:, :1]), logp], dim=1)  # token 0 is never a completion token
    logp = torch.where(compl_mask, logp, torch.zeros_like(logp))
    if not return_entropy:
        return logp
    ent = -(logp_all.exp() * logp_all).sum(-1).detach()
    ent = torch.cat([torch.zeros_like(ent[:, :1]), ent], dim=1)
    return logp, torch.where(compl_mask, ent, torch.zeros_like(ent))


def get_device(name="auto"):
    """cuda if available, else mps, else cpu (or the device named)."""
    if name != "auto":
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")
