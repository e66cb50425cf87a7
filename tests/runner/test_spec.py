from __future__ import annotations

from pathlib import Path

import pytest

from medtransfer.errors import ConfigError
from medtransfer.runner import default_spec_path, expand, load_spec


def test_default_spec_is_shipped_and_valid() -> None:
    spec = load_spec()
    assert default_spec_path().is_file()
    assert len(spec.models) >= 2 and all(d.startswith("phantom") for d in spec.datasets)


def test_expand_is_the_full_product_with_stable_ids(tmp_path: Path) -> None:
    f = tmp_path / "s.yaml"
    f.write_text("name: t\nmodels: [test-cnn, small-cnn]\ndatasets: [phantom-binary-28, phantom-organ-28, "
                 "phantom-grade-28]\nprotocols: [linear]\nseeds: [0, 1]\n")
    spec = load_spec(f)
    cells = expand(spec, precision="fp32")
    assert len(cells) == 12 and len({c.cell_id for c in cells}) == 12
    assert [c.cell_id for c in expand(load_spec(f), precision="fp32")] == [c.cell_id for c in cells]
    assert expand(spec, precision="bf16")[0].cell_id != cells[0].cell_id
    tweaked = load_spec(f, ["protocol_options={linear: {C_grid: [1.0]}}"])
    assert expand(tweaked, precision="fp32")[0].cell_id != cells[0].cell_id


def test_overrides_and_errors(tmp_path: Path) -> None:
    assert load_spec(None, ["seeds=[3, 4]"]).seeds == (3, 4)
    with pytest.raises(ConfigError, match="Did you mean 'seeds'"):
        load_spec(None, ["seed=1"])
    with pytest.raises(ConfigError, match="'models' parameter of GridSpec must be a non-empty list"):
        load_spec(None, ["models=[]"])


def test_fractions_multiply_cells_and_are_checked() -> None:
    spec = load_spec(None, ["models=[test-cnn]", "datasets=[phantom-binary-28]", "protocols=[linear]",
                            "fractions=[0.1, 1.0]"])
    assert sorted(c.fraction for c in expand(spec, precision="fp32")) == [0.1, 1.0]
    with pytest.raises(ConfigError, match=r"'fractions' parameter of GridSpec must hold floats in the range \(0, 1\]"):
        load_spec(None, ["fractions=[0]"])


def test_fewshot_ignores_label_budgets_and_user_paths_are_absolute(tmp_path: Path) -> None:
    spec = load_spec(None, ["models=[test-cnn]", f"datasets=[{tmp_path}]", "protocols=[linear, fewshot]",
                            "fractions=[0.1, 1.0]"])
    cells = expand(spec, precision="fp32")
    assert sorted((c.protocol, c.fraction) for c in cells) == [("fewshot", 1.0), ("linear", 0.1), ("linear", 1.0)]
    assert cells[0].config["dataset"] == str(tmp_path.resolve())


def test_a_mixed_2d_3d_grid_pairs_models_with_datasets_of_their_dims(tmp_path: Path) -> None:
    from medtransfer.models import MODELS, create
    from medtransfer.models.local import save_model_dir
    from medtransfer.runner.spec import mismatched_pairs

    folder = save_model_dir(tmp_path / "my-3d-model", create("test-cnn3d"), MODELS.get("test-cnn3d"))
    spec = load_spec(None, [f"models=[test-cnn, test-cnn3d, simclr-phantom, {folder}]",
                            "datasets=[phantom-binary-32, phantom3d-binary-28]", "protocols=[linear]"])
    pairs = {(c.model, c.dataset) for c in expand(spec, precision="fp32")}
    assert pairs == {("test-cnn", "phantom-binary-32"), ("test-cnn3d", "phantom3d-binary-28"),
                     ("simclr-phantom", "phantom-binary-32"),  # the default spec's step pretrains on a 2D phantom
                     (str(folder), "phantom3d-binary-28")}  # a model folder: the dims of its card
    assert mismatched_pairs(spec) == ["test-cnn (2D) x phantom3d-binary-28 (3D)",
                                      "test-cnn3d (3D) x phantom-binary-32 (2D)",
                                      "simclr-phantom (2D) x phantom3d-binary-28 (3D)",
                                      f"{folder} (3D) x phantom-binary-32 (2D)"]


def test_a_model_or_dataset_without_a_partner_of_its_dims_is_an_error() -> None:
    lone_model = load_spec(None, ["models=[test-cnn, test-cnn3d]", "datasets=[phantom-binary-32]"])
    with pytest.raises(ConfigError, match=r"model test-cnn3d \(3D\) has no partner of the same dims"):
        expand(lone_model, precision="fp32")
    lone_dataset = load_spec(None, ["models=[test-cnn]", "datasets=[phantom3d-binary-28, phantom-binary-32]"])
    with pytest.raises(ConfigError, match=r"dataset phantom3d-binary-28 \(3D\) has no partner.*resnet18-3d-small"):
        expand(lone_dataset, precision="fp32")


def test_protocols_pair_with_datasets_of_their_kind() -> None:
    from medtransfer.runner.spec import protocol_mismatches

    spec = load_spec(None, ["models=[test-cnn]", "datasets=[phantom-seg-organs-28, phantom-binary-28]",
                            "protocols=[segment, knn]"])
    assert {(c.protocol, c.dataset) for c in expand(spec, precision="fp32")} == {
        ("segment", "phantom-seg-organs-28"), ("knn", "phantom-binary-28")}
    assert protocol_mismatches(spec) == ["segment x phantom-binary-28 (classification)",
                                         "knn x phantom-seg-organs-28 (segmentation)"]
    with pytest.raises(ConfigError, match="protocol 'segment' has no dataset of its kind in the grid"):
        load_spec(None, ["models=[test-cnn]", "datasets=[phantom-binary-28]", "protocols=[segment]"])
    with pytest.raises(ConfigError, match="'drive' is a segmentation dataset and no protocol of the grid segments"):
        load_spec(None, ["models=[test-cnn]", "datasets=[drive, phantom-binary-28]", "protocols=[linear]"])
    with pytest.raises(ConfigError, match=r"protocol_options of 'segment': .*Unknown key 'epoch'"):
        load_spec(None, ["models=[test-cnn]", "datasets=[drive]", "protocols=[segment]",
                         "protocol_options={segment: {epoch: 3}}"])
