"""RSNA PE on a generated tree in Kaggle's layout: slice labels, studies kept whole, HU in the PE window."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medtransfer.data import load
from medtransfer.data.labelled import leaking_groups
from medtransfer.errors import DataError

HEADER = ("StudyInstanceUID,SeriesInstanceUID,SOPInstanceUID,pe_present_on_image,negative_exam_for_pe,qa_motion,"
          "qa_contrast,flow_artifact,rv_lv_ratio_gte_1,rv_lv_ratio_lt_1,leftsided_pe,chronic_pe,"
          "true_filling_defect_not_pe,rightsided_pe,acute_and_chronic_pe,central_pe,indeterminate")


def _write_slice(path: Path, stored: np.ndarray) -> None:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = CTImageStorage, generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.Rows, ds.Columns = stored.shape
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
    ds.PixelData = stored.astype(np.int16).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)


def make_rsna_pe(root: Path, n_studies: int = 20, slices: int = 3) -> Path:
    pytest.importorskip("pydicom", reason="RSNA PE's slices are DICOM (pip install 'medtransfer[dicom]')")
    lines = [HEADER]
    for s in range(n_studies):
        for k in range(slices):
            study, series, sop = f"1.2.{s}", f"1.2.{s}.9", f"1.2.{s}.9.{k}"
            _write_slice(root / "train" / study / series / f"{sop}.dcm", np.full((4, 5), 1024 + 100, np.int16))
            pe = int(s % 4 == 0 and k == 1)  # every fourth study has an embolism on its middle slice
            lines.append(f"{study},{series},{sop},{pe},{int(s % 4 != 0)},0,0,0,0,0,0,0,0,0,0,0,0")
    (root / "train.csv").write_text("\n".join(lines) + "\n")
    return root


def test_slice_labels_whole_studies_and_the_pe_window(tmp_path: Path) -> None:
    make_rsna_pe(tmp_path)
    parts = [load("rsna-pe", s, data_root=tmp_path) for s in ("train", "val", "test")]
    assert sum(len(d) for d in parts) == 60 and leaking_groups(parts) == set()  # all slices of a study together
    assert sum(int(d.labels.sum()) for d in parts) == 5
    assert all(len(d) % 3 == 0 for d in parts)
    image = parts[0].images(np.arange(1))
    # stored 1124 - 1024 = 100 HU, the window's centre: (100 + 250) / 700 * 255 = 127.5 -> 128
    assert image.shape == (1, 4, 5, 1) and int(image[0, 0, 0, 0]) == 128


def test_a_value_outside_the_rule_is_named(tmp_path: Path) -> None:
    make_rsna_pe(tmp_path, n_studies=2)
    csv = tmp_path / "train.csv"
    csv.write_text(csv.read_text().replace("1.2.0.9.0,0,", "1.2.0.9.0,yes,", 1))
    with pytest.raises(DataError, match="pe_present_on_image 'yes'"):
        load("rsna-pe", "train", data_root=tmp_path)
