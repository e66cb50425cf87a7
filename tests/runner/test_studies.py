"""The shipped reference studies: every part a valid grid, the published numbers as PROTOCOLS.md has them, and a
data check that names every missing dataset with its URL and downloads nothing."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from medtransfer.errors import UnknownNameError
from medtransfer.runner.studies import STUDIES, load_study, missing_data, published_rows, study_cells

PROTOCOLS_MD = Path(__file__).resolve().parents[3] / "shared" / "PROTOCOLS.md"
ANTON_COLUMNS = ("shenzhen", "montgomery-tb", "bach", "ichallenge-amd", "ichallenge-pm", "chexpert-effusion",
                 "stoic", "eyepacs", "chestxray14-7")
ANTON_ROWS = {"SimCLR-v1": "simclr-v1", "MoCo-v2": "moco-v2", "SwAV": "swav", "BYOL": "byol", "PIRL": "pirl",
              "Sup. R50": "supervised-r50", "Sup. R18": "supervised-r18", "Sup. D121": "supervised-d121",
              "MIMIC-CheXpert lr0.01": "mimic-chexpert-lr0.01", "MIMIC-CheXpert lr0.1": "mimic-chexpert-lr0.1",
              "MIMIC-CheXpert lr1.0": "mimic-chexpert-lr1.0", "MoCo-CXR R18": "moco-cxr-r18",
              "MoCo-CXR D121": "moco-cxr-d121"}


@pytest.mark.parametrize("name", STUDIES)
def test_every_study_is_a_valid_grid_with_published_numbers(name: str) -> None:
    study = load_study(name)
    cells = study_cells(study, precision="fp32")
    assert cells and len({c.cell_id for _, c in cells}) == len(cells)
    assert study.published and study.title and study.source.startswith("https://")
    grid = {(c.model, c.dataset, c.protocol) for _, c in cells}
    for p in study.published:  # every published number is one the grid produces, or its omission is declared
        assert (p.model, p.dataset, p.protocol) in grid or study.omitted, p
        assert 0 < p.value <= 1
    assert all(isinstance(o, str) for o in study.omitted)
    assert published_rows(study)[0]["study"] == name


def test_a_part_overrides_a_datasets_options_and_overrides_reach_every_part() -> None:
    study = load_study("anton2022", {"seeds": [0, 1]})
    parts = dict(study.parts)
    assert parts["fewshot-2way"].dataset_options["chexpert-effusion"]["uncertain"] == "ones"  # few-shot: U-Ones
    assert parts["many-shot"].dataset_options["chexpert-effusion"]["uncertain"] == "zeros"
    assert parts["fewshot-2way"].dataset_options["shenzhen"] == {"split_rule": "anton2022"}  # kept from defaults
    assert all(spec.seeds == (0, 1) for spec in parts.values())
    with pytest.raises(UnknownNameError, match="Did you mean 'anton2022'"):
        load_study("anton2021")


@pytest.mark.skipif(not PROTOCOLS_MD.is_file(), reason="../shared/PROTOCOLS.md is not here")
def test_antons_few_shot_numbers_are_the_ones_protocols_md_lists() -> None:
    text = PROTOCOLS_MD.read_text()
    table = text[text.index("Few-shot accuracy (%)"):text.index("Many-shot (%)")]
    published = {(p.model, p.dataset): p for p in load_study("anton2022").published if p.protocol == "fewshot"}
    checked = 0
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if cells[0] not in ANTON_ROWS:
            continue
        for column, cell in zip(ANTON_COLUMNS, cells[1:], strict=True):
            value, half = (float(x) / 100 for x in re.findall(r"[\d.]+", cell))
            p = published[ANTON_ROWS[cells[0]], column]
            assert (p.value, p.ci_halfwidth) == pytest.approx((value, half)), (cells[0], column)
            checked += 1
    assert checked == 13 * 9


@pytest.mark.skipif(not PROTOCOLS_MD.is_file(), reason="../shared/PROTOCOLS.md is not here")
def test_medmnist_v2_aucs_are_the_ones_protocols_md_lists() -> None:
    text = PROTOCOLS_MD.read_text()
    names = {p.dataset: p.value for p in load_study("medmnist-v2").published if p.model == "resnet18-small"}
    row = next(line for line in text.splitlines() if line.startswith("| ResNet-18 (28) |"))
    aucs = [float(c.split("/")[0]) for c in row.strip("|").split("|")[1:]]
    order = ("pathmnist", "chestmnist", "dermamnist", "octmnist", "pneumoniamnist", "retinamnist", "breastmnist",
             "bloodmnist", "tissuemnist", "organamnist", "organcmnist", "organsmnist")
    assert [names[d] for d in order] == aucs


def test_missing_data_names_every_dataset_and_downloads_nothing(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import medtransfer._download as dl

    monkeypatch.setattr(dl, "download", lambda *a, **k: pytest.fail("a data check must not download"))
    missing, downloadable = missing_data(load_study("anton2022"), str(tmp_path))
    assert len(missing) == 9 and not downloadable
    assert all("http" in m for m in missing)  # each with where to get it
    missing, downloadable = missing_data(load_study("medmnist-v2"), str(tmp_path))
    assert not missing and len(downloadable) == 18 and all("zenodo" in m for m in downloadable)


def test_cli_reproduce_dry_run_and_a_refused_run(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "medtransfer.cli", "reproduce", "freddy2023", "--data-root", str(tmp_path),
           "--store", str(tmp_path / "f.sqlite")]
    out = subprocess.run([*cmd, "--dry-run", "--measure", "--json"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    plan = json.loads(out.stdout)
    assert plan["cells"] == 3 * 2 * 2 * 3 * 3 and len(plan["to_download"]) == 3  # parts x models x protocols x ...
    costs = plan["measured_costs"]  # resnet18-small at 28 px, timed on this machine
    assert [r["arch"] for r in costs["rates"]][:1] == ["resnet18-small"] and all(r["infer"] > 0 for r in costs["rates"])
    assert all(part["cpu_h"] > 0 for part in costs["parts"])
    assert all((part["cuda_h"] is None) == ("cuda" not in costs["devices"]) for part in costs["parts"])
    missing = subprocess.run([sys.executable, "-m", "medtransfer.cli", "reproduce", "anton2022", "--data-root",
                              str(tmp_path), "--store", str(tmp_path / "a.sqlite")], capture_output=True, text=True)
    assert missing.returncode == 2 and "9 of its 9 datasets are not in place; nothing was run" in missing.stderr
    assert not (tmp_path / "a.sqlite").exists()


def test_a_part_pretrains_only_its_own_models() -> None:
    parts = dict(load_study("taleb2020").parts)
    assert {s["name"] for s in parts["retina"].pretrain} == {f"{m}-eyepacs" for m in
                                                             ("rotation", "rpl", "jigsaw", "cpc", "exemplar")}
    assert all(s["dataset"] == "msd-pancreas" for s in parts["pancreas"].pretrain)


def test_the_cpu_sized_headline_study_is_the_gpu_grid_with_shorter_schedules() -> None:
    gpu, cpu = load_study("ssl-medmnist"), load_study("ssl-medmnist-cpu")
    gpu_parts, cpu_parts = dict(gpu.parts), dict(cpu.parts)
    assert set(cpu_parts) == set(gpu_parts) - {"mednist"}  # MedNIST (64 px) is left to the GPU schedule
    for label, spec in cpu_parts.items():
        big = gpu_parts[label]
        assert (spec.models, spec.datasets, spec.protocols) == (big.models, big.datasets, big.protocols)
        assert spec.seeds == big.seeds == (0, 1, 2) and spec.fractions == big.fractions == (0.01, 0.1, 1.0)
        assert spec.models[0] == "resnet18-small"  # the random-init arm is the same network
        steps = {s["name"]: s for s in spec.pretrain}
        assert set(steps) == set(spec.models[1:]) and {s["method"] for s in steps.values()} == {"simclr",
                                                                                                "barlowtwins"}
        for name, step in steps.items():  # the same recipe, fewer epochs
            other = next(s for s in big.pretrain if s["name"] == name)
            assert {k: v for k, v in step.items() if k != "epochs"} == {k: v for k, v in other.items()
                                                                         if k != "epochs"}
            assert step["epochs"] < other["epochs"] == 200
        assert spec.protocol_options["finetune"]["preset"] == big.protocol_options["finetune"]["preset"]
    v2 = {(p.model, p.dataset): p.value for p in load_study("medmnist-v2").published}
    for study in (gpu, cpu):  # the scratch baselines beside ours are MedMNIST v2's own
        assert all(v2[p.model, p.dataset] == p.value for p in study.published)
