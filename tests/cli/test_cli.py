import json
import subprocess
import sys

import pytest

from stereodistill import __version__
from stereodistill.cli.main import build_parser, main


def test_version(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert __version__ in capsys.readouterr().out


def _subcommand_paths(parser, prefix=()):
    for action in parser._actions:
        if action.__class__.__name__ == "_SubParsersAction":
            for name, sub in action.choices.items():
                yield (*prefix, name)
                yield from _subcommand_paths(sub, (*prefix, name))


def test_every_subcommand_has_help(capsys):
    paths = list(_subcommand_paths(build_parser()))
    assert ("data", "synth") in paths and ("data", "check") in paths and ("quickstart",) in paths
    for path in [(), *paths]:  # () is the top-level help, which formats every subcommand's summary
        with pytest.raises(SystemExit) as info:
            main([*path, "--help"])
        assert info.value.code == 0
        assert "usage: stereodistill" in capsys.readouterr().out


def test_console_script_is_installed():
    out = subprocess.run(
        [sys.executable, "-m", "stereodistill.cli.main", "--version"], capture_output=True, text=True, check=True
    )
    assert __version__ in out.stdout


def test_synth_then_check_reports_every_pair_valid(tmp_path, capsys):
    root = tmp_path / "s"
    assert main(["data", "synth", "--out", str(root), "--pairs", "12", "--size", "32x64", "--max-disp", "16"]) == 0
    assert (
        main(["data", "check", "--dataset", "sceneflow", "--root", str(root), "--json", str(tmp_path / "r.json")]) == 0
    )
    out = capsys.readouterr().out
    assert "12 pairs found, 12 valid pairs, 0 broken" in out
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["n_with_gt"] == 12 and 0 < report["disp_max"] < 16


def test_check_never_writes_its_report_over_a_file_it_checks(tmp_path, capsys):
    root = tmp_path / "s"
    main(["data", "synth", "--out", str(root), "--pairs", "2", "--size", "32x64", "--max-disp", "16"])
    truth = sorted((root / "disparity").rglob("left/*.pfm"))[0]
    before = truth.read_bytes()
    command = ["data", "check", "--dataset", "sceneflow", "--root", str(root), "--json", str(truth)]
    assert main(command) == 2
    assert "which this command reads" in capsys.readouterr().err and truth.read_bytes() == before


def test_check_lists_broken_samples_and_exits_1(tmp_path, capsys):
    root = tmp_path / "s"
    main(["data", "synth", "--out", str(root), "--pairs", "3", "--size", "32x64", "--max-disp", "16"])
    victim = sorted((root / "disparity").rglob("left/*.pfm"))[1]
    victim.write_bytes(victim.read_bytes()[:30])
    assert main(["data", "check", "--dataset", "sceneflow", "--root", str(root)]) == 1
    out = capsys.readouterr().out
    assert "2 valid pairs, 1 broken" in out and victim.name in out and "truncated" in out


def test_user_errors_are_one_line_and_exit_2(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["data", "check", "--dataset", "sceneflow", "--root", str(empty)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("stereodistill: error:") and str(empty) in err and "Traceback" not in err
    assert main(["data", "check", "--dataset", "kitti2016", "--root", str(empty)]) == 2
    assert "kitti2015" in capsys.readouterr().err  # lists (and suggests) the valid names
    assert main(["data", "check", "--dataset", "sceneflow", "--root", str(empty), "--option", "bogus"]) == 2


def test_a_file_the_system_refuses_is_a_one_line_error(tmp_path, capsys, monkeypatch):
    import numpy as np

    from stereodistill.data.formats import write_image

    for side in ("left", "right"):
        write_image(tmp_path / "cam" / side / "a.png", np.zeros((8, 8, 3)))
    locked = tmp_path / "locked"
    locked.mkdir()

    def refuse(*args, **kwargs):  # as mkstemp does: naming the hidden temporary file it tried
        raise PermissionError(13, "Permission denied", str(locked / ".p.csv.x1y2z3.tmp.csv"))

    monkeypatch.setattr("stereodistill.fileio.tempfile.mkstemp", refuse)
    assert main(["data", "pairs", str(tmp_path / "cam"), "--out", str(locked / "p.csv")]) == 2
    err = capsys.readouterr().err
    assert err == f"stereodistill: error: {locked / 'p.csv'}: cannot be written (Permission denied)\n"


def test_bad_size_is_rejected_by_the_parser(capsys):
    with pytest.raises(SystemExit) as info:
        main(["data", "synth", "--out", "x", "--size", "12by3"])
    assert info.value.code == 2
    assert "HxW" in capsys.readouterr().err


def test_models_lists_every_network_with_params_macs_and_taps(capsys):
    assert main(["models", "--size", "64x128", "--max-disp", "96"]) == 0  # CFNet: 32k, LEAStereo: 24k
    out = capsys.readouterr().out
    for arch in (
        "psmnet",
        "gwcnet-g",
        "gwcnet-gc",
        "acvnet",
        "dsnet-teacher",
        "dsnet",
        "dsnet-noatt",
        "cfnet",
        "leastereo",
    ):
        assert f"\n{arch} " in out
    assert "volume.attention" in out and "1×96×64×128" in out  # prob at 64x128 with D = 96
    assert "not at this max disparity" not in out
    # used and release parameter counts side by side (CFNet's release counts two unused modules)
    cfnet = next(line for line in out.splitlines() if line.startswith("cfnet ")).split()
    assert cfnet[1:3] == ["22,370,948", "23,051,396"]
    assert next(line for line in out.splitlines() if line.startswith("lean ")).split()[2] == "-"


def test_models_notes_a_network_that_refuses_the_max_disparity(capsys):
    assert main(["models", "--size", "64x128", "--max-disp", "48", "--no-taps"]) == 0
    out = capsys.readouterr().out
    assert "\ndsnet " in out
    cfnet = next(line for line in out.splitlines() if line.startswith("cfnet "))
    assert "not at this max disparity" in cfnet and "multiple of 32" in cfnet


def test_convert_imports_an_original_checkpoint(tmp_path, capsys):
    import torch

    from stereodistill.models import build_model

    source = build_model("dsnet", max_disp=16).eval()
    torch.save({"model": {"module." + k: v for k, v in source.state_dict().items()}}, tmp_path / "orig.ckpt")
    assert (
        main(["convert", "--arch", "dsnet", "--max-disp", "16", str(tmp_path / "orig.ckpt"), str(tmp_path / "ours")])
        == 0
    )
    from stereodistill import load_model

    loaded = load_model(tmp_path / "ours")
    for key, value in source.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value)
    # The wrong architecture is a one-line error naming the file.
    assert (
        main(["convert", "--arch", "psmnet", "--max-disp", "16", str(tmp_path / "orig.ckpt"), str(tmp_path / "x")]) == 2
    )
    err = capsys.readouterr().err
    assert "orig.ckpt" in err and "do not fit architecture 'psmnet'" in err
    assert not (tmp_path / "x.json").exists()
    command = ["convert", "--arch", "dsnet", "--max-disp", "16", str(tmp_path / "orig.ckpt")]
    before = (tmp_path / "ours.safetensors").read_bytes()
    assert main([*command, str(tmp_path / "ours")]) == 2  # an existing checkpoint is kept
    assert "ours.safetensors exists: --force" in capsys.readouterr().err
    assert (tmp_path / "ours.safetensors").read_bytes() == before
    assert main([*command, str(tmp_path / "ours"), "--force"]) == 0
    assert main([*command, str(tmp_path)]) == 2  # a folder is not a checkpoint name
    assert "is a folder: name the checkpoint" in capsys.readouterr().err
    (tmp_path / "half.json").mkdir()  # the metadata's name taken by a folder: nothing written at all
    assert main([*command, str(tmp_path / "half")]) == 2
    assert not (tmp_path / "half.safetensors").exists()
    capsys.readouterr()
    assert main([*command, str(tmp_path / "y"), "--option", "max_disp=16"]) == 2  # adapt's spelling
    assert capsys.readouterr().err == "stereodistill: error: --option max_disp: the range is --max-disp\n"


def test_quickstart_force_never_deletes_its_recipe(tmp_path, capsys):
    from importlib import resources

    out = tmp_path / "qs"
    out.mkdir()
    recipe = out / "my_recipe.yaml"
    packaged = resources.files("stereodistill.experiments.recipes") / "quickstart.yaml"
    recipe.write_text(packaged.read_text())
    assert main(["quickstart", "--out", str(out), "--recipe", str(recipe), "--force"]) == 2
    assert "--force would delete" in capsys.readouterr().err and recipe.is_file()


def test_one_vocabulary_for_budgets_devices_and_threads(capsys):
    """quickstart scales its steps with --budget FACTOR as ablate does (--steps-scale is the older
    name); every --device is checked when parsed; bench and export default to the process's cores."""
    parser = build_parser()
    assert parser.parse_args(["quickstart", "--budget", "2.5"]).steps_scale == 2.5
    assert parser.parse_args(["quickstart", "--steps-scale", "3"]).steps_scale == 3.0
    assert parser.parse_args(["quickstart"]).side_by_side  # students side by side where the CPU allows
    assert not parser.parse_args(["quickstart", "--one-at-a-time"]).side_by_side
    for factor in ("0", "inf"):
        assert main(["quickstart", "--budget", factor]) == 2
        assert "--budget must be a positive, finite factor" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parser.parse_args(["quickstart", "--seed", "-1"])  # a usage error, before anything is written
    assert "a whole number >= 0" in capsys.readouterr().err
    commands = (["eval", "c", "--list", "x.csv"], ["infer", "c", "l", "r"], ["quickstart"], ["bench", "--models", "x"])
    for command in commands:
        with pytest.raises(SystemExit):
            parser.parse_args([*command, "--device", "cuda0"])
        assert "expected auto, cpu, cuda or cuda:N" in capsys.readouterr().err
    assert parser.parse_args(["bench", "--models", "x"]).threads is None  # resolved to the usable cores
    assert parser.parse_args(["export", "c", "--onnx", "o.onnx"]).threads is None


def test_under_torchrun_a_shared_refusal_is_said_by_rank_0_and_a_local_error_names_its_rank(monkeypatch, capsys):
    from stereodistill.errors import ConfigError, SharedRefusal

    def refuse(error):
        def handler(args):
            raise error

        return handler

    import stereodistill.cli.models_cmd as models_cmd

    monkeypatch.setenv("RANK", "1")
    monkeypatch.setattr(models_cmd, "run_models", refuse(SharedRefusal("holds a run already")))
    assert main(["models"]) == 2 and capsys.readouterr().err == ""  # rank 0 says it
    monkeypatch.setattr(models_cmd, "run_models", refuse(ConfigError("only this process met it")))
    assert main(["models"]) == 2
    assert capsys.readouterr().err == "stereodistill: error (rank 1): only this process met it\n"
