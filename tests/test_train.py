"""Training: a tiny run learns, writes its run folder, resumes bit-exactly, and refuses bad input clearly."""

import csv
import json

import pytest
import torch
import torch.nn.functional as F

from xnorpp.cli import main as cli_main
from xnorpp.models import create
from xnorpp.nn import BinaryConv2d, BinaryLayer
from xnorpp.train import (RECIPES, TrainConfig, get_recipe, load_model, load_state_checked, param_groups,
                          save_atomic, train)
from xnorpp.train.checkpoint import load_file
from xnorpp.train.stages import set_stage


def tiny(run_dir, **kw):
    base = dict(model="fmnist-net", dataset="digits", recipe="fast-cpu", epochs=4, batch_size=64,
                lr=5e-3, model_opts={"width": 16}, run_dir=str(run_dir), progress=False, threads=1)
    base.update(kw)
    return TrainConfig(**base)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("run") / "r"
    return train(tiny(run_dir))


def test_tiny_run_learns_and_writes_its_folder(finished_run):
    r = finished_run
    assert r.finished and r.test_top1 > 60.0  # chance is 10 %
    folder = __import__("pathlib").Path(r.run_dir)
    for name in ("config.json", "metrics.csv", "checkpoint.pt", "model.pt", "result.json"):
        assert (folder / name).is_file(), name
    assert any((folder / "tb").iterdir())
    rows = list(csv.DictReader(open(folder / "metrics.csv")))
    assert [int(row["epoch"]) for row in rows] == [1, 2, 3, 4]
    assert float(rows[-1]["test_top1"]) == pytest.approx(r.test_top1, abs=1e-3)
    assert float(rows[0]["train_loss"]) > float(rows[-1]["train_loss"])
    ckpt = torch.load(folder / "checkpoint.pt", weights_only=True)
    assert {"model", "optimizer", "scheduler", "rng", "epoch", "config"} <= set(ckpt) and ckpt["epoch"] == 4
    assert json.loads((folder / "result.json").read_text())["test_top1"] == pytest.approx(r.test_top1)


def test_load_model_reproduces_the_reported_accuracy(finished_run):
    from xnorpp.train import evaluate
    model = load_model(finished_run.run_dir)
    assert not model.training
    assert evaluate(model, "digits")["top1"] == pytest.approx(finished_run.test_top1, abs=1e-6)


def test_resume_after_a_kill_equals_an_uninterrupted_run(tmp_path):
    whole = train(tiny(tmp_path / "whole", seed=5))
    part = train(tiny(tmp_path / "part", seed=5, stop_after=2))
    assert not part.finished and not (tmp_path / "part" / "model.pt").exists()
    resumed = train(tiny(tmp_path / "part", seed=5, resume=True))
    assert resumed.finished
    a = load_file(tmp_path / "whole" / "model.pt")["model"]
    b = load_file(tmp_path / "part" / "model.pt")["model"]
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert resumed.test_top1 == whole.test_top1
    rows = list(csv.DictReader(open(tmp_path / "part" / "metrics.csv")))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4]


def test_existing_run_is_not_overwritten_and_resume_checks_config(finished_run):
    with pytest.raises(FileExistsError, match="--resume"):
        train(tiny(finished_run.run_dir))
    with pytest.raises(ValueError, match="different configuration.*lr"):
        train(tiny(finished_run.run_dir, lr=0.5, resume=True))
    with pytest.raises(ValueError, match="different configuration.*model_opts"):
        train(tiny(finished_run.run_dir, model_opts={"width": 8}, resume=True))


def test_checkpoint_from_another_model_gives_a_clear_error(finished_run):
    other = create("fmnist-net", in_channels=1, input_size=8, width=8)
    state = load_file(finished_run.run_dir + "/model.pt")["model"]
    with pytest.raises(ValueError, match="does not fit model 'fmnist-net'.*shape mismatch"):
        load_state_checked(other, state)
    resnet = create("resnet18", in_channels=1, input_size=8, width=8)
    with pytest.raises(ValueError, match="missing from the checkpoint"):
        load_state_checked(resnet, state)


@pytest.mark.parametrize("field,value,valid", [("model", "resnet9", "fmnist-net"), ("dataset", "svhn", "digits"),
                                               ("recipe", "sgd", "fast-cpu"), ("scaling", "gamma", "gamma-o-h-w")])
def test_unknown_names_list_the_valid_ones(tmp_path, field, value, valid):
    with pytest.raises(ValueError, match=f"{value}.*{valid}"):
        train(tiny(tmp_path / "x", **{field: value}))


def test_cli_reports_bad_names_without_a_traceback(capsys):
    assert cli_main(["train", "--recipe", "nope", "--dataset", "digits"]) == 2
    err = capsys.readouterr().err
    assert "unknown recipe 'nope'" in err and "xnorpp-paper" in err and "Traceback" not in err
    assert cli_main(["train", "--list"]) == 0
    assert "fmnist-net" in capsys.readouterr().out


def test_cli_resume_reuses_saved_settings(tmp_path, capsys):
    args = ["train", "--dataset", "digits", "--recipe", "fast-cpu", "--epochs", "2", "--model-opt", "width=4",
            "--run-dir", str(tmp_path / "c"), "--no-progress", "--no-tensorboard", "--threads", "1"]
    assert cli_main(args + ["--stop-after", "1"]) == 0
    assert "stopped" in capsys.readouterr().out
    assert cli_main(["train", "--resume", str(tmp_path / "c"), "--lr", "1"]) == 2
    assert "cannot change: lr" in capsys.readouterr().err
    assert cli_main(["train", "--resume", str(tmp_path / "c"), "--no-progress"]) == 0
    assert "finished" in capsys.readouterr().out and (tmp_path / "c" / "result.json").is_file()


def test_no_weight_decay_on_scaling_factors_prelu_bn():
    model = create("fmnist-net", in_channels=1, input_size=28, width=4)
    groups = param_groups(model, 1e-4)
    decayed = {id(p) for g in groups if g["weight_decay"] > 0 for p in g["params"]}
    for name, p in model.named_parameters():
        is_weight = name.endswith("weight") and p.dim() >= 2
        assert (id(p) in decayed) == is_weight, name
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))


def test_latent_weights_are_clipped_when_asked(tmp_path):
    train(tiny(tmp_path / "clip", epochs=1, lr=0.3, clip_weights=True, tensorboard=False))
    model = load_model(tmp_path / "clip")
    w = torch.cat([m.weight.flatten() for m in model.modules() if isinstance(m, BinaryLayer)])
    assert w.abs().max() <= 1.0


def test_recipes_are_documented_and_schedules_behave():
    assert set(RECIPES) == {"xnorpp-paper", "bnn-two-step", "fast-cpu"}
    paper = get_recipe("xnorpp-paper")
    assert paper.lr == 1e-3 and paper.schedule == "step"
    assert [paper.lr_factor(s, 100) for s in (0, 49, 50, 74, 75, 99)] == [1, 1, 0.1, 0.1, 0.01, 0.01]
    fast = get_recipe("fast-cpu")
    assert fast.lr_factor(0, 600) < 0.05 and fast.lr_factor(99, 600) == pytest.approx(1.0)
    assert fast.lr_factor(599, 600) < 1e-3
    two = get_recipe("bnn-two-step")
    assert two.stage(0, 10) == 1 and two.stage(5, 10) == 2 and two.lr_factor(50, 100) == pytest.approx(1.0)


def test_two_step_stage_one_uses_real_weights_with_binary_activations():
    torch.manual_seed(0)
    conv = BinaryConv2d(3, 4, 3, padding=1, bias=False, scaling="gamma-o")
    x = torch.randn(2, 3, 6, 6)
    model = torch.nn.Sequential(conv)
    set_stage(model, 1)
    ref = F.conv2d(torch.where(x < 0, -1.0, 1.0), conv.weight, padding=1) * conv.scale_channel.view(-1, 1, 1)
    torch.testing.assert_close(model(x), ref)
    set_stage(model, 2)
    ref2 = F.conv2d(torch.where(x < 0, -1.0, 1.0), torch.where(conv.weight < 0, -1.0, 1.0), padding=1)
    torch.testing.assert_close(model(x), ref2)


def test_save_atomic_leaves_no_temporary_files(tmp_path):
    save_atomic({"model": {"w": torch.ones(2)}}, tmp_path / "c.pt")
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]
    with pytest.raises(ValueError, match="not an xnorpp checkpoint"):
        save_atomic([1, 2], tmp_path / "bad.pt")
        load_file(tmp_path / "bad.pt")


def test_demo_flow_on_a_tiny_stand_in_for_fashion_mnist(tmp_path, capsys):
    from test_data import make_idx_folder

    from xnorpp.train.demo import print_demo, run_demo
    make_idx_folder(tmp_path, n_train=64, n_test=16)
    demo = run_demo(out_dir=str(tmp_path / "demo"), data_root=str(tmp_path), epochs=1, budget_s=3600,
                    progress=False)
    print_demo(demo)
    out = capsys.readouterr().out
    assert [r.label for r in demo.rows] == ["XNOR-Net++ (gamma-o-h-w)", "XNOR-Net (xnor)", "float (same network)"]
    assert demo.rows[1].result.scaling == "xnor" and demo.rows[2].result.model == "float-fmnist-net"
    assert "XNOR-Net++ (gamma-o-h-w)" in out and str((tmp_path / "demo").resolve()) in out
    assert (tmp_path / "demo" / "xnorpp-gamma-o-h-w" / "result.json").is_file()
    skipped = run_demo(out_dir=str(tmp_path / "demo"), data_root=str(tmp_path), epochs=1, budget_s=0,
                       progress=False)  # reruns over the old folders; no time left for baselines
    assert len(skipped.rows) == 1


def test_compile_policy():
    from xnorpp.train.loop import COMPILE_MIN_STEPS, use_compile

    cpu = torch.device("cpu")
    assert use_compile(True, 1, cpu) and not use_compile(False, 10**9, cpu)
    assert not use_compile(None, COMPILE_MIN_STEPS - 1, cpu)  # a short run would spend more compiling than it saves
    assert use_compile(None, COMPILE_MIN_STEPS, torch.device("cuda"))


@pytest.mark.slow
def test_compiled_training_follows_the_eager_loss_curve(tmp_path):
    eager = train(tiny(tmp_path / "eager", epochs=2, compile=False, model_opts={"width": 8}))
    compiled = train(tiny(tmp_path / "compiled", epochs=2, compile=True, model_opts={"width": 8}))
    rows = [list(csv.DictReader(open(tmp_path / name / "metrics.csv"))) for name in ("eager", "compiled")]
    for a, b in zip(*rows):
        for key in ("train_loss", "test_loss"):
            assert float(b[key]) == pytest.approx(float(a[key]), rel=5e-2), (key, a, b)  # measured: <= 1.7 %
    assert abs(compiled.test_top1 - eager.test_top1) < 5.0
    # what training saves is the plain module's state: it loads into an eager model
    assert load_model(compiled.run_dir)(torch.zeros(1, 1, 8, 8)).shape == (1, 10)
