"""The finetune module's loss encodings and probabilities (hand-worked cases)."""

from __future__ import annotations

import torch

from medtransfer import models
from medtransfer.protocols._finetune_module import FinetuneModule, ordinal_targets, probabilities
from medtransfer.protocols.finetune import resolve_config


def test_ordinal_encoding_targets_and_probabilities() -> None:
    # 3 classes -> 2 bits [y > 0, y > 1]: 0 -> [0, 0], 1 -> [1, 0], 2 -> [1, 1]
    assert ordinal_targets(torch.tensor([0, 1, 2]), 3).tolist() == [[0, 0], [1, 0], [1, 1]]
    # sigmoid(0) = 0.5 for both bits: P(y>0) = .5, P(y>1) = .5 -> P = [.5, 0, .5]
    p = probabilities(torch.zeros(1, 2), "ordinal", ordinal=True)
    assert p.tolist() == [[0.5, 0.0, 0.5]]
    # a non-monotone output (P(y>1) > P(y>0)) is clipped, so probabilities stay in [0, 1] and sum to 1
    p = probabilities(torch.tensor([[-2.0, 3.0], [1.0, -1.0]]), "ordinal", ordinal=True)
    assert torch.all(p >= 0) and torch.allclose(p.sum(1), torch.ones(2))


def test_multilabel_and_multiclass_probabilities() -> None:
    logits = torch.tensor([[0.0, 0.0]])
    assert probabilities(logits, "multi-label", ordinal=False).tolist() == [[0.5, 0.5]]  # a sigmoid per label
    assert probabilities(logits, "multi-class", ordinal=False).tolist() == [[0.5, 0.5]]  # softmax over classes


def _module(task: str, n_out: int, **cfg: object) -> FinetuneModule:
    net = models.create("test-cnn")
    return FinetuneModule(net, n_out, resolve_config("medmnist", **cfg), task=task, n_classes=3,
                          contract=net.card.input, seed=0, total_steps=10, warmup_steps=0, run_key="k")


def test_loss_follows_the_task() -> None:
    logits = torch.tensor([[2.0, -1.0, 0.0]])
    # multi-label: BCE per label, averaged: -[log s(2) + log(1 - s(-1)) + log(1 - s(0))] / 3
    y = torch.tensor([[1.0, 0.0, 0.0]])
    s = torch.sigmoid(logits)
    bce = -(torch.log(s[0, 0]) + torch.log(1 - s[0, 1]) + torch.log(1 - s[0, 2])) / 3
    assert torch.isclose(_module("multi-label", 3)._loss(logits, y), bce)
    # multi-class: cross-entropy = -log softmax(logits)[label]
    ce = -torch.log_softmax(logits, dim=1)[0, 2]
    assert torch.isclose(_module("multi-class", 3)._loss(logits, torch.tensor([2])), ce)
    # ordinal with the cumulative encoding: label 1 of 3 -> bits [1, 0] against 2 outputs
    two = logits[:, :2]
    s2 = torch.sigmoid(two)
    ordinal = -(torch.log(s2[0, 0]) + torch.log(1 - s2[0, 1])) / 2
    assert torch.isclose(_module("ordinal", 2, ordinal_encoding=True)._loss(two, torch.tensor([1])), ordinal)


def test_unaugmented_training_batches_equal_evaluation_batches() -> None:
    import dataclasses

    import numpy as np

    from medtransfer.data.transforms import preprocess

    net = models.create("test-cnn")
    contract = dataclasses.replace(net.card.input, input_size=24, crop_pct=0.875, interpolation="bicubic")
    module = FinetuneModule(net, 2, resolve_config("medmnist"), task="binary", n_classes=2, contract=contract,
                            seed=0, total_steps=10, warmup_steps=0, run_key="k")
    images = np.random.default_rng(0).integers(0, 256, size=(3, 28, 28, 1), dtype=np.uint8)
    train = module._train_input(torch.from_numpy(images))
    evaluation = preprocess(images, **dataclasses.asdict(contract))
    torch.testing.assert_close(train, evaluation)
