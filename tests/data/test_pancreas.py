"""MSD Task07 Pancreas on a generated tree in the Decathlon's layout: NIfTI axes, the HU window, resampled masks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from medtransfer.data import load
from medtransfer.errors import DataError


def make_pancreas(root: Path, n: int = 10, shape: tuple[int, int, int] = (12, 10, 6)) -> Path:
    nib = pytest.importorskip("nibabel", reason="the Decathlon's volumes are NIfTI (pip install 'medtransfer[nifti]')")
    task = root / "Task07_Pancreas"
    for sub in ("imagesTr", "labelsTr", "imagesTs"):
        (task / sub).mkdir(parents=True)
    (task / "dataset.json").write_text(json.dumps({"name": "Pancreas", "labels": {"0": "background",
                                                                                 "1": "pancreas", "2": "cancer"}}))
    for i in range(1, n + 1):
        ct = np.full(shape, -1000.0)  # (x, y, z): air
        ct[:, :, shape[2] // 2:] = 240.0  # the upper half of the z slices at the window's top
        label = np.zeros(shape, np.uint8)
        label[2:6, 2:6, 1:3] = 1
        label[3:4, 3:4, 1:2] = 2
        name = f"pancreas_{i:03d}.nii.gz"
        nib.save(nib.Nifti1Image(ct.astype(np.int16), np.eye(4)), str(task / "imagesTr" / name))
        nib.save(nib.Nifti1Image(label, np.eye(4)), str(task / "labelsTr" / name))
    return root


def test_volumes_are_depth_first_windowed_and_resampled(tmp_path: Path) -> None:
    make_pancreas(tmp_path)
    parts = [load("msd-pancreas", s, data_root=tmp_path, size=8) for s in ("train", "val", "test")]
    assert [len(d) for d in parts] == [7, 1, 2] and parts[0].card.dims == 3
    volume, mask = parts[0].images(np.arange(1)), parts[0].masks(np.arange(1))
    assert volume.shape == (1, 8, 8, 8, 1) and volume.dtype == np.uint8 and mask.shape == (1, 8, 8, 8)
    # depth is NIfTI's z: its lower half is air (0), its upper half at the window's top (255)
    assert volume[0, 0, :, :, 0].max() == 0 and volume[0, -1, :, :, 0].min() == 255
    assert set(np.unique(mask)) <= {0, 1, 2} and (mask == 1).any()
    assert load("msd-pancreas", "test", data_root=tmp_path, size=8).fingerprint == parts[2].fingerprint


def test_a_missing_label_volume_and_a_foreign_value_are_named(tmp_path: Path) -> None:
    import nibabel as nib

    root = make_pancreas(tmp_path, n=4)
    (root / "Task07_Pancreas" / "labelsTr" / "pancreas_002.nii.gz").unlink()
    with pytest.raises(DataError, match=r"1 label volumes listed in imagesTr \(one per image\) are missing"):
        load("msd-pancreas", "train", data_root=tmp_path, size=8)
    bad = np.full((12, 10, 6), 7, np.uint8)
    nib.save(nib.Nifti1Image(bad, np.eye(4)), str(root / "Task07_Pancreas" / "labelsTr" / "pancreas_002.nii.gz"))
    holder = next(ds for ds in (load("msd-pancreas", s, data_root=tmp_path, size=8) for s in ("train", "val", "test"))
                  if any(p.name == "pancreas_002.nii.gz" for p in ds.paths))
    which = [p.name for p in holder.paths].index("pancreas_002.nii.gz")
    with pytest.raises(DataError, match=r"holds the value\(s\) \[7\]"):
        holder.masks(np.array([which]))


def test_the_volumes_segment_with_a_3d_encoder(tmp_path: Path) -> None:
    from medtransfer import models
    from medtransfer.protocols.segmentation import segment

    make_pancreas(tmp_path)
    splits = [load("msd-pancreas", s, data_root=tmp_path, size=16) for s in ("train", "val", "test")]
    result = segment(models.create("unet-encoder-3d"), *splits, preset="taleb2020", epochs=1, batch_size=2,
                     n_boot=20, progress=False)
    assert {"dice", "dice/pancreas", "dice/tumour"} <= set(result.metrics) and 0 <= result.metrics["dice"] <= 1
