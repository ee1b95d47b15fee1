"""The layers of the repository, pinned: every file imports only from the layers below it, every import is
at the top of its file (matplotlib and PIL aside: plotting imports them when it draws), and the two
papers' core files need nothing but torch. Read with `ast`, never by importing."""
import ast
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# bottom to top; a file may import the files of LOWER layers only (none of its own layer)
LAYERS = [
    ["topr", "model"],               # the papers' core: torch only
    ["common"],                      # plumbing: device, DDP, checkpoints, metrics log, UserError, CLI
    ["data", "images"],              # the text task; the digit images
    ["gsn"],                         # GSN: model, training, sampling, Parzen report
    ["eval"],                        # GPT evaluation (and the eval.py CLI, which calls gsn's report)
    ["train"],                       # SFT and RL
    ["experiments", "bench", "demo"],
]
LAYER = {name: i for i, names in enumerate(LAYERS) for name in names}
LOCAL = set(LAYER)
LAZY_OK = {"matplotlib", "PIL"}      # may be imported inside a function
THIRD_PARTY = {"torch", "numpy", "tiktoken", "matplotlib", "PIL"}


def imports(path):
    """[(module's top-level name, line, at module level?)] for every import statement in the file."""
    tree = ast.parse(open(path).read(), path)
    top = {id(n) for n in tree.body}
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name.split(".")[0], node.lineno, id(node) in top) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            out.append(((node.module or "").split(".")[0] if node.level == 0 else ".", node.lineno, id(node) in top))
    return out


def test_every_top_level_file_has_a_layer():
    files = {f[:-3] for f in os.listdir(ROOT) if f.endswith(".py")}
    assert files == LOCAL, f"place new files in LAYERS: {sorted(files ^ LOCAL)}"


@pytest.mark.parametrize("name", sorted(LOCAL))
def test_imports_point_down_and_sit_at_the_top(name):
    path = os.path.join(ROOT, name + ".py")
    for mod, line, at_top in imports(path):
        where = f"{name}.py:{line} imports {mod}"
        assert mod != ".", f"{where}: relative import"
        assert at_top or mod in LAZY_OK, f"{where} inside a function or block: move it to the top of the file"
        if mod in LOCAL:
            assert LAYER[mod] < LAYER[name], f"{where}: {mod} is not in a lower layer than {name} (see LAYERS)"
        else:
            assert mod in THIRD_PARTY or mod in sys.stdlib_module_names, f"{where}: not a declared dependency"


@pytest.mark.parametrize("name", ["topr", "model"])
def test_the_papers_core_files_import_only_torch(name):
    for mod, line, _ in imports(os.path.join(ROOT, name + ".py")):
        assert mod == "torch" or (mod in sys.stdlib_module_names and mod not in LOCAL), f"{name}.py:{line} imports {mod}"


def test_the_check_catches_what_it_should(tmp_path):
    """The rules fail on an upward import, an import inside a function, and an unknown package."""
    bad = tmp_path / "bad.py"
    bad.write_text("import os\nimport train\n\ndef f():\n    import json\n\nfrom . import x\nimport scipy\n")
    found = imports(str(bad))
    assert ("train", 2, True) in found and ("json", 5, False) in found and (".", 7, True) in found
    assert ("scipy", 8, True) in found and "scipy" not in THIRD_PARTY and "scipy" not in sys.stdlib_module_names
    assert LAYER["train"] > LAYER["data"]  # data importing train would fail the layer assertion
