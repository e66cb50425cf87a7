"""Step-indexed training batches, hold-out splits and subsets for finetuning."""

from __future__ import annotations

import numpy as np

from medtransfer import data
from medtransfer.protocols._finetune_data import EvalBatches, StepBatches, SubsetDataset, holdout


def _train():
    return data.load("phantom-binary-32", "train", n=96)


def test_step_batches_cover_each_epoch_once_and_skip_a_batch_of_one() -> None:
    batches = StepBatches(_train(), 19, seed=3, total_steps=10)  # 96 = 5 x 19 + 1: the lone image is dropped
    assert batches.steps_per_epoch == 5
    epoch = np.concatenate([batches.step_index(s) for s in range(5)])
    assert len(np.unique(epoch)) == 95
    assert not np.array_equal(batches.step_index(0), batches.step_index(5))  # a new permutation each epoch


def test_holdout_is_disjoint_stratified_and_seeded() -> None:
    train = _train()
    fit, val = holdout(train, 0.2, seed=0)
    a, b = set(fit.index.tolist()), set(val.index.tolist())
    assert not a & b and len(a | b) == len(train)
    assert set(np.unique(np.asarray(val.labels))) == set(np.unique(np.asarray(train.labels)))  # every class held out
    assert np.array_equal(holdout(train, 0.2, seed=0)[1].index, val.index)


def test_subset_reads_the_parent_rows() -> None:
    train = _train()
    sub = SubsetDataset(train, np.array([5, 2, 9]))
    assert np.array_equal(sub.images(np.array([0, 2])), train.images(np.array([5, 9])))
    assert sub.fingerprint != train.fingerprint


def test_eval_batches_preprocess_the_whole_split_in_order() -> None:
    from medtransfer import models

    train = _train()
    contract = models.create("test-cnn").card.input
    chunks = list(EvalBatches(train, contract, 40))
    assert [len(y) for _, y in chunks] == [40, 40, 16]
    assert np.array_equal(np.concatenate([y.numpy() for _, y in chunks]), np.asarray(train.labels).ravel())


def test_holdout_keeps_a_training_image_of_every_class_and_validates_small_ones() -> None:
    train = SubsetDataset(_train(), np.arange(96))
    y = np.array([0, 0] + [1] * 6 + [0, 0])  # class 0: 4 images; relabel a 10-image subset below
    ten = SubsetDataset(train, np.arange(10))
    ten.labels = y  # type: ignore[misc]
    fit, val = holdout(ten, 0.2, seed=0)
    assert set(np.asarray(val.labels).tolist()) == {0, 1}  # a 4-image class still gives one to validation
    three = np.array([0, 1, 1, 1, 1, 1, 2, 2, 2, 2])  # class 0 has one image: it stays in train
    ten.labels = three  # type: ignore[misc]
    fit, val = holdout(ten, 0.2, seed=0)
    assert 0 in np.asarray(fit.labels).tolist() and 0 not in np.asarray(val.labels).tolist()
    assert {1, 2} <= set(np.asarray(val.labels).tolist())
