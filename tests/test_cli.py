"""The command line without the `train` extra: every command's help, and one clear line instead of a traceback.

A base install (``pip install xnorpp``) has no torch, torchvision, tqdm, matplotlib or tensorboard.
The tests here simulate that in a subprocess with ``sys.modules[name] = None``, which makes every
import of ``name`` fail with ModuleNotFoundError, as on a machine where it is not installed.
(tests/test_install.py checks a real base install in a fresh virtual env.)
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from xnorpp.cli import COMMANDS, TORCH_FREE_COMMANDS, build_parser, main

NEEDS_TORCH = "this command needs PyTorch; install it with: pip install 'xnorpp[train]'"


def run_cli(argv, block=("torch",), cwd=None):
    """``xnorpp ARGV`` in a fresh interpreter where the modules ``block`` cannot be imported."""
    code = ("import sys\n"
            f"for name in {list(block)!r}:\n"
            "    sys.modules[name] = None\n"
            "from xnorpp.cli import main\n"
            f"sys.exit(main({list(argv)!r}))\n")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=cwd)


@pytest.mark.parametrize("argv", [["--help"]] + [[c, "--help"] for c in COMMANDS], ids=" ".join)
def test_help_of_every_command_works_without_torch(argv):
    result = run_cli(argv)
    assert result.returncode == 0, result.stderr
    assert "usage: xnorpp" in result.stdout and result.stderr == ""
    if argv[0] in COMMANDS and argv[0] not in TORCH_FREE_COMMANDS:  # the help says which extra it needs
        assert "pip install 'xnorpp[train]'" in " ".join(result.stdout.split())


def test_building_the_parser_imports_no_heavy_module():
    code = ("import sys\n"
            "from xnorpp.cli import build_parser\n"
            "build_parser()\n"
            "heavy = ('torch', 'torchvision', 'tqdm', 'matplotlib', 'tensorboard', 'numpy', 'xnorpp.analysis',\n"
            "         'xnorpp.train', 'xnorpp.export', 'xnorpp.models', 'xnorpp.runtime')\n"
            "print(sorted(m for m in sys.modules if m.partition('.')[0] in heavy or m in heavy))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize("argv", [
    ["train", "--list"],
    ["export", "{tmp}/model.pt", "-o", "{tmp}/model.xnor"],
    ["summary", "fmnist-net"],
    ["approx", "{tmp}/run"],
    ["compare", "{tmp}/cmp", "--epochs", "1"],
    ["report", "{tmp}/cmp"],
    ["demo", "--out-dir", "{tmp}/demo"],
], ids=lambda argv: argv[0])
def test_torch_commands_without_torch_say_which_extra_to_install(argv, tmp_path):
    result = run_cli([a.format(tmp=tmp_path) for a in argv], cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr == f"xnorpp {argv[0]}: {NEEDS_TORCH}\n"  # one line, no traceback
    assert result.stdout == "" and list(tmp_path.iterdir()) == []  # nothing was started


def test_a_missing_extra_module_deep_inside_training_gets_the_same_line(tmp_path):
    # torch is there but tqdm is not: `xnorpp train` gets as far as the training loop.
    result = run_cli(["train", "--dataset", "digits", "--recipe", "fast-cpu", "--epochs", "1", "--train-subset",
                      "16", "--model-opt", "width=4", "--run-dir", str(tmp_path / "r"), "--no-tensorboard",
                      "--threads", "1"], block=("tqdm",))
    assert result.returncode == 1
    assert result.stderr == "xnorpp train: this command needs tqdm; install it with: pip install 'xnorpp[train]'\n"


@pytest.mark.parametrize("module", ["xnorpp_no_such_module", "torch.no_such_submodule"])
def test_other_import_errors_are_not_mistaken_for_a_missing_extra(monkeypatch, module):
    # A module outside the extra, or a submodule of an installed package (a broken install): a traceback.
    def broken(args):
        __import__(module)

    monkeypatch.setattr("xnorpp.cli.run.run", broken)  # register() picks it up when main builds the parser
    with pytest.raises(ModuleNotFoundError, match=module):
        main(["run", "m.xnor", "--data", "fashion-mnist"])


def test_compare_defaults_to_the_librarys_scalings(monkeypatch, tmp_path, capsys):
    # The parser leaves --scalings unset (its default lives in xnorpp.analysis, which imports torch);
    # the command fills in the library's DEFAULT_SCALINGS when it runs.
    import xnorpp.analysis
    from xnorpp.analysis.compare import DEFAULT_SCALINGS

    assert build_parser().parse_args(["compare", str(tmp_path)]).scalings is None
    seen = {}

    class Result:
        def markdown(self):
            return "table"

    def fake_compare(out_dir, **kwargs):
        seen.update(kwargs)
        return Result()

    monkeypatch.setattr(xnorpp.analysis, "compare", fake_compare)
    assert main(["compare", str(tmp_path)]) == 0
    assert seen["scalings"] == list(DEFAULT_SCALINGS)
    assert main(["compare", str(tmp_path), "--scalings", "xnor", "float"]) == 0
    assert seen["scalings"] == ["xnor", "float"]
    assert seen["seeds"] == [0] and capsys.readouterr().out.count("table") == 2
