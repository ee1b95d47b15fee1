"""No dead instructions: every `python X.py ...` command in README.md, RESULTS.md and exercises/README.md names
a real script, a real subcommand, and flags that script's --help lists."""
import importlib
import os
import re
import shlex

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SUBCOMMANDS = {"train": True, "eval": True, "experiments": True, "bench": True, "gsn": False, "gsn_experiments": True,
               "demo": False}


def readme_commands():
    cmds = []
    for doc in ("README.md", "RESULTS.md", "exercises/README.md"):
        path = os.path.join(ROOT, doc)
        if not os.path.exists(path):
            continue
        text = open(path).read().replace("\\\n", " ")
        for line in text.splitlines():
            for m in re.finditer(r"(?:python|torchrun[^`]*?)\s+(\w+)\.py([^`|;&]*)", line):
                if m.group(1) in SUBCOMMANDS:
                    cmds.append((doc, m.group(1), m.group(2).strip()))
    return cmds


COMMANDS = readme_commands()


def test_the_readme_has_commands():
    scripts = {c[1] for c in COMMANDS}
    assert {"train", "eval", "gsn", "experiments", "bench", "demo"} <= scripts


@pytest.mark.parametrize("doc,script,rest", COMMANDS, ids=[f"{c[1]} {c[2]}"[:60] for c in COMMANDS])
def test_readme_command_exists(doc, script, rest, capsys):
    args = shlex.split(rest.split("#")[0]) if rest else []
    args = [a for a in args if a not in ("...", ">", "2>&1")]
    module = importlib.import_module(script)
    help_args = ([args[0]] if SUBCOMMANDS[script] and args and not args[0].startswith("-") else []) + ["--help"]
    with pytest.raises(SystemExit) as e:
        module.main(help_args)
    assert e.value.code == 0, f"{doc}: `python {script}.py {rest}`: {capsys.readouterr().err}"
    help_text = capsys.readouterr().out
    for flag in (a.split("=")[0] for a in args if a.startswith("--")):
        assert flag in help_text, f"{doc}: `python {script}.py {rest}`: {flag} is not a flag of {script}.py"


def test_the_readme_stays_short():
    """One page to read: the method and the headlines; the numbers live in RESULTS.md."""
    assert len(open(os.path.join(ROOT, "README.md")).read()) < 16000
