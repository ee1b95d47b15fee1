"""common.py: flag validation, the metrics log on resume, RNG state across machines, one-process agreement;
the --device flag, the DDP wrap, atomic writes, the checkpoint loader, pyplot; its docstring's list."""
import argparse
import dataclasses
import json
import os

import pytest
import torch

import common


def test_flag_bounds_and_messages():
    frac = common.flag(float, above=0, below=1)
    assert frac("0.5") == 0.5
    for bad, message in (("1", "must be in (0, 1), got 1"), ("nan", "finite"), ("x", "not a number")):
        with pytest.raises(argparse.ArgumentTypeError, match=message.replace("(", r"\(").replace(")", r"\)")):
            frac(bad)
    assert common.positive("3") == 3
    with pytest.raises(argparse.ArgumentTypeError, match="must be >= 1, got 0"):
        common.positive("0")
    with pytest.raises(argparse.ArgumentTypeError, match="not an integer"):
        common.positive("2.5")


def test_metrics_resume_cuts_the_log_back_to_the_checkpoint(tmp_path):
    m = common.Metrics(str(tmp_path))
    for i in range(3):
        m.log(step=i)
    saved = m.rows  # what a checkpoint stores
    m.log(step=3)  # logged after the checkpoint, then a crash
    m.close()
    m = common.Metrics(str(tmp_path), resume=True, rows=saved)
    m.log(step=3)
    m.close()
    assert [json.loads(l)["step"] for l in open(tmp_path / "metrics.jsonl")] == [0, 1, 2, 3]
    common.Metrics(str(tmp_path), resume=True, rows=None).close()  # an old checkpoint: the log is kept whole
    assert len(open(tmp_path / "metrics.jsonl").readlines()) == 4


def test_rng_state_saved_with_more_gpus_than_visible(monkeypatch):
    """A checkpoint from 2 GPUs resumes on 1: each visible GPU gets its own saved state."""
    state = common.rng_state()
    state["cuda"] = [torch.zeros(16, dtype=torch.uint8), torch.ones(16, dtype=torch.uint8)]
    got = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", got.append)
    common.set_rng_state(state)
    assert len(got) == 1 and len(got[0]) == 1 and torch.equal(got[0][0], state["cuda"][0])


def test_one_process_agrees_with_itself():
    assert common.agree(True, 1, torch.device("cpu")) and not common.agree(False, 1, torch.device("cpu"))
    assert common.agree(True, 1, device=None)  # alone, no device work at all: the loops call it every step
    with pytest.raises(common.NonFiniteLoss, match="step 7"):
        common.check_finite(torch.tensor(float("nan")), 7)
    common.check_finite(torch.tensor(1.0), 7)
    # a log interval's losses, steps 10..13, checked at once: the first bad one is named
    with pytest.raises(common.NonFiniteLoss, match="loss is inf at step 12"):
        common.check_finite(torch.tensor([1.0, 2.0, float("inf"), float("nan")]), 10)
    common.check_finite(torch.tensor([1.0, 2.0]), 10)


def test_the_docstring_lists_exactly_what_common_defines():
    """Every public name of common.py is in its docstring's list, and every name listed there exists."""
    import ast
    import re
    tree = ast.parse(open(common.__file__).read())
    defined = {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
    defined |= {t.id for n in tree.body if isinstance(n, ast.Assign) for t in n.targets if isinstance(t, ast.Name)}
    public = {n for n in defined if not n.startswith("_")}
    doc = common.__doc__.split("\n\n")[1]  # the list: "  names   what they are"
    listed = set()
    for line in doc.splitlines():
        if line.startswith("  ") and not line.startswith("   "):
            names = re.split(r"\s{2,}", line.strip())[0]
            listed |= {re.sub(r"\(.*", "", n).strip("@ ") for n in names.split(", ")}
    listed.discard("...)")
    assert listed == public, (sorted(listed - public), sorted(public - listed))


def test_device_flag_auto_and_a_named_device_checked(monkeypatch):
    p = argparse.ArgumentParser()
    common.add_device_arg(p)
    assert p.parse_args([]).device == "auto"
    assert "cuda if available, else mps, else cpu" in p.format_help().replace("\n", " ").replace("  ", " ")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert common.get_device("auto") == torch.device("cpu") and common.get_device("cpu") == torch.device("cpu")
    for name, msg in (("cuda", "--device cuda: CUDA is not available"), ("cuda:1", "--device cuda:1: CUDA"),
                      ("mps", "--device mps: MPS is not available"), ("gpu", "--device gpu: ")):
        with pytest.raises(common.UserError, match=msg.replace("(", r"\(")) as e:
            common.get_device(name)
        assert "\n" not in str(e.value)


def test_ddp_wrap_alone_is_the_model_itself():
    m = torch.nn.Linear(2, 2)
    assert common.ddp_wrap(m, torch.device("cpu"), 1) is m


def test_atomic_write_whole_or_not_at_all(tmp_path):
    path = tmp_path / "sub" / "table.md"
    common.atomic_write(str(path), "old\n")  # text; creates the folder
    assert path.read_text() == "old\n"
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # an ordinary file's mode, not mkstemp's 0600

    def crash(f):
        f.write(b"half of a fi")
        raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        common.atomic_write(str(path), crash, binary=True)
    assert path.read_text() == "old\n" and os.listdir(tmp_path / "sub") == ["table.md"]  # no temp file left
    common.atomic_write(str(path), lambda f: f.write(b"new\n"), binary=True)
    assert path.read_text() == "new\n"


def test_load_checkpoint_one_shape_one_line_errors(tmp_path):
    gpt, gsn_ckpt = str(tmp_path / "gpt.pt"), str(tmp_path / "gsn.pt")
    common.atomic_save({"kind": "sft", "config": {"n_layer": 1}, "model": {"w": torch.ones(2)}, "step": 2}, gpt)
    common.atomic_save({"kind": "gsn", "config": {"model": "gsn"}, "model": {}, "step": 3}, gsn_ckpt)
    assert common.load_checkpoint(gpt)["model"]["w"].tolist() == [1.0, 1.0]
    assert common.load_checkpoint(gpt, kind="gpt")["step"] == common.load_checkpoint(gpt, kind="sft")["step"] == 2
    assert common.load_checkpoint(gsn_ckpt, kind="gsn")["step"] == 3
    (tmp_path / "bad.pt").write_bytes(open(gpt, "rb").read()[:40])  # truncated
    torch.save({"weights": {}}, tmp_path / "other.pt")
    for path, kind, msg in ((str(tmp_path / "none.pt"), None, "checkpoint not found"),
                            (str(tmp_path / "bad.pt"), None, "corrupt or unreadable checkpoint"),
                            (str(tmp_path / "other.pt"), None, "is not a train.py or gsn.py checkpoint"),
                            (str(tmp_path / "other.pt"), "rl", "is not a train.py rl checkpoint"),
                            (gsn_ckpt, "gpt", "is not a train.py checkpoint (it is a gsn.py one)"),
                            (gsn_ckpt, "sft", "is not a train.py sft checkpoint (it is a gsn.py one)"),
                            (gpt, "gsn", "is not a gsn.py checkpoint (it is a train.py one)"),
                            (gpt, "rl", "is not a train.py rl checkpoint (it is a train.py sft one)")):
        with pytest.raises(common.UserError, match=msg.replace("(", r"\(").replace(")", r"\)")) as e:
            common.load_checkpoint(path, kind=kind)
        assert "\n" not in str(e.value)


def _old_checkpoints(tmp_path):
    """One checkpoint of each schema the trainers wrote before the one schema, built by hand as they wrote
    them: train.py sft, train.py rl, gsn.py. -> {name: (path, model config dict, state_dict)}."""
    import gsn
    from model import GPT, GPTConfig
    torch.manual_seed(0)
    cfg = GPTConfig(block_size=16, vocab_size=258, n_layer=1, n_head=2, n_embd=8)
    gpt = GPT(cfg)
    opt = torch.optim.AdamW(gpt.parameters())
    gcfg = gsn.GSNConfig(model="dae", layers=1, hidden=8, max_steps=6)
    net = gsn.build_model(gcfg)
    gopt = torch.optim.Adam(net.parameters())
    for m, o in ((gpt, opt), (net, gopt)):  # one step: the optimizers have moments to save
        sum(p.square().sum() for p in m.parameters()).backward()
        o.step()
    batch = torch.Generator().manual_seed(1).get_state()
    old = {"sft": dict(model_config=dataclasses.asdict(cfg), model=gpt.state_dict(), optimizer=opt.state_dict(),
                       iter=7, best_val=1.5, in_band=False, tokenizer="byte", args={"lr": 0.003}, metrics_rows=3,
                       rng=dict(batch=batch, **common.rng_state())),
           "rl": dict(kind="rl", model_config=dataclasses.asdict(cfg), model=gpt.state_dict(),
                      optimizer=opt.state_dict(), iteration=2, step=4, samples=32, tokenizer="byte", args={},
                      metrics_rows=5, rng=common.rng_state()),
           "gsn": {"config": dataclasses.asdict(gcfg), "model": net.state_dict(), "optimizer": gopt.state_dict(),
                   "rng": common.rng_state(), "step": 6, "metrics_rows": 2}}
    out = {}
    for name, ckpt in old.items():
        os.makedirs(tmp_path / name)
        torch.save(ckpt, tmp_path / name / "ckpt.pt")
        out[name] = (str(tmp_path / name / "ckpt.pt"), ckpt.get("model_config", ckpt.get("config")), ckpt["model"])
    return out


def test_a_checkpoint_of_each_old_schema_loads_as_today_s(tmp_path):
    """sft's ("model_config", "iter"), rl's ("model_config", kind "rl", "iteration", "step") and gsn.py's ("config",
    "step", no kind) read as today's schema through the public loaders, and a trainer resumes each (Run)."""
    import eval as ev
    import gsn
    old = _old_checkpoints(tmp_path)
    for name, step in (("sft", 7), ("rl", 4), ("gsn", 6)):
        path, config, weights = old[name]
        ckpt = common.load_checkpoint(path)
        assert ckpt["kind"] == name and ckpt["config"] == config and ckpt["step"] == step
        assert "model_config" not in ckpt and "iter" not in ckpt
        if name == "gsn":
            model, cfg, _ = gsn.load_model(path, "cpu")
            assert dataclasses.asdict(cfg) == config
        else:
            model, tok, _ = ev.load_gpt(path, "cpu")
            assert dataclasses.asdict(model.config) == config and tok.name == "byte"
        assert all(torch.equal(model.state_dict()[k], v) for k, v in weights.items())
        run = common.Run(os.path.dirname(path), name, resume=True)
        opt = torch.optim.Adam(model.parameters()) if name == "gsn" else torch.optim.AdamW(model.parameters())
        assert run.restore(model, opt) == step and opt.state_dict()["state"]  # the optimizer's moments came back
        run.metrics.close()
    assert common.load_checkpoint(old["rl"][0])["iteration"] == 2 and common.load_checkpoint(old["sft"][0])["best_val"] == 1.5


def test_run_saves_one_schema_and_resumes_it(tmp_path):
    """Run: a fresh folder, save (rank 0 only), resume (the RNGs, the trainer's kind checked, the log cut back)."""
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    run = common.Run(str(tmp_path / "r"), "rl")
    assert run.ckpt == {} and run.restore(model, opt) == 0 and not run.should_stop(1, torch.device("cpu"))
    assert run.should_stop(1, torch.device("cpu"), also=True)  # a trainer's own reason (a deadline) stops it too
    run.metrics.log(step=1)
    torch.manual_seed(5)
    run.save(model, opt, {"n": 3}, 1, iteration=1, samples=8)
    after_save = torch.rand(3)
    run.metrics.log(step=2)  # logged after the checkpoint: dropped on resume
    run.metrics.close()
    common.Run(str(tmp_path / "other"), "rl", master=False).save(model, opt, {"n": 3}, 1)  # not rank 0: no file
    assert not os.path.exists(tmp_path / "other" / "ckpt.pt")
    ckpt = common.load_checkpoint(str(tmp_path / "r" / "ckpt.pt"))
    assert set(ckpt) == {"kind", "config", "model", "optimizer", "step", "rng", "metrics_rows", "iteration", "samples"}
    assert (ckpt["kind"], ckpt["config"], ckpt["step"], ckpt["metrics_rows"]) == ("rl", {"n": 3}, 1, 1)
    run = common.Run(str(tmp_path / "r"), "rl", resume=True)
    assert run.restore(torch.nn.Linear(3, 2), opt) == 1 and torch.equal(torch.rand(3), after_save)
    run.metrics.log(step=2)
    run.metrics.close()
    assert [json.loads(l)["step"] for l in open(tmp_path / "r" / "metrics.jsonl")] == [1, 2]
    with pytest.raises(common.UserError, match="is not a train.py sft checkpoint \\(it is a train.py rl one\\)"):
        common.Run(str(tmp_path / "r"), "sft", resume=True)
    with pytest.raises(common.UserError, match="checkpoint not found"):
        common.Run(str(tmp_path / "new"), "gsn", resume=True)


def test_pyplot_draws_without_a_display_and_save_figure_writes_and_closes(tmp_path):
    plt = common.pyplot()
    import matplotlib
    assert matplotlib.get_backend().lower() == "agg"
    for name, magic in (("f.png", b"\x89PNG"), ("sub/f.pdf", b"%PDF"), ("g", b"\x89PNG")):  # the suffix names it
        fig, ax = plt.subplots()
        ax.plot([0, 1])
        common.save_figure(fig, str(tmp_path / name))
        assert (tmp_path / name).read_bytes()[:4] == magic and not plt.fignum_exists(fig.number)


def test_t_quantiles_match_the_table():
    """Student's t 97.5% quantiles from any statistics table (df = n - 1)."""
    for df, q in [(1, 12.706), (2, 4.303), (3, 3.182), (4, 2.776), (9, 2.262), (29, 2.045)]:
        assert abs(common.t_quantile(0.975, df) - q) < 1e-3
    assert abs(common.t_quantile(0.95, 10) - 1.812) < 1e-3


def test_t_interval_and_the_verdict_rule():
    mean, half = common.t_interval([1.0, 2.0, 3.0])  # sd 1, n 3: half-width t(0.975, 2) / sqrt(3)
    assert mean == 2.0 and abs(half - 4.303 / 3 ** 0.5) < 1e-3
    assert common.verdict(0.05, 0.02) == "holds" and common.verdict(-0.05, 0.02) == "does not hold"
    assert common.verdict(0.01, 0.02) == "within noise" and common.verdict(-0.05, 0.02, predicted=-1) == "holds"
    with pytest.raises(ValueError):
        common.t_interval([1.0])


def test_every_run_logs_its_environment_first(tmp_path):
    m = common.Metrics(str(tmp_path), device=torch.device("cpu"))
    m.log(step=1)
    m.close()
    first = json.loads(open(tmp_path / "metrics.jsonl").readline())["env"]
    assert first["threads"] == torch.get_num_threads() and first["device"] == "cpu" and first["dtype"] == "float32"
    assert first["mkl_cbwr"] == os.environ.get("MKL_CBWR", "unset")
    assert first["cpu_capability"] == torch.backends.cpu.get_cpu_capability()


def test_load_checkpoint_empty_or_garbage_file_is_one_line_error(tmp_path):
    """An empty file (an interrupted copy, `touch ckpt.pt`) and a file of garbage bytes: a one-line UserError naming
    the file, not an IndexError from an exception whose message is empty (torch.load raises EOFError(''))."""
    (tmp_path / "empty.pt").write_bytes(b"")
    (tmp_path / "garbage.pt").write_bytes(bytes(range(256)) * 4)
    for name, msg in (("empty.pt", "empty file, not a checkpoint"), ("garbage.pt", "corrupt or unreadable checkpoint")):
        path = str(tmp_path / name)
        with pytest.raises(common.UserError, match=msg) as e:
            common.load_checkpoint(path)
        assert path in str(e.value) and "\n" not in str(e.value)


# -----------------------------------------------------------------------------
# Precision by the card, the pinned attention kernel, --deterministic (the CUDA paths' decisions, on the CPU)

def test_precision_by_the_card_bf16_else_fp16_else_a_one_line_error():
    assert common.precision_for((9, 0), True) == torch.bfloat16  # H100
    assert common.precision_for((8, 0), True) == torch.bfloat16  # A100
    assert common.precision_for((7, 5), False) == torch.float16  # T4: with a GradScaler
    assert common.precision_for((7, 0), False) == torch.float16  # V100
    with pytest.raises(common.UserError, match=r"GPU 0 \(Tesla P4\) has compute capability 6\.1.*7\.0 or newer") as e:
        common.precision_for((6, 1), False, "GPU 0 (Tesla P4)")
    assert "\n" not in str(e.value) and "--device cpu" in str(e.value)


def test_on_the_cpu_precision_is_fp32_and_nothing_is_set(monkeypatch):
    cpu = torch.device("cpu")
    assert common.amp_dtype(cpu) is None and common.sdpa_backends(cpu) is None
    before = (torch.backends.cuda.matmul.fp32_precision, torch.are_deterministic_algorithms_enabled())
    assert common.setup_precision(cpu, deterministic=True) == "precision: float32 on cpu, deterministic already"
    assert common.setup_precision(cpu, head_dim=32) == "precision: float32 on cpu, torch's choice attention"
    assert (torch.backends.cuda.matmul.fp32_precision, torch.are_deterministic_algorithms_enabled()) == before
    with common.autocast(cpu):
        assert not torch.is_autocast_enabled("cpu") and torch.backends.cuda.flash_sdp_enabled()
    scaler = common.grad_scaler(cpu)
    assert not scaler.is_enabled()
    loss = torch.tensor(2.5)
    assert scaler.scale(loss) is loss  # a disabled scaler: the plain step, the same floats


def test_grad_scaler_is_on_exactly_where_autocast_is_fp16(monkeypatch):
    for dtype, on in ((torch.float16, True), (torch.bfloat16, False), (None, False)):
        monkeypatch.setattr(common, "amp_dtype", lambda device: dtype)
        assert common.grad_scaler(torch.device("cpu")).is_enabled() == on


@pytest.mark.filterwarnings("ignore:CUDA is not available")  # torch.autocast("cuda") on a CPU build: off
def test_cuda_autocast_pins_one_attention_kernel_and_restores_torch_s_choice(monkeypatch):
    """On CUDA (its decisions, run here on the CPU): inside common.autocast only memory-efficient attention and
    its math fallback are enabled (no flash, no cuDNN), whether or not a gradient is taken; after it, all four."""
    cuda = torch.device("cuda")
    monkeypatch.setattr(common, "amp_dtype", lambda device: torch.bfloat16)
    enabled = lambda: (torch.backends.cuda.flash_sdp_enabled(), torch.backends.cuda.mem_efficient_sdp_enabled(),
                       torch.backends.cuda.math_sdp_enabled(), torch.backends.cuda.cudnn_sdp_enabled())
    assert enabled() == (True, True, True, True)
    with common.autocast(cuda):
        assert enabled() == (False, True, True, False)
    assert enabled() == (True, True, True, True)
    assert common.attention_kernel(cuda, 64) == "memory-efficient"  # GPT-2: heads of 64
    assert common.attention_kernel(cuda, 20) == "math"  # the memory-efficient kernel needs multiples of 8


def test_setup_precision_on_cuda_uses_the_current_tf32_api_and_deterministic_mode(monkeypatch):
    """TF32 through fp32_precision (reading a deprecated allow_tf32 flag after it would raise: torch refuses a
    mix), and --deterministic: deterministic algorithms and cuBLAS's workspace. Run on the CPU with a bf16 card
    assumed; torch's global settings are put back."""
    cuda = torch.device("cuda")
    saved = (torch.backends.cuda.matmul.fp32_precision, torch.backends.cudnn.conv.fp32_precision)
    monkeypatch.setattr(common, "amp_dtype", lambda device: torch.bfloat16)
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    try:
        line = common.setup_precision(cuda, head_dim=64)
        assert line == "precision: bfloat16 autocast, TF32 fp32 matmuls, memory-efficient attention"
        assert torch.backends.cuda.matmul.fp32_precision == "tf32" and torch.backends.cudnn.conv.fp32_precision == "tf32"
        assert not torch.are_deterministic_algorithms_enabled() and "CUBLAS_WORKSPACE_CONFIG" not in os.environ
        line = common.setup_precision(cuda, deterministic=True)
        assert line.endswith("deterministic (CUBLAS_WORKSPACE_CONFIG=:4096:8; slower)")
        assert torch.are_deterministic_algorithms_enabled() and os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
        monkeypatch.setattr(common, "amp_dtype", lambda device: torch.float16)
        assert common.setup_precision(cuda).startswith("precision: float16 autocast + GradScaler")
    finally:
        torch.use_deterministic_algorithms(False)
        torch.backends.cuda.matmul.fp32_precision, torch.backends.cudnn.conv.fp32_precision = saved
