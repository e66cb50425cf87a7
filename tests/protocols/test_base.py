from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from medtransfer.errors import DataError
from medtransfer.protocols import ClassificationResult, Features


def test_features_accept_torch_and_subset() -> None:
    f = Features(torch.arange(8.0).reshape(4, 2), torch.tensor([0, 1, 0, 1]), ids=("a", "b", "c", "d"))
    assert isinstance(f.x, np.ndarray) and f.n == 4
    s = f.subset(np.array([3, 1]))
    assert s.ids == ("d", "b") and s.x.tolist() == [[6.0, 7.0], [2.0, 3.0]]


@pytest.mark.parametrize("x, y, ids, match", [
    (np.zeros(4), np.zeros(4), None, r"x must be 2-d \(N, D\). Got shape \(4,\)"),
    (np.zeros((4, 2)), np.zeros(3), None, r"N = len\(x\) = 4. Got shape \(3,\)"),
    (np.zeros((4, 2)), np.zeros(4), ("a",), r"ids has 1 entries for 4 feature rows"),
])
def test_features_validation(x: np.ndarray, y: np.ndarray, ids: tuple | None, match: str) -> None:
    with pytest.raises(DataError, match=match):
        Features(x, y, ids)


def test_result_to_dict_is_json_ready() -> None:
    r = ClassificationResult("linear", {"accuracy": 0.5}, {"accuracy": (0.4, 0.6)}, chosen={"C": 1.0})
    d = json.loads(json.dumps(r.to_dict()))
    assert d["ci"]["accuracy"] == [0.4, 0.6] and d["chosen"] == {"C": 1.0}


def test_infer_task_and_default_metrics() -> None:
    from medtransfer.protocols.base import default_metrics, infer_task

    assert infer_task(np.array([0, 1, 1])) == "binary"
    assert infer_task(np.array([0, 2, 1])) == "multi-class"
    assert infer_task(np.zeros((3, 4))) == "multi-label"
    assert default_metrics("ordinal") == ("accuracy", "auc", "qw_kappa")


def test_medmnist_style_n_by_1_labels_are_flattened_once() -> None:
    f = Features(np.zeros((3, 2)), np.array([[0], [1], [1]]))
    assert f.y.shape == (3,)
    assert Features(np.zeros((3, 2)), np.zeros((3, 4))).y.shape == (3, 4)  # multi-label stays 2-d
