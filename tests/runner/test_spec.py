from __future__ import annotations

from pathlib import Path

import pytest

from medtransfer.errors import ConfigError, UnknownNameError
from medtransfer.runner import default_spec_path, expand, load_spec


def test_default_spec_is_shipped_and_valid() -> None:
    spec = load_spec()
    assert default_spec_path().is_file()
    assert len(spec.models) >= 2 and all(d.startswith("phantom") for d in spec.datasets)


def test_expand_is_the_full_product_with_stable_ids(tmp_path: Path) -> None:
    f = tmp_path / "s.yaml"
    f.write_text("name: t\nmodels: [a, b]\ndatasets: [x, y, z]\nprotocols: [linear]\nseeds: [0, 1]\n")
    spec = load_spec(f)
    cells = expand(spec, precision="fp32")
    assert len(cells) == 12 and len({c.cell_id for c in cells}) == 12
    assert [c.cell_id for c in expand(load_spec(f), precision="fp32")] == [c.cell_id for c in cells]
    assert expand(spec, precision="bf16")[0].cell_id != cells[0].cell_id
    tweaked = load_spec(f, ["protocol_options={linear: {C_grid: [1.0]}}"])
    assert expand(tweaked, precision="fp32")[0].cell_id != cells[0].cell_id


def test_overrides_and_errors(tmp_path: Path) -> None:
    assert load_spec(None, ["seeds=[3, 4]"]).seeds == (3, 4)
    with pytest.raises(UnknownNameError, match="Did you mean 'seeds'"):
        load_spec(None, ["seed=1"])
    with pytest.raises(ConfigError, match="'models' parameter of GridSpec must be a non-empty list"):
        load_spec(None, ["models=[]"])


def test_fractions_multiply_cells_and_are_checked() -> None:
    spec = load_spec(None, ["models=[a]", "datasets=[x]", "protocols=[linear]", "fractions=[0.1, 1.0]"])
    assert sorted(c.fraction for c in expand(spec, precision="fp32")) == [0.1, 1.0]
    with pytest.raises(ConfigError, match=r"'fractions' parameter of GridSpec must hold floats in the range \(0, 1\]"):
        load_spec(None, ["fractions=[0]"])


def test_fewshot_ignores_label_budgets_and_user_paths_are_absolute(tmp_path: Path) -> None:
    spec = load_spec(None, ["models=[a]", f"datasets=[{tmp_path}]", "protocols=[linear, fewshot]",
                            "fractions=[0.1, 1.0]"])
    cells = expand(spec, precision="fp32")
    assert sorted((c.protocol, c.fraction) for c in cells) == [("fewshot", 1.0), ("linear", 0.1), ("linear", 1.0)]
    assert cells[0].config["dataset"] == str(tmp_path.resolve())


def test_a_mixed_2d_3d_grid_pairs_models_with_datasets_of_their_dims(caplog: pytest.LogCaptureFixture) -> None:
    spec = load_spec(None, ["models=[test-cnn, test-cnn3d, unknown-model, simclr-phantom]",
                            "datasets=[phantom-binary-32, phantom3d-binary-28]", "protocols=[linear]"])
    with caplog.at_level("INFO", logger="medtransfer.runner.spec"):
        pairs = {(c.model, c.dataset) for c in expand(spec, precision="fp32")}
    assert pairs == {("test-cnn", "phantom-binary-32"), ("test-cnn3d", "phantom3d-binary-28"),
                     ("simclr-phantom", "phantom-binary-32"),  # the default spec's step pretrains on a 2D phantom
                     ("unknown-model", "phantom-binary-32"), ("unknown-model", "phantom3d-binary-28")}
    assert "test-cnn (2D) x phantom3d-binary-28 (3D)" in caplog.text
    assert "test-cnn3d (3D) x phantom-binary-32 (2D)" in caplog.text
