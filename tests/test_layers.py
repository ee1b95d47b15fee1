"""The layers of the repository, pinned: every file imports only from the layers below it, every import is
at the top of its file (matplotlib and PIL aside: plotting imports them when it draws), and the two
papers' core files need nothing but torch. The house has two towers on one ground floor: the GPT side
and the GSN side share only common.py, and only the top floor (demo, bench) uses both. A file of a folder
(topr_experiments/runs.py) is a module of its own (topr_experiments.runs). Read with `ast`, never by importing."""
import ast
import itertools
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

PACKAGES = ["topr_experiments"]  # folders of modules (their __init__.py: a docstring only)
SECTION = "topr_experiments."     # the TOPR experiments, one file per RESULTS.md section
# bottom to top; a file may import the files of LOWER layers only (none of its own layer)
LAYERS = [
    ["topr", "pretrained"],              # torch only: the TOPR loss (the paper's core); GPT-2's weight files
    ["model"],                           # the GPT: torch only (and pretrained, which reads its weights)
    ["common"],                          # plumbing: device, DDP, checkpoints, metrics log, UserError, CLI
    ["data", "images"],                  # the text task; the digit images
    ["gsn", "parzen"],                   # GSN: model, training, sampling; its evaluation (Parzen, k-means, error bars)
    ["eval"],                            # GPT evaluation
    ["train"],                           # SFT and RL
    [SECTION + "runs"],                  # what the sections share: runs, the bases of (f), tables
    [SECTION + s for s in ("sft_overlap", "a_offpolicy", "bd_iterated", "c_baseline", "ej_verifier", "f_onpolicy",
                           "g_stability", "hi_reuse_composition", "k_regime")],
    [SECTION + "l_tokencredit", SECTION + "k_replicates"],  # (l), (k'): on (k)'s runs and bases
    ["experiments", "gsn_experiments"],  # each tower's experiments
    ["bench", "demo"],                   # the top floor
]
LAYER = {name: i for i, names in enumerate(LAYERS) for name in names}
LOCAL = set(LAYER)
LAZY_OK = {"matplotlib", "PIL"}      # may be imported inside a function
THIRD_PARTY = {"torch", "numpy", "tiktoken", "matplotlib", "PIL"}

# The two towers. A file of one never imports a file of the other: `python train.py` and `python eval.py`
# never load the GSN code, `python gsn.py` never loads the GPT's.
GROUND = {"common"}
TOWERS = {
    "gpt": {"topr", "pretrained", "model", "data", "eval", "train", "experiments",
            *(n for n in LAYER if n.startswith(SECTION))},
    "gsn": {"images", "gsn", "parzen", "gsn_experiments"},
}
TOP = {"bench", "demo"}              # may import both towers
# (importer, imported) never allowed, whatever the layers say: every pair across the towers, and the
# text task apart from the network it trains (data is tokens, problems and rewards; a GPT and its weights are
# model's and pretrained's)
FORBIDDEN = ({(a, b) for t, u in itertools.permutations(TOWERS, 2) for a in TOWERS[t] for b in TOWERS[u]}
             | {("data", "model"), ("data", "pretrained")})


def path_of(name):
    """A module's file: train -> train.py, topr_experiments.runs -> topr_experiments/runs.py."""
    return os.path.join(ROOT, *name.split(".")) + ".py"


def module(dotted):
    """The module an import loads: its top-level name, or for a folder of PACKAGES the folder's file."""
    parts = dotted.split(".")
    return ".".join(parts[:2]) if parts[0] in PACKAGES and len(parts) > 1 else parts[0]


def imports(path):
    """[(module, line, at module level?)] for every import statement in the file (module: see module())."""
    tree = ast.parse(open(path).read(), path)
    top = {id(n) for n in tree.body}
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(module(a.name), node.lineno, id(node) in top) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module in PACKAGES:
            out += [(module(f"{node.module}.{a.name}"), node.lineno, id(node) in top) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            out.append((module(node.module or "") if node.level == 0 else ".", node.lineno, id(node) in top))
    return out


def violations(name, path):
    """Every broken rule of file `path`, read as the repo's file `name`: one message each."""
    out = []
    for mod, line, at_top in imports(path):
        where = f"{name}.py:{line} imports {mod}"
        if mod == ".":
            out.append(f"{where}: relative import")
        elif not at_top and mod not in LAZY_OK:
            out.append(f"{where} inside a function or block: move it to the top of the file")
        elif mod in LOCAL and LAYER[mod] >= LAYER[name]:
            out.append(f"{where}: {mod} is not in a lower layer than {name} (see LAYERS)")
        elif (name, mod) in FORBIDDEN:
            out.append(f"{where}: forbidden, {name} and {mod} do not meet (see TOWERS and FORBIDDEN)")
        elif mod not in LOCAL and mod not in THIRD_PARTY and mod not in sys.stdlib_module_names:
            out.append(f"{where}: not a declared dependency")
    return out


def closure(name):
    """Every repo file that loading `name` loads, itself included (its imports, theirs, ...)."""
    seen, todo = set(), [name]
    while todo:
        n = todo.pop()
        if n not in seen:
            seen.add(n)
            todo += [mod for mod, _, _ in imports(path_of(n)) if mod in LOCAL]
    return seen


def test_every_top_level_file_has_a_layer():
    files = {f[:-3] for f in os.listdir(ROOT) if f.endswith(".py")}
    files |= {f"{p}.{f[:-3]}" for p in PACKAGES for f in os.listdir(os.path.join(ROOT, p))
              if f.endswith(".py") and f != "__init__.py"}
    assert files == LOCAL, f"place new files in LAYERS: {sorted(files ^ LOCAL)}"
    for p in PACKAGES:  # importing a module of the folder runs its __init__.py first: nothing there to load
        assert imports(os.path.join(ROOT, p, "__init__.py")) == []


def test_every_file_is_on_the_ground_floor_in_one_tower_or_on_the_top_floor():
    parts = [GROUND, TOP, *TOWERS.values()]
    assert set().union(*parts) == LOCAL and sum(map(len, parts)) == len(LOCAL)


def test_the_forbidden_pairs():
    """The pairs the towers forbid, spelled out (FORBIDDEN holds them all: every pair across the towers)."""
    for pair in [("gsn", "model"), ("gsn", "data"), ("eval", "gsn"), ("data", "model"), ("train", "gsn"),
                 ("experiments", "gsn_experiments"), ("gsn_experiments", "eval"), ("images", "data")]:
        assert pair in FORBIDDEN
    for a in TOWERS["gpt"]:
        assert {b for b in LOCAL if (a, b) in FORBIDDEN} >= {"images", "gsn", "gsn_experiments"}
    for a in TOWERS["gsn"]:
        assert {b for b in LOCAL if (a, b) in FORBIDDEN} == {"data", "model", "pretrained", "topr", "eval", "train",
                                                            "experiments", *(n for n in LOCAL if n.startswith(SECTION))}
    assert not {a for a, b in FORBIDDEN} & (GROUND | TOP)  # the top floor may use both towers


@pytest.mark.parametrize("name", sorted(LOCAL))
def test_imports_point_down_and_sit_at_the_top(name):
    assert violations(name, path_of(name)) == []


@pytest.mark.parametrize("name", ["train", "eval", "experiments", "gsn", "parzen", "gsn_experiments"])
def test_a_tower_loads_nothing_of_the_other(name):
    """What `python X.py` loads, through every import: only its own tower and the ground floor."""
    tower = next(t for t in TOWERS.values() if name in t)
    assert closure(name) <= tower | GROUND, f"{name}.py loads {sorted(closure(name) - tower - GROUND)}"


TORCH_ONLY = ["topr", "pretrained", "model"]


@pytest.mark.parametrize("name", TORCH_ONLY)
def test_the_papers_core_files_import_only_torch(name):
    """Each imports torch, the standard library and the others of these files: torch only, all the way down."""
    for mod, line, _ in imports(os.path.join(ROOT, name + ".py")):
        assert mod == "torch" or mod in TORCH_ONLY or (mod in sys.stdlib_module_names and mod not in LOCAL), \
            f"{name}.py:{line} imports {mod}"


def test_the_check_catches_what_it_should(tmp_path):
    """The rules fail on an upward import, an import inside a function, a relative import and an unknown package."""
    bad = tmp_path / "bad.py"
    bad.write_text("import os\nimport train\n\ndef f():\n    import json\n\nfrom . import x\nimport scipy\n")
    found = imports(str(bad))
    assert ("train", 2, True) in found and ("json", 5, False) in found and (".", 7, True) in found
    assert ("scipy", 8, True) in found and "scipy" not in THIRD_PARTY and "scipy" not in sys.stdlib_module_names
    msgs = sorted(violations("data", str(bad)), key=lambda m: int(m.split(":")[1].split()[0]))  # by line
    assert len(msgs) == 4 and "data.py:2 imports train: train is not in a lower layer" in msgs[0]
    assert "5 imports json inside a function" in msgs[1] and "relative import" in msgs[2]
    assert "8 imports scipy: not a declared dependency" in msgs[3]


@pytest.mark.parametrize("importer,imported", sorted(FORBIDDEN))
def test_the_check_catches_each_forbidden_pair(tmp_path, importer, imported):
    """A file that imports across the towers fails, even where LAYERS alone would let it (gsn < eval)."""
    bad = tmp_path / f"{importer}.py"
    bad.write_text(f"import {imported}\n")
    msgs = violations(importer, str(bad))
    assert len(msgs) == 1 and f"{importer}.py:1 imports {imported}" in msgs[0]
    if LAYER[imported] < LAYER[importer]:
        assert "forbidden" in msgs[0]


def test_a_folder_module_is_its_file(tmp_path):
    """`from topr_experiments import runs` and `import topr_experiments.runs` load topr_experiments.runs; a file of
    the folder importing one of a higher layer (runs importing a section) fails as any upward import does."""
    bad = tmp_path / "runs.py"
    bad.write_text("from topr_experiments import runs, k_regime\nimport topr_experiments.runs\n"
                   "from topr_experiments.k_regime import regime_runs\n")
    assert [m for m, _, _ in imports(str(bad))] == [SECTION + "runs", SECTION + "k_regime", SECTION + "runs",
                                                    SECTION + "k_regime"]
    msgs = violations(SECTION + "runs", str(bad))
    assert len(msgs) == 4 and all("is not in a lower layer than topr_experiments.runs" in m for m in msgs)
