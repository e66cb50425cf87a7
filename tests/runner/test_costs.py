"""Compute estimates: measured throughput on this machine, counted per cell by hand."""

from __future__ import annotations

import pytest

from medtransfer.runner.costs import Throughput, cell_seconds, dataset_images, measure, needed
from medtransfer.runner.spec import GridSpec, expand


def test_image_counts_come_from_the_cards() -> None:
    assert dataset_images("breastmnist") == {"train": 546, "val": 78, "test": 156}  # MedMNIST's official sizes
    assert dataset_images("shenzhen") == {"all": 662}  # a reference dataset's published counts
    assert dataset_images("phantom-binary-28") is None


def test_cells_are_counted_from_throughput_and_images() -> None:
    spec = GridSpec(name="t", models=("resnet18-small",), datasets=("breastmnist",),
                    protocols=("linear", "knn", "finetune"),
                    protocol_options={"finetune": {"preset": "medmnist", "epochs": 2}})
    assert needed([spec]) == {("resnet18-small", 28, 2)}
    rate = Throughput("resnet18-small", 28, 2, "cpu", infer=100.0, train=50.0)
    seconds = cell_seconds(expand(spec, precision="fp32"), spec, {("resnet18-small", 28, 2): rate})
    extraction = 780 / 100  # once for the pair's linear and kNN cells: every split
    training = 2 * 546 / 50 + 2 * (78 + 156) / 100  # 2 epochs of train, and val + test after each
    assert seconds == pytest.approx(extraction + training)


def test_measure_times_a_real_network_here() -> None:
    r = measure("small-cnn", 28, 2, "cpu", seconds=0.05)
    assert r.infer > 0 and r.train > 0 and r.device == "cpu"
