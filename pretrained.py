"""
pretrained.py -- pretrained weights from a folder the user supplies (nothing is downloaded), for
GPT.from_pretrained (model.py), looked for in this order:
  model.safetensors, pytorch_model.bin  -- GPT-2 in the Hugging Face layout, with its config.json if there is one;
  ckpt.pt                               -- a nanoGPT checkpoint (train.py's too).

  read_weights(folder)   -- (state dict in model.py's parameter names, float32; the GPTConfig fields the folder
                            tells; the file's path)
  read_safetensors(path) -- the safetensors format, read with torch alone

It checks the files' formats and that the sizes they state are sizes; whether the weights fit a GPT of that
config is for GPT.from_pretrained to check. Errors are one-line ValueErrors, like GPT.from_pretrained's own.

Imports torch only (and json, math, os, sys from the standard library).
"""
import json
import math
import os
import sys

import torch

PRETRAINED_FILES = ("model.safetensors", "pytorch_model.bin", "ckpt.pt")  # looked for in this order
# Hugging Face's GPT-2 uses Conv1D layers, whose weight is stored (in, out): nn.Linear's transposed
_CONV1D = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
_HF_GELU = {"gelu_new": "tanh", "gelu_pytorch_tanh": "tanh", "gelu_fast": "tanh", "gelu": "none"}
_SAFETENSORS_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
                       "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8,
                       "U8": torch.uint8, "BOOL": torch.bool}


def read_safetensors(path):
    """{name: tensor} from a .safetensors file, torch only. The format: 8 bytes = n, the header's length
    (little-endian u64); n bytes of JSON {name: {"dtype", "shape", "data_offsets": [begin, end]}} (offsets
    into the bytes after the header; an optional "__metadata__" entry); then the raw little-endian data."""
    if sys.byteorder != "little":
        raise ValueError(f"{path}: reading safetensors needs a little-endian machine")
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little") if size >= 8 else None
        if n is None or 8 + n > size:
            raise ValueError(f"{path}: truncated safetensors file ({size} bytes, header length {n})")
        try:
            header = json.loads(f.read(n))
        except ValueError as e:  # (JSONDecodeError and UnicodeDecodeError are ValueErrors)
            raise ValueError(f"{path}: not a safetensors file (header is not JSON: {e})") from None
        data = bytearray(size - 8 - n)  # the tensors below are views of it: one copy of the weights in memory
        f.readinto(data)
    if not isinstance(header, dict):
        raise ValueError(f"{path}: not a safetensors file (header is not a JSON object)")
    header.pop("__metadata__", None)
    out = {}
    for name, info in header.items():
        try:
            dtype_name, shape, (begin, end) = info["dtype"], [int(d) for d in info["shape"]], info["data_offsets"]
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"{path}: malformed header entry for tensor {name}: {info!r}") from None
        if dtype_name not in _SAFETENSORS_DTYPES:
            raise ValueError(f"{path}: tensor {name} has dtype {dtype_name!r}, which this reader does not support "
                             f"(supported: {', '.join(_SAFETENSORS_DTYPES)})")
        dtype = _SAFETENSORS_DTYPES[dtype_name]
        numel, itemsize = math.prod(shape), torch.empty((), dtype=dtype).element_size()
        if not 0 <= begin <= end:
            raise ValueError(f"{path}: tensor {name} has bad data_offsets {[begin, end]}")
        if end > len(data):
            raise ValueError(f"{path}: truncated safetensors file (tensor {name} ends at byte {end} of the data, "
                             f"which has {len(data)})")
        if end - begin != numel * itemsize:
            raise ValueError(f"{path}: tensor {name} holds {end - begin} bytes, but {dtype_name} {shape} needs "
                             f"{numel * itemsize}")
        if numel == 0:
            out[name] = torch.empty(shape, dtype=dtype)
        elif begin % itemsize:  # misaligned for its dtype (the format's own writer never does this): copy
            out[name] = torch.frombuffer(bytearray(data[begin:end]), dtype=dtype).reshape(shape)
        else:
            out[name] = torch.frombuffer(data, dtype=dtype, count=numel, offset=begin).reshape(shape)
    return out


def _config_from_weights(state):
    """The GPTConfig fields that the weights' shapes tell (all but n_head, dropout and gelu)."""
    wte, wpe = state["transformer.wte.weight"], state["transformer.wpe.weight"]
    return dict(vocab_size=wte.shape[0], block_size=wpe.shape[0], n_embd=wte.shape[1],
                n_layer=len({k.split(".")[2] for k in state if k.startswith("transformer.h.")}),
                bias="transformer.ln_f.bias" in state)


def _hf_config(folder, state):
    """GPTConfig fields from GPT-2's config.json (Hugging Face keys), else inferred from the weights."""
    cfg = dict(_config_from_weights(state), gelu="tanh")  # GPT-2's "gelu_new"
    cfg["n_head"] = cfg["n_embd"] // 64 if cfg["n_embd"] % 64 == 0 else None  # every GPT-2 has heads of 64
    cfg_path = os.path.join(folder, "config.json")
    if not os.path.exists(cfg_path):
        return cfg
    try:
        with open(cfg_path) as f:
            hf = json.load(f)
    except ValueError as e:
        raise ValueError(f"{cfg_path}: not valid JSON ({e})") from None
    if not isinstance(hf, dict):
        raise ValueError(f"{cfg_path}: not a model config (a JSON object is expected)")

    def unsupported(what):
        return ValueError(f"{cfg_path}: {what}, which model.py's GPT does not implement")

    if hf.get("model_type", "gpt2") != "gpt2":
        raise unsupported(f"model_type {hf['model_type']!r} (a GPT-2 is expected)")
    if hf.get("layer_norm_epsilon", 1e-5) != 1e-5:  # model.py's LayerNorm uses GPT-2's 1e-5
        raise unsupported(f"layer_norm_epsilon {hf['layer_norm_epsilon']}")
    if hf.get("activation_function", "gelu_new") not in _HF_GELU:
        raise unsupported(f"activation_function {hf['activation_function']!r}")
    if not hf.get("scale_attn_weights", True) or hf.get("scale_attn_by_inverse_layer_idx", False):
        raise unsupported("an attention scale other than 1/sqrt(head size)")
    if hf.get("n_inner") not in (None, 4 * hf.get("n_embd", cfg["n_embd"])):
        raise unsupported(f"n_inner {hf['n_inner']} (the MLP is 4 * n_embd wide)")
    cfg["gelu"] = _HF_GELU[hf.get("activation_function", "gelu_new")]
    sizes = [("n_layer", "n_layer"), ("n_head", "n_head"), ("n_embd", "n_embd"), ("vocab_size", "vocab_size"),
             ("block_size", "n_ctx"), ("block_size", "n_positions")]
    _check_sizes({theirs: hf[theirs] for _, theirs in sizes if theirs in hf}, cfg_path)
    # the context is n_positions; n_ctx is its legacy twin (read only without it), and a config where they differ
    # does not say which one the weights were trained with
    if "n_positions" in hf and "n_ctx" in hf and hf["n_positions"] != hf["n_ctx"]:
        raise ValueError(f"{cfg_path}: n_positions {hf['n_positions']} and n_ctx {hf['n_ctx']} disagree "
                         f"(both are the context length)")
    for ours, theirs in sizes:
        if theirs in hf:
            cfg[ours] = hf[theirs]
    return cfg


def _check_sizes(sizes, path):
    """The sizes a file gives ({name: value}) are positive ints (JSON and pickles hold anything: "2", -2, true)."""
    for name, v in sizes.items():
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{path}: {name} {v!r} is not a positive integer")


def _check_tensors(state, path):
    """A state dict is a dict of tensors, and wte / wpe (when there) are matrices: the config is read off
    their shapes."""
    if not isinstance(state, dict):
        raise ValueError(f"{path}: not a state dict (a dict of tensors): it holds a {type(state).__name__}")
    for k, v in state.items():
        if not isinstance(v, torch.Tensor):
            raise ValueError(f"{path}: {k} is not a tensor ({type(v).__name__})")
        if k.endswith(("wte.weight", "wpe.weight")) and v.dim() != 2:
            raise ValueError(f"{path}: {k} has shape {tuple(v.shape)}: a matrix is expected")


def _first_line(e):
    return (str(e).splitlines() or [""])[0]


def read_weights(folder):
    """(state dict in model.py's parameter names, float32; the GPTConfig fields the folder tells; the file's path).
    A nanoGPT checkpoint's model_args are returned whole (GPT.from_pretrained keeps the GPTConfig fields)."""
    folder = os.fspath(folder)
    looked_for = ", ".join(PRETRAINED_FILES)
    if not os.path.isdir(folder):
        raise ValueError(f"pretrained folder {folder} does not exist (it should hold one of {looked_for})")
    path = next((os.path.join(folder, n) for n in PRETRAINED_FILES if os.path.isfile(os.path.join(folder, n))), None)
    if path is None:
        raise ValueError(f"no weights in {folder}: looked for {looked_for}")
    state, cfg = _read_hf(path, folder) if path.endswith((".safetensors", ".bin")) else _read_nanogpt(path)
    state = {k: v.to(torch.float32) if v.is_floating_point() else v for k, v in state.items()}
    return state, cfg, path


def _read_hf(path, folder):
    """GPT-2 in the Hugging Face layout: (state dict in model.py's names, config fields)."""
    try:
        raw = read_safetensors(path) if path.endswith(".safetensors") else \
            torch.load(path, map_location="cpu", weights_only=True)
    except ValueError:
        raise
    except Exception as e:  # torch.load's errors (a truncated zip, a pickle that is not weights, ...)
        raise ValueError(f"{path}: cannot be read: {type(e).__name__}: {_first_line(e)}") from None
    _check_tensors(raw, path)
    state = {}
    for k, v in raw.items():
        k = k.removeprefix("transformer.")  # the hub's files store GPT2Model's names, without the prefix
        if k.endswith(".attn.bias") or k.endswith(".attn.masked_bias"):
            continue  # the causal-mask buffers: attention builds its own mask
        if k.endswith(_CONV1D):
            v = v.t()
        state[k if k == "lm_head.weight" else "transformer." + k] = v
    if "transformer.wte.weight" not in state or "transformer.wpe.weight" not in state:
        raise ValueError(f"{path}: no transformer.wte.weight / wpe.weight: not GPT-2 weights")
    lm_head = state.pop("lm_head.weight", None)
    if lm_head is not None and not torch.equal(lm_head, state["transformer.wte.weight"]):
        raise ValueError(f"{path}: lm_head.weight differs from wte.weight; model.py's GPT ties them")
    return state, _hf_config(folder, state)


def _read_nanogpt(path):
    """nanoGPT's ckpt.pt, {"model": state dict, "model_args": dict}, or train.py's ({"config": dict}; before the
    one checkpoint schema, "model_config"): (state dict, config fields)."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ValueError(f"{path}: cannot be read: {type(e).__name__}: {_first_line(e)}") from None
    args = next((ckpt[k] for k in ("model_args", "model_config", "config") if k in ckpt), None) if (
        isinstance(ckpt, dict) and ckpt.get("kind") != "gsn") else None
    if not isinstance(args, dict) or not isinstance(ckpt.get("model"), dict):
        raise ValueError(f"{path}: not a nanoGPT checkpoint (a dict with 'model' and 'model_args')")
    # torch.compile'd models save their parameters under `_orig_mod.`; a mask buffer may be saved as attn.bias
    state = {k.removeprefix("_orig_mod."): v for k, v in ckpt["model"].items()}
    state = {k: v for k, v in state.items() if not k.endswith((".attn.bias", ".attn.masked_bias"))}
    state.pop("lm_head.weight", None)  # tied to wte (the same tensor in nanoGPT and here)
    _check_tensors(state, path)
    if "transformer.wte.weight" not in state or "transformer.wpe.weight" not in state:
        raise ValueError(f"{path}: no transformer.wte.weight / wpe.weight: not a GPT's weights")
    _check_sizes({k: v for k, v in args.items()
                  if k in ("n_layer", "n_head", "n_embd", "vocab_size", "block_size", "pad_vocab_to")}, path)
    return state, {**_config_from_weights(state), **args}
