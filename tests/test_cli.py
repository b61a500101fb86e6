"""The command line without the `train` extra: every command's help, and one clear line instead of a traceback.

A base install (``pip install xnorpp``) has no torch, torchvision, tqdm, matplotlib or tensorboard.
The tests here simulate that in a subprocess with ``sys.modules[name] = None``, which makes every
import of ``name`` fail with ModuleNotFoundError, as on a machine where it is not installed.
(tests/test_install.py checks a real base install in a fresh virtual env.)
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
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


@pytest.mark.parametrize("module, says", [
    ("xnorpp_no_such_module", "needs the Python package 'xnorpp_no_such_module', which is not installed"),
    ("torch.no_such_submodule", "internal error"),  # torch is installed: a broken install, not a missing extra
])
def test_other_import_errors_are_not_mistaken_for_a_missing_extra(monkeypatch, capsys, module, says):
    def broken(args):
        __import__(module)

    monkeypatch.setattr("xnorpp.cli.run.run", broken)  # register() picks it up when main builds the parser
    assert main(["run", "m.xnor", "--dataset", "fashion-mnist"]) == 1
    err = capsys.readouterr().err
    assert says in err and "xnorpp[train]" not in err and err.count("\n") == 1
    with pytest.raises(ModuleNotFoundError, match=module):  # --debug: the traceback, for a bug report
        main(["--debug", "run", "m.xnor", "--dataset", "fashion-mnist"])


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


# -- bad input through the real `xnorpp` entry point: one line, the right exit status, never a traceback --------

XNORPP = str(Path(sys.executable).with_name("xnorpp"))


def xnorpp(*argv, env=None, cwd=None, **kw):
    run_env = {k: v for k, v in os.environ.items() if k != "XNORPP_DEBUG"}
    run_env.update({"XNORPP_NUM_THREADS": "1", **(env or {})})
    kw.setdefault("capture_output", True)
    return subprocess.run([XNORPP, *map(str, argv)], text=True, timeout=300, env=run_env,
                          cwd=cwd, **kw)


def assert_one_line_error(result, *phrases, status=2):
    assert result.returncode == status, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr and "Exception ignored" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if not line.startswith("note: ")]
    assert len(lines) == 1, result.stderr
    for phrase in phrases:
        assert phrase in lines[0], (phrase, lines[0])


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A tiny run trained through the command line, with stderr thrown away as a user's log would."""
    out = tmp_path_factory.mktemp("cli-run")
    result = xnorpp("train", "--dataset", "digits", "--recipe", "fast-cpu", "--epochs", "2", "--train-subset",
                    "256", "--model-opt", "width=8", "--model-opt", "stages=1,1", "--run-dir", out / "run",
                    "--no-tensorboard", "--threads", "1", stderr=subprocess.DEVNULL, capture_output=False,
                    stdout=subprocess.PIPE)  # as `xnorpp train ... 2>/dev/null > log`
    assert result.returncode == 0
    return out / "run", result.stdout


@pytest.fixture(scope="module")
def packed(run_dir, tmp_path_factory):
    """The run of :func:`run_dir` exported by `xnorpp export`."""
    path = tmp_path_factory.mktemp("cli-packed") / "m.xnor"
    result = xnorpp("export", run_dir[0], "-o", path)
    assert result.returncode == 0, result.stderr
    return path


def test_train_log_on_stdout_has_no_progress_bar_and_says_how_to_resume(run_dir):
    folder, stdout = run_dir
    assert "\r" not in stdout  # the bars went to stderr
    assert f"xnorpp train --resume {folder}" in stdout  # how to stop and continue, said before training
    assert "estimate from steps 2-2:" in stdout and "epoch 2/2" in stdout and "finished" in stdout


def test_progress_bars_go_to_stderr(tmp_path):
    result = xnorpp("train", "--dataset", "digits", "--recipe", "fast-cpu", "--epochs", "1", "--train-subset", "64",
                    "--model-opt", "width=4", "--run-dir", tmp_path / "r", "--no-tensorboard", "--threads", "1")
    assert result.returncode == 0, result.stderr
    assert "epoch 1/1" in result.stderr and "it/s" in result.stderr and "it/s" not in result.stdout


@pytest.mark.parametrize("command", ["summary", "approx"])
def test_a_folder_that_is_not_a_run(command, tmp_path):
    assert_one_line_error(xnorpp(command, tmp_path), f"xnorpp {command}: error:", "is not a run folder",
                          "xnorpp train")


def test_unknown_model_option_leaves_no_run_folder(tmp_path):
    result = xnorpp("train", "--model-opt", "nope=3", "--dataset", "digits", "--out-dir", tmp_path / "runs")
    assert_one_line_error(result, "model 'fmnist-net' has no option 'nope'", "its options:", "width")
    result = xnorpp("train", "--model-opt", "width=abc", "--dataset", "digits", "--out-dir", tmp_path / "runs")
    assert_one_line_error(result, "wrong type", "width='abc'")
    result = xnorpp("train", "--dataset", "mnist", "--data-root", tmp_path / "nowhere", "--out-dir", tmp_path / "runs")
    assert_one_line_error(result, "does not exist", "To get mnist")
    assert not (tmp_path / "runs").exists()


def test_a_device_this_machine_lacks(tmp_path):
    import torch

    # cuda:99 is missing on every machine: "no CUDA" here, "has N CUDA devices" on a GPU machine.
    result = xnorpp("train", "--device", "cuda:99", "--dataset", "digits", "--out-dir", tmp_path)
    assert_one_line_error(result, "device 'cuda:99' asked for", "CUDA")
    if not torch.cuda.is_available():
        assert_one_line_error(xnorpp("train", "--device", "cuda", "--dataset", "digits", "--out-dir", tmp_path),
                              "this machine has no CUDA; valid here: auto, cpu")
    assert_one_line_error(xnorpp("train", "--device", "tpu", "--out-dir", tmp_path), "valid: auto, cpu, cuda")
    assert list(tmp_path.iterdir()) == []


def test_output_into_a_closed_pipe_ends_quietly():
    # `xnorpp summary ... --format json | head`: the reader closes before xnorpp writes.
    p = subprocess.Popen([XNORPP, "summary", "resnet18", "--format", "json", "--no-packed"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    p.stdout.close()
    err = p.stderr.read().decode()
    assert p.wait(timeout=300) == 141  # 128 + SIGPIPE, as a shell tool killed by it
    assert err == ""


def test_a_pytorch_file_given_to_run_and_a_packed_file_given_to_export(run_dir, packed, tmp_path):
    folder, _ = run_dir
    assert_one_line_error(xnorpp("run", folder / "model.pt", "--dataset", "digits"),
                          "is a PyTorch file (torch.save), not a packed .xnor model", "xnorpp export")
    assert_one_line_error(xnorpp("export", packed, "-o", tmp_path / "again.xnor"),
                          "is a packed model (.xnor) already", "xnorpp run")
    assert_one_line_error(xnorpp("run", tmp_path, "--dataset", "digits"), "no packed model at")
    (tmp_path / "text.xnor").write_text("hello, this is not a model at all")
    assert_one_line_error(xnorpp("run", tmp_path / "text.xnor", "--dataset", "digits"), "not a packed .xnor model")


def test_a_pickled_object_is_refused_without_torchs_advice(tmp_path):
    import torch

    torch.save(torch.nn.Linear(2, 2), tmp_path / "whole.pt")  # a whole module: unpickling it would run code
    result = xnorpp("export", tmp_path / "whole.pt", "-o", tmp_path / "m.xnor")
    assert_one_line_error(result, "holds Python objects other than tensors", "state_dict")
    assert "weights_only" not in result.stderr  # torch's text suggests weights_only=False: never for such a file
    assert not (tmp_path / "m.xnor").exists()


def test_version():
    from xnorpp import __version__

    result = xnorpp("--version")
    assert result.returncode == 0 and result.stdout == f"xnorpp {__version__}\n" and result.stderr == ""


def test_debug_shows_the_traceback(tmp_path):
    for result in (xnorpp("--debug", "summary", tmp_path), xnorpp("summary", tmp_path, "--debug"),
                   xnorpp("summary", tmp_path, env={"XNORPP_DEBUG": "1"})):
        assert result.returncode != 0
        assert "Traceback" in result.stderr and "is not a run folder" in result.stderr


def test_a_bug_is_one_line_asking_for_a_report(monkeypatch, capsys):
    def buggy(args):
        return {}["missing"]

    monkeypatch.setattr("xnorpp.cli.run.run", buggy)
    assert main(["run", "m.xnor", "--dataset", "digits"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("xnorpp run: internal error") and "KeyError" in err and "--debug" in err
    assert err.count("\n") == 1


# -- one vocabulary: the old spellings work for one version, with a note -----------------------------------------

def test_deprecated_spellings_still_work_with_a_note(capsys):
    args = build_parser().parse_args(["run", "m.xnor", "--data", "digits"])
    assert args.dataset == "digits" and "--data is deprecated" in capsys.readouterr().err
    args = build_parser().parse_args(["approx", "run", "--data", "mnist"])
    assert args.dataset == "mnist" and "use --dataset" in capsys.readouterr().err
    args = build_parser().parse_args(["compare", "out", "--model-opts", '{"width": 32, "stages": [1, 2]}',
                                      "--model-opt", "stem=small"])
    assert "--model-opts is deprecated" in capsys.readouterr().err
    from xnorpp.cli import parse_model_opts
    assert parse_model_opts(args.model_opt) == {"width": 32, "stages": (1, 2), "stem": "small"}
    for argv in (["train"], ["compare", "out"], ["summary", "fmnist-net"]):  # one spelling wherever it applies
        assert build_parser().parse_args([*argv, "--model-opt", "width=4"]).model_opt == ["width=4"]
    for command, extra in (("run", ["m", "--dataset", "digits"]), ("approx", ["r"]), ("train", [])):
        assert build_parser().parse_args([command, *extra, "--threads", "2", "--data-root", "d"]).threads == 2


# -- xnorpp run on every data set with a test split on disk, a .npy file and a folder of images ----------------

def _reference_top1(packed, images, labels, **load) -> float:
    """Top-1 of the packed model on raw uint8 images normalized here by digits' formula: what `xnorpp run`
    must report after reading and normalizing the same images itself. (The packed model, not PyTorch: an
    image whose binary-layer input lies within rounding of 0 may take the other class in another engine,
    which tests/test_export.py bounds; this test is about the command's reading, not the kernels.)"""
    from xnorpp import runtime

    x = ((images.astype(np.float32) / np.float32(255.0) - np.float32(0.3)) / np.float32(0.38)).astype(np.float32)
    return float((runtime.load(packed, **load).predict(np.ascontiguousarray(x)).argmax(1) == labels).mean())


def test_run_a_data_set_a_npy_file_and_a_folder_of_images(packed, tmp_path):
    from PIL import Image

    from xnorpp.data.sources import load_arrays

    images, labels = load_arrays("digits", "test")
    top1 = _reference_top1(packed, images, labels)

    result = xnorpp("run", packed, "--dataset", "digits")
    assert result.returncode == 0, result.stderr
    assert f"digits test split top-1 {100 * top1:.2f}% on {len(labels)} images" in result.stdout
    result = xnorpp("run", packed, "--dataset", "digits", "--input-layer", "int8")
    assert result.returncode == 0, result.stderr
    top1_int8 = _reference_top1(packed, images, labels, input_layer="int8")
    assert f"top-1 {100 * top1_int8:.2f}% on {len(labels)} images" in result.stdout
    assert "int8 input layer" in result.stdout

    np.save(tmp_path / "x.npy", images[:40])
    np.save(tmp_path / "y.npy", labels[:40])
    result = xnorpp("run", packed, "--input", tmp_path / "x.npy", "--labels", tmp_path / "y.npy")
    assert result.returncode == 0, result.stderr
    assert f"top-1 {100 * _reference_top1(packed, images[:40], labels[:40]):.2f}% on 40 images" in result.stdout
    blocked = run_cli(["run", str(packed), "--input", str(tmp_path / "x.npy"), "--labels", str(tmp_path / "y.npy")])
    same = result.stdout.partition(" images,")[0]  # up to the speed, which varies
    assert blocked.returncode == 0 and blocked.stdout.startswith(same), blocked.stderr  # the same without torch

    result = xnorpp("run", packed, "--input", tmp_path / "x.npy")  # no labels: one prediction per line
    assert result.returncode == 0, result.stderr
    rows = [line.split("\t") for line in result.stdout.splitlines()]
    assert len(rows) == 40 and rows[3][0] == "x.npy[3]" and all(r[1] == r[3] for r in rows)  # digits: name = index

    for i in range(12):  # class folders named as the data set's classes give labels
        (tmp_path / "images" / str(labels[i])).mkdir(parents=True, exist_ok=True)
        Image.fromarray(images[i, 0]).save(tmp_path / "images" / str(labels[i]) / f"{i}.png")
    result = xnorpp("run", packed, "--input", tmp_path / "images")
    assert result.returncode == 0, result.stderr
    expected = f"top-1 {100 * _reference_top1(packed, images[:12], labels[:12]):.2f}% on 12 images"
    assert expected in result.stdout
    (tmp_path / "imagenet").mkdir()
    (tmp_path / "images").rename(tmp_path / "imagenet" / "val")  # a folder data set: <root>/val/<class>/...
    result = xnorpp("run", packed, "--dataset", "imagenet", "--data-root", tmp_path / "imagenet")
    assert result.returncode == 0 and expected in result.stdout, result.stderr


@pytest.mark.parametrize("argv, phrases", [
    (["--dataset", "fashion-mnist"], ["fashion-mnist images are 1×28×28 but the model takes 1×8×8",
                                      "exported for digits"]),
    (["--dataset", "nope"], ["unknown data set 'nope'", "fashion-mnist"]),
    (["--input", "{tmp}/missing.npy"], ["does not exist"]),
    (["--input", "{tmp}/wrong.npy"], ["expected images of shape (N, 1, 8, 8)"]),
    (["--input", "{tmp}/x.npy", "--labels", "{tmp}/wrong.npy"], ["expected 3 integer class indices"]),
    (["--dataset", "digits", "--labels", "{tmp}/x.npy"], ["--labels goes with --input"]),
])
def test_run_refuses_inputs_that_do_not_fit(packed, tmp_path, argv, phrases):
    np.save(tmp_path / "x.npy", np.zeros((3, 8, 8), np.uint8))
    np.save(tmp_path / "wrong.npy", np.zeros((3, 9, 9), np.float32))
    assert_one_line_error(xnorpp("run", packed, *[a.format(tmp=tmp_path) for a in argv]), *phrases)
