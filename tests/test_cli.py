from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from medtransfer.cli import app, main

runner = CliRunner()


def test_lists_and_info() -> None:
    out = runner.invoke(app, ["datasets", "list", "phantom-*-32"])
    assert out.exit_code == 0 and "phantom-grade-32" in out.stdout and "breastmnist" not in out.stdout
    out = runner.invoke(app, ["models", "list"])
    assert out.exit_code == 0 and "resnet18-small" in out.stdout
    out = runner.invoke(app, ["models", "info", "resnet50"])
    assert out.exit_code == 0 and "2048" in out.stdout
    out = runner.invoke(app, ["datasets", "info", "breastmnist-64"])
    assert out.exit_code == 0 and "malignant" in out.stdout


def test_user_error_is_one_clear_message_not_a_traceback(monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr("sys.argv", ["medtransfer", "models", "info", "resnet19"])
    with pytest.raises(SystemExit) as e:
        main()
    err = capsys.readouterr().err
    assert e.value.code == 2 and "Unknown model 'resnet19'. Did you mean 'resnet18'" in err
    assert "Traceback" not in err


def test_extract_prints_shapes_and_hits_cache() -> None:
    args = ["extract", "--model", "test-cnn", "--dataset", "phantom-binary-28", "--split", "test"]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    assert "phantom-binary-28:test (1000, 16)" in first.stdout and "images/s" in first.stdout


def test_bench_json_and_table(tmp_path: Path) -> None:
    spec = tmp_path / "s.yaml"
    spec.write_text("name: t\nmodels: [test-cnn]\ndatasets: [phantom-binary-28]\n"
                    "dataset_options: {phantom-binary-28: {n: 100}}\nprotocol_options: {linear: {n_boot: 100}}\n")
    db = tmp_path / "r.sqlite"
    out = runner.invoke(app, ["bench", str(spec), "seeds=[0, 1]", "--store", str(db), "--json"])
    assert out.exit_code == 0, out.output
    rows = json.loads(out.stdout)
    assert {(r["seed"], r["metric"]) for r in rows} == {(s, m) for s in (0, 1) for m in ("accuracy", "auc")}
    table = runner.invoke(app, ["bench", str(spec), "seeds=[0, 1]", "--store", str(db)])
    assert table.exit_code == 0 and "0 cells run, 2 already in" in table.stdout
    only_seed_1 = runner.invoke(app, ["bench", str(spec), "seeds=[1]", "--store", str(db), "--json"])
    assert {r["seed"] for r in json.loads(only_seed_1.stdout)} == {1}  # other cells of the store stay out


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="checks the error of a machine without CUDA")
def test_bench_on_a_cuda_device_that_is_not_there_stops_before_the_store(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    spec = tmp_path / "s.yaml"
    spec.write_text("name: t\nmodels: [test-cnn]\ndatasets: [phantom-binary-28]\n")
    monkeypatch.setenv("MEDTRANSFER_DEVICE", "cuda")
    out = runner.invoke(app, ["bench", str(spec), "--store", str(tmp_path / "r.sqlite")])
    assert out.exit_code != 0 and "sees no CUDA device" in str(out.exception)  # main() makes it exit 2
    assert not (tmp_path / "r.sqlite").exists()


@pytest.mark.slow
def test_default_bench_end_to_end(tmp_path: Path) -> None:
    out = runner.invoke(app, ["bench", "--store", str(tmp_path / "d.sqlite")])
    assert out.exit_code == 0, out.output
    assert "phantom-organ-32" in out.stdout


def test_eval_json_with_budget_and_options() -> None:
    out = runner.invoke(app, ["eval", "linear", "C_grid=[0.1, 1.0]", "--model", "test-cnn",
                              "--dataset", "phantom-binary-28", "--fraction", "0.1", "--json"])
    assert out.exit_code == 0, out.output
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["n_train"] == 200 and result["config"]["C_grid"] == [0.1, 1.0]
    assert result["chosen"]["C"] in (0.1, 1.0) and set(result["ci"]) == {"accuracy", "auc"}
    per_class = runner.invoke(app, ["eval", "linear", "--model", "test-cnn", "--dataset", "phantom-binary-28",
                                    "--per-class", "5", "--json"])
    assert json.loads(per_class.stdout.strip().splitlines()[-1])["n_train"] == 10


def _moco_cxr_file(path: Path, arch: str = "resnet18") -> None:
    """A checkpoint in MoCo-CXR's published layout (query encoder under module.encoder_q., fc head, optimizer)."""
    import torch

    from medtransfer.models.backbones import build

    state = {f"module.encoder_q.{k}": v for k, v in build(arch, seed=1).state_dict().items()}
    torch.save({"epoch": 20, "state_dict": state | {"module.encoder_q.fc.weight": torch.zeros(8, 8)},
                "optimizer": {}}, path)


def test_models_convert_then_list_and_info_show_it_on_disk(tmp_path: Path) -> None:
    src = tmp_path / "r8w-00001.pth.tar"
    _moco_cxr_file(src)
    out = runner.invoke(app, ["models", "list", "moco-cxr-*"])
    assert out.exit_code == 0 and "manual" in out.stdout and "on disk" not in out.stdout
    out = runner.invoke(app, ["models", "convert", "moco-cxr-r18", "--from", str(src)])
    assert out.exit_code == 0, out.output
    assert "models/moco-cxr-r18" in out.stdout.replace("\n", "")
    out = runner.invoke(app, ["models", "list", "moco-cxr-r18"])
    assert out.exit_code == 0 and "on disk" in out.stdout
    out = runner.invoke(app, ["models", "info", "moco-cxr-r18"])
    assert out.exit_code == 0 and "on disk" in out.stdout and "stanfordmlgroup/MoCo-CXR" in out.stdout


@pytest.mark.parametrize("argv, message", [
    (["models", "fetch", "pirl"], "models convert pirl --from FILE"),
    (["models", "fetch", "byol"], "Nothing was downloaded or run"),
    (["extract", "--model", "x.pth", "--dataset", "phantom-binary-28", "--format", "moco"],
     "--format moco needs --arch"),
])
def test_models_errors_are_one_message(argv: list[str], message: str, monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr("sys.argv", ["medtransfer", *argv])
    with pytest.raises(SystemExit) as e:
        main()
    err = capsys.readouterr().err
    assert e.value.code == 2 and message in " ".join(err.split()) and "Traceback" not in err  # unwrap the console


def test_extract_a_user_checkpoint_with_arch_and_format(tmp_path: Path) -> None:
    src = tmp_path / "checkpoint_0019.pth.tar"
    _moco_cxr_file(src, arch="test-cnn")
    args = ["extract", "--model", str(src), "--arch", "test-cnn", "--format", "moco", "--dataset",
            "phantom-binary-28", "--split", "test", "--input-size", "28"]
    out = runner.invoke(app, args)
    assert out.exit_code == 0, out.output
    assert "phantom-binary-28:test (1000, 16)" in out.stdout


HEAVY = ("torch", "torchvision", "pytorch_lightning", "lightning", "monai", "lightly", "timm", "sklearn", "scipy",
         "pandas", "segmentation_models_pytorch", "captum", "medmnist")
_PROBE = ("import json, sys\nfrom typer.testing import CliRunner\nfrom medtransfer.cli import app\n"
          "r = CliRunner().invoke(app, sys.argv[1:])\n"
          f"print(json.dumps({{'code': r.exit_code, 'heavy': [m for m in {HEAVY!r} if m in sys.modules]}}))")


@pytest.mark.parametrize("argv", [["--help"], ["datasets", "list"], ["datasets", "info", "breastmnist-64"],
                                  ["models", "list"], ["eval"], ["bench", "--no-such-option"]])
def test_light_commands_do_not_import_the_heavy_stack(argv: list[str]) -> None:
    # `medtransfer --help`, the lists and argument errors must answer without torch (3-5 s to import here)
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", _PROBE, *argv], capture_output=True, text=True, check=True)
    probe = json.loads(out.stdout.strip().splitlines()[-1])
    assert probe["heavy"] == [], f"{argv} imported {probe['heavy']}"
    assert probe["code"] == (0 if argv[0] in ("--help", "datasets", "models") else 2)


def _cli(*argv: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """`medtransfer ARGV` in a subprocess: stdout and stderr are pipes, as in a log or CI."""
    return subprocess.run([sys.executable, "-m", "medtransfer.cli", *argv], capture_output=True, text=True, cwd=cwd)


def test_json_output_stays_clean_and_progress_goes_to_stderr() -> None:
    out = _cli("eval", "knn", "--model", "test-cnn", "--dataset", "phantom-organ-28", "--json", "k=5")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["protocol"] == "knn"  # stdout: the JSON object alone
    lines = [line for line in out.stderr.splitlines() if line.startswith("[medtransfer ")]
    for split in ("train", "val", "test"):  # each split's extraction reports its count and speed
        assert any(f"features test-cnn / phantom-organ-28:{split}: " in line and "images/s" in line for line in lines)


def test_bench_reports_cells_on_stderr_in_a_log(tmp_path: Path) -> None:
    spec = tmp_path / "s.yaml"
    spec.write_text("name: t\nmodels: [test-cnn]\ndatasets: [phantom-binary-28]\nprotocols: [linear, knn]\n"
                    "dataset_options: {phantom-binary-28: {n: 60}}\n")
    out = _cli("bench", str(spec), "--store", str(tmp_path / "r.sqlite"))
    assert out.returncode == 0, out.stderr
    assert "grid 't': 2 cells, 0 already in" in out.stderr
    assert "cell 1/2: model=test-cnn dataset=phantom-binary-28 protocol=linear" in out.stderr
    assert "cell 2/2: model=test-cnn dataset=phantom-binary-28 protocol=knn" in out.stderr
    assert "grid done: 2 cells run" in out.stderr


def test_a_yaml_syntax_error_names_file_line_and_column_without_a_traceback(tmp_path: Path) -> None:
    spec = tmp_path / "broken.yaml"
    spec.write_text("name: t\nmodels: [test-cnn\ndatasets: [phantom-binary-28]\n")
    out = _cli("bench", str(spec), "--store", str(tmp_path / "r.sqlite"))
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert f"error: {str(spec)!r} is not valid YAML: line 3, column 9: expected ',' or ']'" in out.stderr
    assert not (tmp_path / "r.sqlite").exists()


def test_models_list_hides_the_test_models_unless_asked() -> None:
    assert "test-cnn" not in runner.invoke(app, ["models", "list"]).stdout
    assert "test-cnn3d" in runner.invoke(app, ["models", "list", "--all"]).stdout


def test_a_constant_predictor_s_kappa_carries_a_note() -> None:
    from rich.console import Console

    from medtransfer.cli import _result_table
    from medtransfer.protocols.base import ClassificationResult

    result = ClassificationResult("knn", {"accuracy": 0.25, "qw_kappa": 0.0},
                                  {"accuracy": (0.2, 0.3), "qw_kappa": (0.0, 0.0)})
    console = Console(width=200, record=True)
    console.print(_result_table(result, "t"))
    text = console.export_text()
    assert "[0.0000, 0.0000]*" in text and "the predictor is constant" in text
    varied = ClassificationResult("knn", {"qw_kappa": 0.0}, {"qw_kappa": (-0.1, 0.1)})
    console.print(_result_table(varied, "t"))
    assert console.export_text().count("predictor is constant") == 0  # export_text clears the record


def test_datasets_check_counts_a_copy_without_running_a_model(tmp_path: Path) -> None:
    folder = tmp_path / "ChinaSet_AllFiles" / "CXR_png"
    folder.mkdir(parents=True)
    for i in range(1, 21):
        Image.fromarray(np.full((6, 6), i, np.uint8)).save(folder / f"CHNCXR_{i:04d}_{i % 2}.png")
    out = _cli("datasets", "check", "shenzhen", "--data-root", str(tmp_path), "--json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert sum(s["images"] for s in report["splits"].values()) == 20
    assert sum(s["per_class"]["tuberculosis"] for s in report["splits"].values()) == 10
    assert report["n_patients_in_two_splits"] == 0 and report["published_counts"]["tuberculosis"] == 336
    missing = _cli("datasets", "check", "shenzhen", "--data-root", str(tmp_path / "nowhere"))
    assert missing.returncode == 2 and "Shenzhen: 'CXR_png' not found" in " ".join(missing.stderr.split())
