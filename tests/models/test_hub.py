"""The hub: safe reading (truncated files, code-running pickles), digests and the lock file, fetch and convert."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch

from medtransfer.errors import CheckpointError, ChecksumError, ConfigError, DownloadError
from medtransfer.models import MODELS, ModelCard, create
from medtransfer.models.backbones import build
from medtransfer.models.hub import (
    LOCK_FILE,
    check_digest,
    convert,
    convert_file,
    converted_dir,
    fetch,
    home,
    import_checkpoint,
    is_converted,
    published_file,
    read_checkpoint,
    read_lock,
    weights_status,
)


class _RunsCode:
    """A pickle payload whose unpickling creates `marker`: what a malicious checkpoint would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return open, (str(self.marker), "w")


def _moco_file(path: Path, arch: str = "resnet18", seed: int = 1) -> torch.nn.Module:
    """A MoCo-layout checkpoint of `arch` (the format MoCo-CXR-R18 is published in)."""
    model = build(arch, seed=seed).eval()
    state = {f"module.encoder_q.{k}": v for k, v in model.state_dict().items()}
    state["module.encoder_q.fc.weight"] = torch.zeros(128, 512)
    torch.save({"epoch": 20, "arch": arch, "state_dict": state, "optimizer": {"param_groups": []}}, path)
    return model


@pytest.fixture
def card(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> ModelCard:
    """A zoo card 'test-moco' whose published file sits at a file:// URL, with no pinned sha256."""
    src = tmp_path / "published" / "r8w-00001.pth.tar"
    src.parent.mkdir()
    _moco_file(src)
    card = ModelCard("test-moco", "resnet18", 512, url=src.as_uri(), converter="moco", filename=src.name,
                     description="test")
    monkeypatch.setitem(MODELS._entries, card.name, card)
    return card


# ------------------------------------------------------------------------------------------------ safe reading
def test_code_running_pickle_is_refused_and_runs_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "pretrain_res50x1.pkl"
    path.write_bytes(pickle.dumps({"experiment_state": _RunsCode(marker)}))
    with pytest.raises(CheckpointError, match="needs a full unpickle, which can run arbitrary code. Nothing was "
                                              "read or run. .*pass --trust"):
        read_checkpoint(path, "pickle")
    assert not marker.exists()


def test_code_running_torch_file_is_refused_and_runs_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "moco.pth.tar"
    torch.save({"state_dict": {}, "payload": _RunsCode(marker)}, path)
    with pytest.raises(CheckpointError, match="Refused to read .*Nothing was run. If you trust"):
        convert_file(path, arch="resnet18", converter="moco")
    assert not marker.exists()


def test_trust_really_unpickles(tmp_path: Path) -> None:
    # the other side of the refusal: --trust means the file's code runs, which is why it is opt-in per file
    marker = tmp_path / "ran"
    path = tmp_path / "x.pkl"
    path.write_bytes(pickle.dumps(_RunsCode(marker)))
    read_checkpoint(path, "pickle", trust=True)
    assert marker.exists()


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
def test_truncated_checkpoint(tmp_path: Path, zip_format: bool) -> None:
    path = tmp_path / "moco_v2_800ep_pretrain.pth.tar"
    model = build("test-cnn")
    torch.save({"state_dict": model.state_dict(), "epoch": 1}, path, _use_new_zipfile_serialization=zip_format)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="may be truncated. Delete it and download it again"):
        read_checkpoint(path, "torch")


def test_truncated_pickle(tmp_path: Path) -> None:
    path = tmp_path / "pretrain_res50x1.pkl"
    path.write_bytes(pickle.dumps({"experiment_state": {"a": list(range(1000))}})[:100])
    with pytest.raises(CheckpointError, match="may be truncated"):
        read_checkpoint(path, "pickle", trust=True)


def test_wrong_architecture_names_the_source_and_keys(tmp_path: Path) -> None:
    path = tmp_path / "d1w-00001.pth.tar"
    _moco_file(path, arch="resnet18")
    with pytest.raises(CheckpointError, match=r"d1w-00001.pth.tar' \(converter 'moco', architecture 'densenet121'\) "
                                              r"do not fit the model: \d+ missing keys \['features.conv0.weight'"):
        convert_file(path, arch="densenet121", converter="moco")


def test_tensorflow_is_an_optional_extra(tmp_path: Path) -> None:
    try:
        import tensorflow  # noqa: F401
    except ImportError:
        with pytest.raises(CheckpointError, match=r"needs tensorflow: pip install 'medtransfer\[simclr\]'"):
            read_checkpoint(tmp_path / "model.ckpt-225206", "tensorflow")
    else:
        pytest.skip("tensorflow is installed")


# -------------------------------------------------------------------------------------- digests and lock file
def test_pinned_sha256_prefix_mismatch(tmp_path: Path) -> None:
    card = MODELS.get("supervised-r18")  # torchvision pins the first 8 hex digits of sha256 in its file name
    path = tmp_path / "resnet18-f37072fd.pth"
    torch.save(build("resnet18").state_dict(), path)
    with pytest.raises(ChecksumError, match="but model 'supervised-r18' pins f37072fd: the file is corrupt"):
        check_digest(card, path)


def test_first_verified_file_is_locked_and_later_copies_must_match(card: ModelCard, tmp_path: Path) -> None:
    src = tmp_path / "copy" / card.filename
    src.parent.mkdir()
    _moco_file(src)
    convert(card.name, src)
    digest = read_lock()[card.name][card.filename]
    assert json.loads((home() / LOCK_FILE).read_text())["models"] == {card.name: {card.filename: digest}}
    _moco_file(src, seed=2)  # another file under the same published name
    with pytest.raises(ChecksumError, match=f"but {digest} was recorded for it in .*{LOCK_FILE}"):
        convert(card.name, src)


def test_a_failed_conversion_records_nothing(card: ModelCard, tmp_path: Path) -> None:
    src = tmp_path / card.filename
    torch.save({"state_dict": {"module.conv1.weight": torch.zeros(1)}}, src)  # not a MoCo layout
    with pytest.raises(CheckpointError, match="No key starts with 'module.encoder_q.'"):
        convert(card.name, src)
    assert read_lock() == {} and not is_converted(card.name)


# --------------------------------------------------------------------------------------------- fetch / convert
def test_fetch_downloads_verifies_converts_and_create_loads_it(card: ModelCard) -> None:
    assert weights_status(card) == "fetch"
    with pytest.raises(CheckpointError, match="Run `medtransfer models fetch test-moco`"):
        create("test-moco")
    folder = fetch(card.name, progress=False)
    assert folder == converted_dir(card.name) and published_file(card).is_file()
    assert weights_status(card) == "on disk" and card.filename in read_lock()[card.name]
    source = _moco_file(Path(card.url.removeprefix("file://")))  # same seed: the published weights
    x = torch.randn(2, 3, 32, 32)
    with torch.inference_mode():
        torch.testing.assert_close(create("test-moco")(x), source(x), rtol=0, atol=0)
    assert fetch(card.name) == folder  # already on disk: nothing downloaded again


def test_create_converts_a_local_copy_of_the_published_file(card: ModelCard) -> None:
    path = Path(card.url.removeprefix("file://"))
    source = _moco_file(path)
    x = torch.randn(1, 3, 32, 32)
    with torch.inference_mode():
        torch.testing.assert_close(create("test-moco", weights=path)(x), source(x), rtol=0, atol=0)


def test_offline_fetch_names_the_url_and_where_to_put_the_file(monkeypatch: pytest.MonkeyPatch) -> None:
    card = ModelCard("test-offline", "resnet18", 512, url="http://127.0.0.1:9/moco.pth.tar", converter="moco",
                     filename="moco.pth.tar", description="test")
    monkeypatch.setitem(MODELS._entries, card.name, card)
    with pytest.raises(DownloadError, match=r"Could not download http://127.0.0.1:9/moco.pth.tar \(.*\). If this "
                                            r"machine is offline, .* put it at .*/downloads/moco.pth.tar, then"):
        fetch(card.name, progress=False)


def test_a_file_placed_by_hand_is_used(card: ModelCard, monkeypatch: pytest.MonkeyPatch) -> None:
    dest = published_file(card)
    dest.parent.mkdir(parents=True)
    dest.write_bytes(Path(card.url.removeprefix("file://")).read_bytes())
    monkeypatch.setitem(MODELS._entries, card.name, ModelCard(**{**card.__dict__, "url": "http://127.0.0.1:9/x"}))
    assert is_converted(card.name) is False
    fetch(card.name, progress=False)  # would fail if it tried the (dead) URL
    assert is_converted(card.name)


def test_fetch_rejects_a_download_with_the_wrong_sha256(card: ModelCard, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(MODELS._entries, card.name, ModelCard(**{**card.__dict__, "sha256": "0123abcd"}))
    with pytest.raises(ChecksumError, match="pins 0123abcd"):
        fetch(card.name, progress=False)
    assert not published_file(card).exists() and not list(published_file(card).parent.iterdir())


def test_pickle_format_is_refused_before_downloading() -> None:
    with pytest.raises(CheckpointError, match=r"published as a Python pickle .*Nothing was downloaded or run. .*"
                                              r"models fetch byol --trust"):
        fetch("byol", progress=False)
    assert not published_file(MODELS.get("byol")).exists()


def test_manual_model_says_where_to_get_it() -> None:
    with pytest.raises(DownloadError, match=r"PyContrast model zoo .*models convert pirl --from FILE"):
        fetch("pirl")
    with pytest.raises(CheckpointError, match=r"no weights on this machine .*models convert pirl --from FILE"):
        create("pirl")


def test_random_init_models_have_nothing_to_fetch() -> None:
    with pytest.raises(ConfigError, match="'resnet18' is a random initialisation"):
        fetch("resnet18")


def test_user_checkpoint_becomes_a_model_folder(tmp_path: Path) -> None:
    path = tmp_path / "checkpoint_0199.pth.tar"
    source = _moco_file(path)
    folder = import_checkpoint(path, arch="resnet18", fmt="moco")
    model = create(str(folder))
    assert model.card.feature_dim == 512 and model.card.converter == "moco"
    x = torch.randn(1, 3, 32, 32)
    with torch.inference_mode():
        torch.testing.assert_close(model(x), source(x), rtol=0, atol=0)
    assert import_checkpoint(path, arch="resnet18", fmt="moco") == folder  # cached by content
