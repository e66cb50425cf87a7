"""Mask overlays: one row per image, the image and the two masks side by side, classes coloured."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from medtransfer.runner.figures import mask_overlays


def test_overlay_sheet(tmp_path: Path) -> None:
    image = np.full((10, 12, 1), 100, np.uint8)
    truth, pred = np.zeros((10, 12), int), np.zeros((10, 12), int)
    truth[2:5, 2:5], pred[6:9, 6:9] = 1, 2
    path = mask_overlays(tmp_path / "f" / "o.png", [image, image], [truth, truth], [pred, pred], height=32)
    sheet = np.asarray(Image.open(path))
    assert sheet.shape[0] == 64 and sheet.shape[2] == 3
    panel = sheet[:32]
    assert (panel[..., 2] > panel[..., 0] + 30).any()  # class 1 blue (truth panel)
    assert (panel[..., 1] > panel[..., 2] + 30).any()  # class 2 orange/green (prediction panel)
    volume = np.full((5, 10, 12, 1), 100, np.uint8)  # a volume is drawn by its middle slice
    truth3d, pred3d = np.zeros((5, 10, 12), int), np.zeros((5, 10, 12), int)
    pred3d[2] = 1  # only the middle slice predicted
    path = mask_overlays(tmp_path / "v.png", [volume], [truth3d], [pred3d], height=10)
    sheet = np.asarray(Image.open(path)).astype(int)
    third = sheet.shape[1] // 3
    assert (sheet[:, 2 * third:, 2] > sheet[:, 2 * third:, 0] + 30).any()  # the prediction panel shows it
    assert not (sheet[:, third:2 * third, 2] > sheet[:, third:2 * third, 0] + 30).any()  # the empty truth does not


def test_saliency_inversion_embedding_and_invariance_pictures(tmp_path: Path) -> None:
    from medtransfer.runner.figures import embedding_scatter, invariance_bars, inversion_panels, saliency_overlays

    image = np.zeros((16, 16))
    sal = np.zeros((16, 16))
    sal[4:8, 4:8] = 1.0
    sheet = np.asarray(Image.open(saliency_overlays(tmp_path / "s.png", [image, image], [sal, sal], height=40)))
    assert sheet.shape[0] == 80
    heat = sheet[:40, sheet.shape[1] // 3:2 * sheet.shape[1] // 3].astype(int)
    assert heat.sum(-1).max() > heat.sum(-1).min() + 200  # the salient square is bright in the heat panel
    vol = np.asarray(Image.open(saliency_overlays(tmp_path / "v.png", [np.zeros((3, 8, 8))], [np.ones((3, 8, 8))])))
    assert vol.shape[0] == 160
    rec = np.asarray(Image.open(inversion_panels(tmp_path / "i.png", [np.ones((1, 8, 8))], [np.zeros((3, 8, 8))],
                                                 height=20)))
    assert rec.shape[0] == 20 and rec[10, 10].min() > 200 and rec[10, 30].max() < 50  # white target, black recon
    coords = np.random.default_rng(0).normal(size=(20, 2))
    assert Image.open(embedding_scatter(tmp_path / "e.png", coords, np.repeat([0, 1], 10), ["a", "b"],
                                        title="t")).size[0] > 100
    assert Image.open(invariance_bars(tmp_path / "b.png", ["h_flip", "rotation"], [0.9, 0.2], title="t")).size[1] > 50
