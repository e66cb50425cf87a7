"""MedMNIST: registry over every subset and size, the official format, MD5 checks, download, offline."""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from medtransfer import _download
from medtransfer.data.base import DATASETS
from medtransfer.data.medmnist import INFO, load_medmnist, medmnist_card
from medtransfer.data.sources import load
from medtransfer.errors import ChecksumError, ConfigError, DataError, DownloadError

N = {"train": 6, "val": 2, "test": 3}
TASKS = {"binary-class": "binary", "multi-class": "multi-class", "multi-label, binary-class": "multi-label",
         "ordinal-regression": "ordinal"}


def _write_official(path: Path, flag: str, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """A tiny .npz in the official layout: <split>_images uint8, <split>_labels uint8 (N, 1) or (N, C)."""
    info = INFO[flag]
    shape: tuple[int, ...] = (28, 28, 28) if flag.endswith("3d") else (28, 28)
    shape += (3,) if info["n_channels"] == 3 else ()
    n_labels = len(info["label"]) if info["task"].startswith("multi-label") else 1
    high = 2 if n_labels > 1 else len(info["label"])
    arrays = {}
    for split, n in N.items():
        arrays[f"{split}_images"] = rng.integers(0, 256, (n, *shape), dtype=np.uint8)
        arrays[f"{split}_labels"] = rng.integers(0, high, (n, n_labels), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **arrays)  # type: ignore[arg-type]  # numpy's stub types **kwds loosely
    return arrays


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def _pin(monkeypatch: pytest.MonkeyPatch, flag: str, **fields: Any) -> None:
    """Replace INFO[flag]'s fields (MD5, url, n_samples ...) for this test only."""
    monkeypatch.setitem(INFO, flag, {**INFO[flag], "n_samples": dict(N), **fields})


@pytest.fixture
def tiny(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, rng: np.random.Generator) -> dict[str, Any]:
    """breastmnist.npz written in tmp/data with INFO's MD5 pinned to its real MD5."""
    path = tmp_path / "data" / "breastmnist.npz"
    arrays = _write_official(path, "breastmnist", rng)
    _pin(monkeypatch, "breastmnist", MD5=_md5(path))
    return {"path": path, "arrays": arrays, "card": medmnist_card("breastmnist")}


def _count_hashes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    real = _download.file_digest

    def counting(path: Any, algo: str = "sha256") -> str:
        calls.append(str(path))
        return real(path, algo)

    monkeypatch.setattr(_download, "file_digest", counting)
    return calls


# ---- cards and registry ----------------------------------------------------------------------------------


def test_registry_holds_every_subset_and_size() -> None:
    expected = set()
    for flag in INFO:
        sizes = (28, 64) if flag.endswith("3d") else (28, 64, 128, 224)
        expected |= {flag if s == 28 else f"{flag}-{s}" for s in sizes}
    assert len(INFO) == 18 and sum(f.endswith("3d") for f in INFO) == 6
    assert len(expected) == 12 * 4 + 6 * 2
    assert expected <= set(DATASETS.names())


def test_info_is_the_medmnist_package_table_read_without_importing_the_package() -> None:
    import subprocess
    import sys

    # in a fresh interpreter: the cards are built without running medmnist/__init__ (torch, pandas, sklearn)
    code = ("import sys, medtransfer.data; print(sorted(m for m in ('torch', 'pandas', 'sklearn', 'medmnist') "
            "if m in sys.modules))")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "[]\n"
    from medmnist.info import INFO as PACKAGE_INFO

    assert INFO == PACKAGE_INFO


@pytest.mark.parametrize("flag", sorted(INFO))
def test_cards_follow_info(flag: str) -> None:
    info = INFO[flag]
    for size in (28, 64):
        card = DATASETS.get(flag if size == 28 else f"{flag}-{size}").card
        suffix = "" if size == 28 else f"_{size}"
        assert card.task == TASKS[info["task"]]
        assert card.label_names == tuple(info["label"][str(k)] for k in range(len(info["label"])))
        dims = 3 if flag.endswith("3d") else 2
        assert (card.channels, card.dims, card.image_size) == (info["n_channels"], dims, size)
        assert card.default_metric == "auc" and ("qw_kappa" in card.metrics) == (card.task == "ordinal")
        assert (card.license, card.source) == (info["license"], info[f"url{suffix}"])
        if size == 28:
            assert card.description == info["description"]
        else:  # INFO describes the 28 px files; a 64 px card must not say 28x28
            assert "28×28" not in card.description and "64 px" in card.description
            assert card.description.startswith(info["description"].split("28×28")[0])
        assert card.extra["file"] == f"{flag}{suffix}.npz" and card.extra["md5"] == info[f"MD5{suffix}"]
        assert card.extra["n_samples"] == info["n_samples"] and "Scientific Data" in card.citation


def test_card_parameter_errors() -> None:
    with pytest.raises(ConfigError, match=r"'flag' parameter of medmnist_card .* Got 'breastmnst' instead"):
        medmnist_card("breastmnst")
    with pytest.raises(ConfigError, match=r"'size' parameter .* \[28, 64\] for 'adrenalmnist3d'. Got 224"):
        medmnist_card("adrenalmnist3d", 224)


# ---- loading the official format -------------------------------------------------------------------------


def test_load_tiny_official_file(tiny: dict[str, Any]) -> None:
    folder = tiny["path"].parent
    for split, n in N.items():
        ds = load_medmnist(tiny["card"], split, data_root=folder)
        assert ds.images(np.arange(n)).shape == (n, 28, 28, 1)
        np.testing.assert_array_equal(ds.images(np.arange(n))[..., 0], tiny["arrays"][f"{split}_images"])
        assert ds.labels.dtype == np.int64 and ds.labels.shape == (n,)
        np.testing.assert_array_equal(ds.labels, tiny["arrays"][f"{split}_labels"][:, 0])
        assert ds.fingerprint == f"medmnist:breastmnist.npz:{_md5(tiny['path'])}:{split}"


@pytest.mark.parametrize(("flag", "image_shape", "label_shape", "label_dtype"), [
    ("bloodmnist", (3, 28, 28, 3), (3,), np.int64),          # RGB kept as (N, H, W, 3)
    ("organmnist3d", (3, 28, 28, 28, 1), (3,), np.int64),    # volumes get a channel axis
    ("chestmnist", (3, 28, 28, 1), (3, 14), np.uint8),       # multi-label keeps (N, C)
])
def test_layouts_of_other_subsets(flag: str, image_shape: tuple[int, ...], label_shape: tuple[int, ...],
                                  label_dtype: type, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                  rng: np.random.Generator) -> None:
    path = tmp_path / f"{flag}.npz"
    arrays = _write_official(path, flag, rng)
    _pin(monkeypatch, flag, MD5=_md5(path))
    ds = load_medmnist(medmnist_card(flag), "test", data_root=tmp_path)
    assert ds.images(np.arange(3)).shape == image_shape
    assert ds.labels.shape == label_shape and ds.labels.dtype == label_dtype
    assert ds.labels.reshape(3, -1).tolist() == arrays["test_labels"].tolist()


def test_sample_count_differing_from_info_is_refused(tiny: dict[str, Any],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    _pin(monkeypatch, "breastmnist", MD5=_md5(tiny["path"]), n_samples={**N, "val": 78})
    with pytest.raises(DataError, match=r"'breastmnist.npz' split 'val' holds 2 images, but .* lists 78"):
        load_medmnist(medmnist_card("breastmnist"), "val", data_root=tiny["path"].parent)


# ---- checksums and the sidecar ---------------------------------------------------------------------------


def test_md5_mismatch_is_refused_with_both_md5s(tmp_path: Path, rng: np.random.Generator) -> None:
    path = tmp_path / "breastmnist.npz"
    _write_official(path, "breastmnist", rng)
    official = INFO["breastmnist"]["MD5"]
    with pytest.raises(ChecksumError) as info:
        load("breastmnist", "test", data_root=tmp_path)
    assert _md5(path) in str(info.value) and official in str(info.value)
    assert not (tmp_path / "breastmnist.npz.md5-verified").exists()


def test_sidecar_skips_rehash_until_the_file_changes(tiny: dict[str, Any], monkeypatch: pytest.MonkeyPatch,
                                                     rng: np.random.Generator) -> None:
    calls = _count_hashes(monkeypatch)
    folder, path = tiny["path"].parent, tiny["path"]
    load_medmnist(tiny["card"], "test", data_root=folder)
    assert len(calls) == 1 and (folder / "breastmnist.npz.md5-verified").is_file()
    load_medmnist(tiny["card"], "val", data_root=folder)
    assert len(calls) == 1  # size and mtime unchanged: no second hash
    _write_official(path, "breastmnist", rng)  # new bytes
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # visible whatever the mtime resolution
    with pytest.raises(ChecksumError, match=tiny["card"].extra["md5"]):
        load_medmnist(tiny["card"], "test", data_root=folder)
    assert len(calls) == 2


# ---- missing files: offline and download -----------------------------------------------------------------


def _assert_names_file_folder_url(message: str, folder: Path) -> None:
    assert "'breastmnist.npz'" in message
    assert str(folder) in message
    assert INFO["breastmnist"]["url"] in message


@pytest.mark.parametrize("how", ["env", "argument"])
def test_offline_missing_file(how: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("offline mode must not try the network")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    if how == "env":
        monkeypatch.setenv("MEDTRANSFER_OFFLINE", "1")
    reason = "MEDTRANSFER_OFFLINE=1" if how == "env" else "download=False"
    with pytest.raises(DownloadError, match=reason) as e:
        load("breastmnist", "test", data_root=tmp_path / "empty", download=how == "env")
    _assert_names_file_folder_url(str(e.value), tmp_path / "empty")


def test_failed_download_names_file_folder_and_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def unreachable(*args: object, **kwargs: object) -> None:
        raise urllib.error.URLError("no route to host")

    monkeypatch.setattr(urllib.request, "urlopen", unreachable)
    with pytest.raises(DownloadError, match="no route to host") as e:
        load("breastmnist", "test", data_root=tmp_path, progress=False)
    _assert_names_file_folder_url(str(e.value), tmp_path)
    card = DATASETS.get("breastmnist").card  # the URL and MD5 once, not once more from the wrapped error
    assert str(e.value).count(card.extra["url"]) == 1 and str(e.value).count(card.extra["md5"]) == 1
    assert isinstance(e.value.__cause__, DownloadError)
    assert not (tmp_path / "breastmnist.npz").exists()


def test_download_from_file_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                rng: np.random.Generator) -> None:
    source = tmp_path / "mirror" / "breastmnist.npz"
    arrays = _write_official(source, "breastmnist", rng)
    _pin(monkeypatch, "breastmnist", MD5=_md5(source), url=source.as_uri())
    data = tmp_path / "data"
    ds = load_medmnist(medmnist_card("breastmnist"), "train", data_root=data, progress=False)
    np.testing.assert_array_equal(ds.labels, arrays["train_labels"][:, 0])
    assert sorted(p.name for p in data.iterdir()) == ["breastmnist.npz", "breastmnist.npz.md5-verified"]


def test_download_with_wrong_md5_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               rng: np.random.Generator) -> None:
    source = tmp_path / "mirror" / "breastmnist.npz"
    _write_official(source, "breastmnist", rng)
    _pin(monkeypatch, "breastmnist", MD5="0" * 32, url=source.as_uri())
    with pytest.raises(ChecksumError, match="0" * 32):
        load_medmnist(medmnist_card("breastmnist"), "train", data_root=tmp_path / "data", progress=False)
    assert list((tmp_path / "data").iterdir()) == []


# ---- the real files --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "split", "shape", "counts"), [
    ("breastmnist", "test", (28, 28, 1), [42, 114]),
    ("breastmnist-64", "train", (64, 64, 1), [147, 399]),
    ("pneumoniamnist", "val", (28, 28, 1), [135, 389]),
    ("adrenalmnist3d", "train", (28, 28, 28, 1), [929, 259]),
    ("adrenalmnist3d-64", "test", (64, 64, 64, 1), [229, 69]),  # test only: train expands to 311 MB
])
def test_real_files(name: str, split: str, shape: tuple[int, ...], counts: list[int],
                    shared_data: Path, tmp_path: Path) -> None:
    card = DATASETS.get(name).card
    real = shared_data / "medmnist" / card.extra["file"]
    if not real.is_file():
        pytest.skip(f"{real} not found")
    (tmp_path / real.name).symlink_to(real)  # the MD5 sidecar goes to tmp, never into the shared folder
    ds = load(name, split, data_root=tmp_path, download=False)
    assert (tmp_path / f"{real.name}.md5-verified").is_file()
    assert len(ds) == INFO[card.extra["flag"]]["n_samples"][split]
    assert np.asarray(ds.images(np.arange(4))).shape == (4, *shape)
    assert np.bincount(ds.labels).tolist() == counts
