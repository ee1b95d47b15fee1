"""GPT.from_pretrained (model.py, the files read by pretrained.py): GPT-2's weights in the Hugging Face layout
(model.safetensors, read by pretrained.py's own reader, or pytorch_model.bin) and nanoGPT checkpoints load
back EXACTLY: a tiny random GPT-2-shaped model is written in each layout and its logits come back bit for bit;
added vocabulary rows (the pad) never hold the top logit; GPT-2's tanh GELU is selectable; errors are one
clear line."""
import dataclasses
import json

import pytest
import torch
import torch.nn.functional as F

from model import GPT, MLP, VOCAB_PAD, GPTConfig, pack, sequence_logprobs
from pretrained import PRETRAINED_FILES, read_safetensors

SIZES = dict(block_size=32, vocab_size=40, n_layer=2, n_head=2, n_embd=16)
CONV1D = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
DTYPE_NAMES = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.bool: "BOOL",
               torch.float64: "F64", torch.int64: "I64"}


def tiny(seed=0, **kw):
    """A tiny GPT whose every parameter (biases and LayerNorms too) is random, so every mapping is tested."""
    torch.manual_seed(seed)
    model = GPT(GPTConfig(**{**SIZES, **kw})).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * 0.3)
    return model


def tokens(n=8, T=32, vocab=40, seed=1):
    return torch.randint(0, vocab, (n, T), generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def logits_of(model, idx):
    return model.eval()(idx)[0]


def padded(config):
    """The config from_pretrained gives GPT-2's weights (the Hugging Face layout): the embedding padded."""
    return dataclasses.replace(config, pad_vocab_to=VOCAB_PAD)


def write_safetensors(path, tensors, metadata=None):
    """The safetensors format, written by hand: u64 header length, JSON header (padded to 8 bytes), data."""
    header, chunks, offset = {}, [], 0
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, t in tensors.items():
        raw = t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
        header[name] = {"dtype": DTYPE_NAMES[t.dtype], "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(raw)]}
        chunks.append(raw)
        offset += len(raw)
    head = json.dumps(header).encode()
    head += b" " * (-len(head) % 8)
    path.write_bytes(len(head).to_bytes(8, "little") + head + b"".join(chunks))


def hf_state(model, prefix="transformer.", dtype=torch.float32, lm_head=False):
    """The model's weights as Hugging Face's GPT2LMHeadModel stores them: Conv1D weights (in, out), the
    attention-mask buffers attn.bias / attn.masked_bias present, lm_head tied (usually not saved)."""
    out = {}
    for k, v in model.state_dict().items():
        if k == "lm_head.weight":
            continue
        k = k.removeprefix("transformer.")
        out[prefix + k] = (v.t() if k.endswith(CONV1D) else v).to(dtype).clone()
    T = model.config.block_size
    for i in range(model.config.n_layer):
        out[f"{prefix}h.{i}.attn.bias"] = torch.tril(torch.ones(T, T, dtype=torch.bool)).view(1, 1, T, T)
        out[f"{prefix}h.{i}.attn.masked_bias"] = torch.tensor(-1e4)
    if lm_head:
        out["lm_head.weight"] = model.lm_head.weight.detach().to(dtype).clone()
    return out


def hf_config(model, activation="gelu_new"):
    c = model.config
    return dict(model_type="gpt2", architectures=["GPT2LMHeadModel"], n_layer=c.n_layer, n_head=c.n_head,
                n_embd=c.n_embd, n_positions=c.block_size, n_ctx=c.block_size, vocab_size=c.vocab_size,
                layer_norm_epsilon=1e-5, activation_function=activation, resid_pdrop=0.1, embd_pdrop=0.1)


def save_hf(folder, model, fmt="safetensors", config=True, **kw):
    folder.mkdir(exist_ok=True)
    state = hf_state(model, **kw)
    if fmt == "safetensors":
        write_safetensors(folder / "model.safetensors", state, metadata={"format": "pt"})
    else:
        torch.save(state, folder / "pytorch_model.bin")
    if config:
        act = "gelu_new" if model.config.gelu == "tanh" else "gelu"
        (folder / "config.json").write_text(json.dumps(hf_config(model, act)))
    return folder


def save_nanogpt(folder, model, key="model_args"):
    """nanoGPT's train.py checkpoint of a torch.compile'd model: every key under `_orig_mod.`."""
    folder.mkdir(exist_ok=True)
    c = model.config
    state = {"_orig_mod." + k: v.clone() for k, v in model.state_dict().items()}
    for i in range(c.n_layer):  # nanoGPT's mask buffer when flash attention is unavailable
        state[f"_orig_mod.transformer.h.{i}.attn.bias"] = torch.tril(torch.ones(c.block_size, c.block_size))[None, None]
    args = dict(n_layer=c.n_layer, n_head=c.n_head, n_embd=c.n_embd, block_size=c.block_size, bias=c.bias,
                vocab_size=c.vocab_size, dropout=0.0, use_rope=False)  # use_rope: a fork's field, not GPTConfig's
    run = {} if key == "config" else {"config": {"dataset": "openwebtext", "compile": True}}  # nanoGPT's run settings
    torch.save({"model": state, "iter_num": 5, "best_val_loss": torch.tensor(1.5), **run, key: args}, folder / "ckpt.pt")
    return folder


# -----------------------------------------------------------------------------
# The layouts load back exactly

@pytest.mark.parametrize("prefix", ["transformer.", ""])
@pytest.mark.parametrize("lm_head", [False, True])
def test_safetensors_f32_loads_back_exactly(tmp_path, prefix, lm_head):
    src = tiny(gelu="tanh")
    folder = save_hf(tmp_path / "gpt2", src, prefix=prefix, lm_head=lm_head)
    model = GPT.from_pretrained(folder)
    assert model.config == padded(src.config)  # from config.json: gelu_new -> "tanh"
    assert model.lm_head.weight is model.transformer.wte.weight  # still tied
    assert torch.equal(logits_of(model, tokens()), logits_of(src, tokens()))


def test_pytorch_model_bin_loads_back_exactly(tmp_path):
    src = tiny(gelu="tanh")
    folder = save_hf(tmp_path / "gpt2", src, fmt="bin", prefix="")
    model = GPT.from_pretrained(str(folder))
    assert model.config == padded(src.config)
    assert torch.equal(logits_of(model, tokens()), logits_of(src, tokens()))


def test_safetensors_is_preferred_to_pytorch_model_bin(tmp_path):
    src, other = tiny(0, gelu="tanh"), tiny(1, gelu="tanh")
    folder = save_hf(tmp_path / "gpt2", src)
    save_hf(folder, other, fmt="bin")
    assert PRETRAINED_FILES[0] == "model.safetensors"
    assert torch.equal(logits_of(GPT.from_pretrained(folder), tokens()), logits_of(src, tokens()))


@pytest.mark.parametrize("key", ["model_args", "config", "model_config"])  # nanoGPT's, train.py's, train.py's older
def test_nanogpt_checkpoint_loads_back_exactly(tmp_path, key):
    src = tiny(bias=False)  # nanoGPT: exact GELU, and bias=False is one of its options
    model = GPT.from_pretrained(save_nanogpt(tmp_path / "out", src, key))
    assert model.config == src.config and model.config.gelu == "none"
    assert torch.equal(logits_of(model, tokens()), logits_of(src, tokens()))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_safetensors_load_the_rounded_weights_exactly(tmp_path, dtype):
    src = tiny(gelu="tanh")
    folder = save_hf(tmp_path / "gpt2", src, dtype=dtype)
    assert read_safetensors(folder / "model.safetensors")["transformer.wte.weight"].dtype == dtype
    rounded = tiny(gelu="tanh")
    with torch.no_grad():
        for p in rounded.parameters():
            p.copy_(p.to(dtype).float())
    model = GPT.from_pretrained(folder)
    assert next(model.parameters()).dtype == torch.float32
    assert torch.equal(logits_of(model, tokens()), logits_of(rounded, tokens()))
    assert not torch.equal(logits_of(model, tokens()), logits_of(src, tokens()))  # the rounding is real


def test_safetensors_reader_dtypes_shapes_and_metadata(tmp_path):
    g = torch.Generator().manual_seed(0)
    ts = {"a": torch.randn(3, 5, generator=g), "b": torch.randn(7, generator=g).half(),
          "c": torch.randn(2, 2, 2, generator=g).bfloat16(), "d": torch.arange(6).view(2, 3),
          "e": torch.tensor(2.5, dtype=torch.float64), "f": torch.tensor([True, False]), "g": torch.zeros(0, 4)}
    write_safetensors(tmp_path / "x.safetensors", ts, metadata={"format": "pt"})
    back = read_safetensors(tmp_path / "x.safetensors")
    assert set(back) == set(ts)
    for k in ts:
        assert back[k].dtype == ts[k].dtype and torch.equal(back[k], ts[k]), k


def test_block_size_override_keeps_the_first_positions(tmp_path):
    src = tiny(gelu="tanh")
    model = GPT.from_pretrained(save_hf(tmp_path / "gpt2", src), block_size=16, dropout=0.1)
    assert model.config.block_size == 16 and model.config.dropout == 0.1
    idx = tokens(T=16)
    assert torch.equal(logits_of(model, idx), logits_of(src, idx))


def test_without_config_json_the_sizes_come_from_the_weights(tmp_path):
    src = tiny(gelu="tanh")
    folder = save_hf(tmp_path / "gpt2", src, config=False)
    with pytest.raises(ValueError, match="number of heads is unknown.*n_head"):
        GPT.from_pretrained(folder)  # n_embd 16: not GPT-2's heads of 64
    model = GPT.from_pretrained(folder, n_head=2)
    assert model.config == padded(src.config)  # gelu "tanh": what every GPT-2 uses
    assert torch.equal(logits_of(model, tokens()), logits_of(src, tokens()))


def test_context_length_is_n_positions_and_n_ctx_may_not_disagree(tmp_path):
    """config.json's n_positions is the context (n_ctx is its legacy twin, read only without it): an n_ctx of 16
    beside n_positions 32 is an error naming both, not a model cut to 16 positions without a word."""
    src = tiny(gelu="tanh")
    folder = save_hf(tmp_path / "gpt2", src)
    for drop in ("n_ctx", "n_positions"):  # either one alone tells the context
        cfg = hf_config(src)
        del cfg[drop]
        (folder / "config.json").write_text(json.dumps(cfg))
        assert GPT.from_pretrained(folder).config.block_size == 32
    cfg = dict(hf_config(src), n_ctx=16)
    (folder / "config.json").write_text(json.dumps(cfg))
    msg = one_line_error(r"n_positions 32 and n_ctx 16 disagree", GPT.from_pretrained, folder)
    assert str(folder / "config.json") in msg


# -----------------------------------------------------------------------------
# GELU

def test_gelu_default_is_exact_and_tanh_is_gpt2s():
    assert GPTConfig().gelu == "none"
    old = dict(block_size=8, vocab_size=10, n_layer=1, n_head=1, n_embd=8, dropout=0.0, bias=True)
    assert GPTConfig(**old).gelu == "none"  # a checkpoint saved before the field existed
    x = torch.randn(4, 5, 16, generator=torch.Generator().manual_seed(0)) * 3
    outs = {}
    for gelu in ["none", "tanh"]:
        torch.manual_seed(0)
        mlp = MLP(GPTConfig(**{**SIZES, "gelu": gelu}))
        h = mlp.c_fc(x)
        ref = F.gelu(h) if gelu == "none" else F.gelu(h, approximate="tanh")
        with torch.no_grad():
            outs[gelu] = mlp(x)
            assert torch.equal(outs[gelu], mlp.c_proj(ref))
    torch.manual_seed(0)
    with torch.no_grad():
        assert torch.equal(MLP(GPTConfig(**SIZES))(x), outs["none"])  # the default: erf GELU, as before
    assert not torch.equal(outs["none"], outs["tanh"])
    with pytest.raises(ValueError, match="gelu must be"):
        GPT(GPTConfig(**{**SIZES, "gelu": "gelu_new"}))


def test_gelu_choice_matters_for_gpt2_weights(tmp_path):
    """Loaded with the wrong GELU (an override), GPT-2's logits change: the config.json mapping matters."""
    src = tiny(gelu="tanh")
    folder = save_hf(tmp_path / "gpt2", src)
    wrong = GPT.from_pretrained(folder, gelu="none")
    assert not torch.equal(logits_of(wrong, tokens()), logits_of(src, tokens()))


# -----------------------------------------------------------------------------
# The pad row

@pytest.mark.parametrize("extra", [1, 3])
def test_added_rows_never_hold_the_top_logit(tmp_path, extra):
    src = tiny(gelu="tanh")
    V = src.config.vocab_size
    model = GPT.from_pretrained(save_hf(tmp_path / "gpt2", src), vocab_size=V + extra)
    assert model.config.vocab_size == V + extra and model.lm_head.weight is model.transformer.wte.weight
    for seed in range(20):
        idx = tokens(n=16, vocab=V, seed=seed)
        logits, ref = logits_of(model, idx), logits_of(src, idx)
        assert torch.equal(logits[..., :V], ref)  # the real tokens' logits are untouched
        assert bool((logits.argmax(-1) < V).all())
        assert bool((logits[..., V:] <= ref.max(-1, keepdim=True).values).all())
        # the pad's logit is the mean of the real ones (its row is the mean row)
        torch.testing.assert_close(logits[..., V:], ref.mean(-1, keepdim=True).expand(-1, -1, extra))
    # and greedy decoding never emits it
    out, _ = model.generate(tokens(n=4, T=4, vocab=V), 20, temperature=0)
    assert bool((out < V).all())


def test_added_row_stays_below_for_any_hidden_state(tmp_path):
    """The LM head alone, over arbitrary final hidden states h, including one where every real logit is
    negative (embeddings sharing a common direction u, as GPT-2's do, and h = -u): a zero row would have
    the top logit there; the mean row does not."""
    src = tiny(gelu="tanh")
    u = torch.zeros(src.config.n_embd)
    u[0] = 2.0
    with torch.no_grad():
        src.transformer.wte.weight += u
    V = src.config.vocab_size
    W = GPT.from_pretrained(save_hf(tmp_path / "gpt2", src), vocab_size=V + 1).lm_head.weight.detach()[:V + 1]
    h = torch.randn(20000, src.config.n_embd, generator=torch.Generator().manual_seed(0)) * 10
    h = torch.cat([h, -u[None], -3 * u[None]])
    real = h[-2:] @ src.lm_head.weight.detach().T
    assert bool((real < 0).all())  # a zero row's logit, 0, would be the top one here
    full = h @ W.T
    assert bool((full.argmax(-1) < V).all())
    assert bool((full[:, V] <= full[:, :V].max(-1).values).all())


# -----------------------------------------------------------------------------
# The vocabulary padded to a multiple of 64 (GPT-2's 50,258 tokens with the pad: 50,304 rows)

def test_gpt2_weights_are_padded_to_64_and_the_padding_is_never_a_token(tmp_path):
    """from_pretrained pads GPT-2's embedding (the Hugging Face layout) to a multiple of VOCAB_PAD. With its padding
    rows set so that they would hold the top logit everywhere, the padded model still samples, decodes greedily
    and scores exactly as the unpadded one: the padding is never a token. A train.py checkpoint keeps it."""
    src = tiny(gelu="tanh")
    folder = save_hf(tmp_path / "gpt2", src)
    V = src.config.vocab_size + 1  # + the pad token, as --tokenizer gpt2 adds it
    model, ref = (GPT.from_pretrained(folder, vocab_size=V, **kw) for kw in ({}, {"pad_vocab_to": 1}))
    assert model.config.vocab_size == V and model.config.pad_vocab_to == VOCAB_PAD == 64
    assert model.transformer.wte.weight.shape[0] == 64 and ref.transformer.wte.weight.shape[0] == V
    assert GPTConfig(vocab_size=50258, pad_vocab_to=VOCAB_PAD).vocab_rows == 50304  # GPT-2's, as nanoGPT's
    with torch.no_grad():  # each padding row: +-1000 along one hidden axis
        axes = torch.cat([torch.eye(16), -torch.eye(16)]) * 1000
        model.transformer.wte.weight[V:] = axes[:64 - V]
    idx = tokens(vocab=V)
    x = model.transformer.wte(idx) + model.transformer.wpe.weight[:idx.shape[1]]
    for block in model.transformer.h:
        x = block(x)
    assert bool((model.lm_head(model.transformer.ln_f(x)).argmax(-1) >= V).all())  # they would dominate
    assert torch.equal(logits_of(model, idx), logits_of(ref, idx))  # ... but are no logits
    for temperature in (0.0, 1.0, 3.0):
        out, out_ref = (m.generate(idx[:3, :4], 16, temperature=temperature, num_samples=4,
                                   generator=torch.Generator().manual_seed(0)) for m in (model, ref))
        assert bool((out[0] < V).all()) and torch.equal(out[0], out_ref[0]) and torch.equal(out[1], out_ref[1])
    rows = [p for p in idx[:3, :4].tolist() for _ in range(4)]
    packed = pack(rows, out[0].tolist(), V - 1)
    assert torch.equal(sequence_logprobs(model, *packed), sequence_logprobs(ref, *packed))
    # train.py's checkpoint of the padded model loads back padded, or unpadded on request
    (tmp_path / "run").mkdir()
    torch.save({"kind": "sft", "config": dataclasses.asdict(model.config), "model": model.state_dict()},
               tmp_path / "run" / "ckpt.pt")
    back = GPT.from_pretrained(tmp_path / "run")  # its padding rows read as zeros: they hold no token
    assert back.config == model.config and torch.equal(logits_of(back, idx), logits_of(ref, idx))
    assert torch.equal(back.transformer.wte.weight[:V], ref.transformer.wte.weight)
    unpadded = GPT.from_pretrained(tmp_path / "run", pad_vocab_to=1)
    assert unpadded.transformer.wte.weight.shape[0] == V and torch.equal(logits_of(unpadded, idx), logits_of(ref, idx))
    one_line_error("pad_vocab_to must be an integer >= 1, got 0", GPT.from_pretrained, folder, pad_vocab_to=0)


# -----------------------------------------------------------------------------
# Errors: one line, naming what is wrong

def one_line_error(match, fn, *a, **kw):
    with pytest.raises(ValueError, match=match) as e:
        fn(*a, **kw)
    assert "\n" not in str(e.value), str(e.value)
    return str(e.value)


def test_missing_folder_and_missing_weights(tmp_path):
    msg = one_line_error("does not exist", GPT.from_pretrained, tmp_path / "nope")
    assert str(tmp_path / "nope") in msg and all(n in msg for n in PRETRAINED_FILES)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "config.json").write_text("{}")
    msg = one_line_error("no weights in", GPT.from_pretrained, tmp_path / "empty")
    assert str(tmp_path / "empty") in msg and all(n in msg for n in PRETRAINED_FILES)


def test_shape_and_layer_mismatches_name_the_parameter(tmp_path):
    src = tiny(gelu="tanh")
    folder = save_hf(tmp_path / "a", src)
    state = hf_state(src)
    state["transformer.h.1.mlp.c_fc.bias"] = torch.zeros(5)
    write_safetensors(folder / "model.safetensors", state)
    one_line_error(r"transformer\.h\.1\.mlp\.c_fc\.bias has shape \(5,\)", GPT.from_pretrained, folder)
    cfg = hf_config(src)
    cfg["n_layer"] = 3
    folder = save_hf(tmp_path / "b", src)
    (folder / "config.json").write_text(json.dumps(cfg))
    one_line_error(r"no weight for parameter transformer\.h\.2\.", GPT.from_pretrained, folder)


def test_safetensors_reader_errors(tmp_path):
    src = tiny(gelu="tanh")
    folder = save_hf(tmp_path / "gpt2", src)
    path = folder / "model.safetensors"
    good = path.read_bytes()
    path.write_bytes(good[:-10])
    one_line_error("truncated safetensors file", GPT.from_pretrained, folder)
    path.write_bytes(good[:5])
    one_line_error("truncated safetensors file", GPT.from_pretrained, folder)
    n = int.from_bytes(good[:8], "little")
    header = json.loads(good[8:8 + n])
    header["transformer.wte.weight"]["dtype"] = "F8_E4M3"  # a real safetensors dtype this reader lacks
    head = json.dumps(header).encode()
    head += b" " * (-len(head) % 8)
    path.write_bytes(len(head).to_bytes(8, "little") + head + good[8 + n:])
    one_line_error("tensor transformer.wte.weight has dtype 'F8_E4M3'.*does not support", GPT.from_pretrained, folder)
    path.write_bytes(good[:8] + b"x" * n + good[8 + n:])
    one_line_error("header is not JSON", GPT.from_pretrained, folder)


def test_other_errors(tmp_path):
    src = tiny(gelu="tanh")
    folder = save_hf(tmp_path / "gpt2", src)
    one_line_error("vocab_size 39 is smaller than the 40", GPT.from_pretrained, folder, vocab_size=39)
    one_line_error("block_size 64 is larger than the 32", GPT.from_pretrained, folder, block_size=64)
    one_line_error(r"unknown GPTConfig field\(s\) \['n_heads'\]", GPT.from_pretrained, folder, n_heads=2)
    cfg = hf_config(src)
    cfg["layer_norm_epsilon"] = 1e-6
    (folder / "config.json").write_text(json.dumps(cfg))
    one_line_error("layer_norm_epsilon 1e-06", GPT.from_pretrained, folder)
    cfg = hf_config(src, activation="relu")
    (folder / "config.json").write_text(json.dumps(cfg))
    one_line_error("activation_function 'relu'", GPT.from_pretrained, folder)
    state = hf_state(src, lm_head=True)
    state["lm_head.weight"] = state["lm_head.weight"] + 1
    write_safetensors(folder / "model.safetensors", state)
    (folder / "config.json").write_text(json.dumps(hf_config(src)))
    one_line_error("lm_head.weight differs from wte.weight", GPT.from_pretrained, folder)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "ckpt.pt").write_bytes(b"not a checkpoint")
    one_line_error("ckpt.pt: cannot be read", GPT.from_pretrained, tmp_path / "bad")
    torch.save({"weights": {}}, tmp_path / "bad" / "ckpt.pt")
    one_line_error("not a nanoGPT checkpoint", GPT.from_pretrained, tmp_path / "bad")


def test_malformed_files_are_one_line_errors_naming_the_file(tmp_path):
    """What a weights file or a config may hold instead of what from_pretrained needs: a tensor or a list for a
    state dict, a value that is not a tensor, a 1-D embedding, a head count that is a string or negative."""
    src = tiny(gelu="tanh")
    folder = save_hf(tmp_path / "bin", src, fmt="bin")
    path = folder / "pytorch_model.bin"
    for held in (torch.zeros(3), [torch.zeros(3)]):
        torch.save(held, path)
        msg = one_line_error(r"pytorch_model\.bin: not a state dict \(a dict of tensors\)", GPT.from_pretrained, folder)
        assert str(path) in msg
    torch.save({**hf_state(src), "transformer.h.0.ln_1.weight": 3}, path)
    one_line_error(r"pytorch_model\.bin: transformer\.h\.0\.ln_1\.weight is not a tensor \(int\)",
                   GPT.from_pretrained, folder)
    torch.save({**hf_state(src), "transformer.wte.weight": torch.zeros(640)}, path)
    one_line_error(r"pytorch_model\.bin: transformer\.wte\.weight has shape \(640,\): a matrix is expected",
                   GPT.from_pretrained, folder)
    torch.save(hf_state(src), path)
    for n_head, shown in (("2", "'2'"), (-2, "-2"), (0, "0"), (True, "True")):
        (folder / "config.json").write_text(json.dumps(dict(hf_config(src), n_head=n_head)))
        msg = one_line_error(rf"config\.json: n_head {shown} is not a positive integer", GPT.from_pretrained, folder)
        assert str(folder / "config.json") in msg
    nano = save_nanogpt(tmp_path / "nano", src)
    ckpt = torch.load(nano / "ckpt.pt", weights_only=True)
    torch.save({**ckpt, "model_args": {**ckpt["model_args"], "n_head": "2"}}, nano / "ckpt.pt")
    one_line_error(r"ckpt\.pt: n_head '2' is not a positive integer", GPT.from_pretrained, nano)
    torch.save({**ckpt, "model": {**ckpt["model"], "_orig_mod.transformer.ln_f.bias": [0.0]}}, nano / "ckpt.pt")
    one_line_error(r"ckpt\.pt: transformer\.ln_f\.bias is not a tensor \(list\)", GPT.from_pretrained, nano)
