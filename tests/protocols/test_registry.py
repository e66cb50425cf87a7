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


@pytest.mark.parametrize("name", PROTOCOLS.names())
def test_every_protocol_returns_its_result_type(name: str, rng: np.random.Generator) -> None:
    r = PROTOCOLS.get(name)(_splits(rng), task="binary", metrics=("accuracy", "auc"), seed=0, options={})
    assert isinstance(r, ClassificationResult) and set(r.metrics) == set(r.ci) == {"accuracy", "auc"}


def test_linear_options_are_checked(rng: np.random.Generator) -> None:
    with pytest.raises(UnknownNameError, match="Unknown key 'Cgrid' in linear options. Did you mean 'C_grid'"):
        PROTOCOLS.get("linear")(_splits(rng), task="binary", metrics=("accuracy",), seed=0, options={"Cgrid": [1]})


def test_missing_split(rng: np.random.Generator) -> None:
    splits = _splits(rng)
    del splits["test"]
    with pytest.raises(DataError, match=r"Protocol 'linear' needs a 'test' split; got \['train', 'val'\]"):
        PROTOCOLS.get("linear")(splits, task="binary", metrics=("accuracy",), seed=0, options={})
