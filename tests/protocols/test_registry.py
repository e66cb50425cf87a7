from __future__ import annotations

import numpy as np
import pytest

from medtransfer.errors import DataError, UnknownNameError
from medtransfer.protocols import PROTOCOLS, ClassificationResult, Features


def _splits(rng: np.random.Generator) -> dict[str, Features]:
    def f(n: int) -> Features:
        y = rng.integers(0, 2, n)
        return Features(y[:, None] + rng.normal(size=(n, 4)), y)

    return {"train": f(60), "val": f(20), "test": f(40)}


# few-shot always reports plain accuracy over episodes (PROTOCOLS.md §1.5); the others every requested metric
OPTIONS = {"fewshot": {"n_way": 2, "n_support": 5, "n_query": 5, "episodes": 20}}
REPORTS = {"fewshot": {"accuracy"}}


@pytest.mark.parametrize("name", PROTOCOLS.names())
def test_every_protocol_returns_its_result_type(name: str, rng: np.random.Generator) -> None:
    r = PROTOCOLS.get(name)(_splits(rng), task="binary", metrics=("accuracy", "auc"), seed=0,
                            options=OPTIONS.get(name, {}))
    assert isinstance(r, ClassificationResult) and r.protocol == name
    assert set(r.metrics) == set(r.ci) == REPORTS.get(name, {"accuracy", "auc"})
    assert all(r.ci[m][0] <= v <= r.ci[m][1] for m, v in r.metrics.items())


def test_linear_options_are_checked(rng: np.random.Generator) -> None:
    with pytest.raises(UnknownNameError, match="Did you mean 'C_grid'"):
        PROTOCOLS.get("linear")(_splits(rng), task="binary", metrics=("accuracy",), seed=0, options={"Cgrid": [1]})


def test_missing_split(rng: np.random.Generator) -> None:
    splits = _splits(rng)
    del splits["test"]
    with pytest.raises(DataError, match=r"Protocol 'linear' needs a 'test' split; got \['train', 'val'\]"):
        PROTOCOLS.get("linear")(splits, task="binary", metrics=("accuracy",), seed=0, options={})


def test_fewshot_n_way_defaults_to_the_number_of_classes(rng: np.random.Generator) -> None:
    r = PROTOCOLS.get("fewshot")(_splits(rng), task="binary", metrics=("accuracy",), seed=0,
                                 options={"n_support": 5, "n_query": 5, "episodes": 10})
    assert r.config["n_way"] == 2


def test_linear_preset_through_options(rng: np.random.Generator) -> None:
    r = PROTOCOLS.get("linear")(_splits(rng), task="binary", metrics=("accuracy",), seed=0,
                                options={"preset": "anton2022", "n_boot": 50})
    assert r.config["preset"] == "anton2022" and len(r.grid) == 45
