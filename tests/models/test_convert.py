"""Every source format round-trips: a checkpoint built in the published layout (real key names, nesting, prefixes,
heads, optimizer/epoch entries) from a model with known weights converts, loads strictly and gives that model's
features."""

from __future__ import annotations

import argparse
import pickle
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from medtransfer.errors import CheckpointError
from medtransfer.models.backbones import build
from medtransfer.models.convert import CONVERTERS, rename_densenet_legacy
from medtransfer.models.hub import convert_file

StateDict = dict[str, torch.Tensor]


def _source_model(arch: str) -> nn.Module:
    """`arch` with seed-1 weights and non-trivial BatchNorm statistics, so every tensor matters to the features."""
    model = build(arch, seed=1)
    g = torch.Generator().manual_seed(2)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.1)
    return model.eval()


def _optimizer_state(sd: StateDict) -> dict[str, Any]:
    return {"state": {0: {"momentum_buffer": torch.zeros(3)}}, "param_groups": [{"lr": 0.03, "params": [0]}]}


def _head(*shapes: tuple[int, ...]) -> list[torch.Tensor]:
    return [torch.randn(*s) for s in shapes]


# --------------------------------------------------------------------------- the published layouts, one per format
def _torchvision(sd: StateDict, dim: int) -> Any:  # resnet18-f37072fd.pth: flat, with the ImageNet classifier
    w, b = _head((1000, dim), (1000,))
    return {**sd, "fc.weight": w, "fc.bias": b}


def _densenet_legacy(sd: StateDict, dim: int) -> Any:  # densenet121-a639ec97.pth: 'norm.1' style names
    legacy = {}
    for k, v in sd.items():
        if k.endswith("num_batches_tracked"):  # saved by torch 0.3, before BatchNorm counted its steps
            continue
        for new, old in (("norm1", "norm.1"), ("norm2", "norm.2"), ("conv1", "conv.1"), ("conv2", "conv.2")):
            if "denselayer" in k and f".{new}." in k:
                k = k.replace(f".{new}.", f".{old}.")
        legacy[k] = v
    w, b = _head((1000, dim), (1000,))
    return {**legacy, "classifier.weight": w, "classifier.bias": b}


def _moco(sd: StateDict, dim: int) -> Any:  # moco_v2_800ep_pretrain.pth.tar, PCL, MoCo-CXR
    q = {f"module.encoder_q.{k}": v for k, v in sd.items()}
    k_ = {f"module.encoder_k.{k}": v.clone() + 1 for k, v in sd.items()}  # key encoder differs from query
    head = "classifier" if "features.conv0.weight" in sd else "fc"
    w0, b0, w2, b2 = _head((dim, dim), (dim,), (128, dim), (128,))
    heads = {f"module.encoder_q.{head}.0.weight": w0, f"module.encoder_q.{head}.0.bias": b0,
             f"module.encoder_q.{head}.2.weight": w2, f"module.encoder_q.{head}.2.bias": b2}
    state = {**q, **heads, **k_, "module.queue": torch.randn(128, 65536 // 512),
             "module.queue_ptr": torch.zeros(1, dtype=torch.long)}
    return {"epoch": 800, "arch": "resnet50", "state_dict": state, "optimizer": _optimizer_state(sd)}


def _pycontrast(sd: StateDict, dim: int) -> Any:  # InsDis.pth / PIRL.pth / InfoMin_800.pth
    enc = {f"module.encoder.{k}": v for k, v in sd.items()}
    w, b, wj = _head((128, dim), (128,), (128, dim * 9))  # InsDis/PIRL memory-bank heads
    model = {**enc, "module.head.fc.weight": w, "module.head.fc.bias": b, "module.head_jig.fc1.weight": wj}
    ema = {k: v.clone() - 1 for k, v in model.items()}
    opt = argparse.Namespace(method="PIRL", arch="resnet50", learning_rate=0.03)  # PyContrast stores its options
    return {"model": model, "model_ema": ema, "opt": opt, "optimizer": _optimizer_state(sd), "epoch": 800}


def _swav(sd: StateDict, dim: int) -> Any:  # swav_800ep_pretrain.pth.tar, deepclusterv2, selav2: flat, 'module.'
    w0, b0, w3, p = _head((64, dim), (64,), (16, 64), (30, 16))  # heads are dropped: test-sized
    heads = {"module.projection_head.0.weight": w0, "module.projection_head.0.bias": b0,
             "module.projection_head.3.weight": w3, "module.prototypes.weight": p}
    return {**{f"module.{k}": v for k, v in sd.items()}, **heads}


def _supervised_ckpt(sd: StateDict, dim: int) -> Any:  # PyTorch ImageNet example (iNat2021, CheXpert ...)
    w, b = _head((14, dim), (14,))
    state = {**{f"module.{k}": v for k, v in sd.items()}, "module.fc.weight": w, "module.fc.bias": b}
    return {"epoch": 90, "arch": "resnet50", "state_dict": state, "best_acc1": torch.tensor(81.2),
            "optimizer": _optimizer_state(sd)}


def _mimic_chexpert(sd: StateDict, dim: int) -> Any:  # CovidPrognosis Lightning checkpoint
    q = {f"model.encoder_q.{k}": v for k, v in sd.items()}
    k_ = {f"model.encoder_k.{k}": v.clone() * 2 for k, v in sd.items()}
    w, b = _head((128, dim), (128,))
    state = {**q, "model.encoder_q.classifier.weight": w, "model.encoder_q.classifier.bias": b, **k_,
             "model.encoder_k.classifier.weight": w.clone(), "model.encoder_k.classifier.bias": b.clone(),
             "model.queue": torch.randn(128, 64), "model.queue_ptr": torch.zeros(1, dtype=torch.long)}
    return {"epoch": 199, "global_step": 123456, "pytorch-lightning_version": "1.1.0", "state_dict": state,
            "optimizer_states": [_optimizer_state(sd)], "lr_schedulers": [{"last_epoch": 199}]}


def _dino_backbone(sd: StateDict, dim: int) -> Any:  # dino_deitsmall16_pretrain.pth / dino_resnet50_pretrain.pth
    return dict(sd)


def _dino_full(sd: StateDict, dim: int) -> Any:  # dino_*_pretrain_full_checkpoint.pth
    w, v = _head((64, dim), (64, 16))  # heads are dropped: test-sized
    teacher = {**{f"backbone.{k}": t for k, t in sd.items()}, "head.mlp.0.weight": w, "head.last_layer.weight_v": v}
    student = {f"module.{k}": t.clone() + 1 for k, t in teacher.items()}
    return {"student": student, "teacher": teacher, "optimizer": _optimizer_state(sd), "epoch": 100,
            "dino_loss": {"center": torch.zeros(1, 64)}}


# These converters only rename and filter keys, so ResNet-18 (real torchvision key names, a quarter of ResNet-50's
# bytes) and test-vit (ViT-S/16's key names, 16-d) stand in for ResNet-50 and ViT-S/B; DenseNet keys are DenseNet's.
LAYOUTS: list[tuple[str, str, Callable[[StateDict, int], Any]]] = [
    ("torchvision", "resnet18", _torchvision),
    ("densenet-legacy", "densenet121", _densenet_legacy),
    ("moco", "resnet18", _moco),
    ("moco", "densenet121", _moco),
    ("pycontrast", "resnet18", _pycontrast),
    ("swav", "resnet18", _swav),
    ("supervised-ckpt", "resnet18", _supervised_ckpt),
    ("mimic-chexpert", "densenet121", _mimic_chexpert),
    ("dino", "resnet18", _dino_backbone),
    ("dino", "test-vit", _dino_backbone),
    ("dino", "test-vit", _dino_full),
]


def _features(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return model.eval()(x)


def _assert_same_model(converted: nn.Module, source: nn.Module) -> None:
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(_features(converted, x), _features(source, x), rtol=0, atol=0)


@pytest.mark.parametrize(("fmt", "arch", "layout"), LAYOUTS, ids=[f"{f}-{a}-{fn.__name__}" for f, a, fn in LAYOUTS])
def test_torch_formats_round_trip(fmt: str, arch: str, layout: Callable[[StateDict, int], Any],
                                  tmp_path: Path) -> None:
    source = _source_model(arch)
    dim = _features(source, torch.zeros(1, 3, 32, 32)).shape[-1]
    path = tmp_path / "published.pth.tar"
    torch.save(layout(source.state_dict(), dim), path)
    _assert_same_model(convert_file(path, arch=arch, converter=fmt), source)


# ------------------------------------------------------------------------------------------- BYOL Haiku pickle
def _haiku_name(key: str) -> tuple[str, str]:
    """torchvision module name -> (Haiku module path, kind) of BYOL's ResNet-50."""
    if key in ("conv1", "bn1"):
        return ("res_net50/~/initial_conv" if key == "conv1" else "res_net50/~/initial_batchnorm"), key[:-1]
    layer, block, leaf = key.split(".", 2)
    path = f"res_net50/~/block_group_{int(layer[5:]) - 1}/~/block_{block}/~/"
    leaf = {"downsample.0": "shortcut_conv", "downsample.1": "shortcut_batchnorm"}.get(leaf) or (
        f"conv_{int(leaf[4:]) - 1}" if leaf.startswith("conv") else f"batchnorm_{int(leaf[2:]) - 1}")
    return path + leaf, "conv" if "conv" in leaf else "bn"


def _byol_pickle(model: nn.Module) -> dict[str, Any]:
    """pretrain_res50x1.pkl: Haiku params (HWIO convs, (1,1,1,C) BN scale/offset) and EMA states, plus heads."""
    params: dict[str, dict[str, np.ndarray]] = {}
    state: dict[str, dict[str, np.ndarray]] = {}
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            params[_haiku_name(name)[0]] = {"w": m.weight.detach().permute(2, 3, 1, 0).numpy().copy()}
        elif isinstance(m, nn.BatchNorm2d):
            path = _haiku_name(name)[0]
            c = m.num_features
            params[path] = {"scale": m.weight.detach().numpy().reshape(1, 1, 1, c).copy(),
                            "offset": m.bias.detach().numpy().reshape(1, 1, 1, c).copy()}
            for ema, stat in (("mean_ema", m.running_mean), ("var_ema", m.running_var)):
                state[f"{path}/~/{ema}"] = {"average": stat.numpy().reshape(1, 1, 1, c).copy(),
                                            "hidden": np.zeros((1, 1, 1, c), np.float32), "counter": np.array(5)}
    heads = {"projector/~/linear": {"w": np.ones((2048, 8), np.float32), "b": np.zeros(8, np.float32)},  # test-sized
             "projector/~/batch_norm": {"scale": np.ones(8, np.float32), "offset": np.zeros(8, np.float32)},
             "predictor/~/linear": {"w": np.ones((8, 8), np.float32)},
             "classifier": {"w": np.ones((2048, 10), np.float32)}}
    online = types.SimpleNamespace(online_params={**params, **heads}, online_state=state,
                                   target_params={k: {} for k in params}, opt_state=None)
    return {"experiment_state": online, "step": 1_000_000, "rng": np.zeros(2, np.uint32)}


def test_byol_haiku_round_trip(tmp_path: Path) -> None:
    source = _source_model("resnet50-tfsame")
    path = tmp_path / "pretrain_res50x1.pkl"
    path.write_bytes(pickle.dumps(_byol_pickle(source)))
    _assert_same_model(convert_file(path, arch="resnet50-tfsame", converter="byol-haiku", trust=True), source)


def test_byol_rejects_a_non_resnet50_module() -> None:
    ckpt = {"experiment_state": {"online_params": {"res_net50/~/stem/~/conv": {"w": np.zeros((3, 3, 3, 8))}},
                                 "online_state": {}}}
    with pytest.raises(CheckpointError, match="'stem/~/conv' is not part of a ResNet-50 encoder"):
        CONVERTERS.get("byol-haiku").fn(ckpt)


# -------------------------------------------------------------------------------------- SimCLR TF variables
def _tf_order(model: nn.Module) -> list[tuple[str, str]]:
    """(conv, bn) in SimCLR's TF creation order: a block's projection shortcut is built before its main path."""
    order = [("conv1", "bn1")]
    for layer in ("layer1", "layer2", "layer3", "layer4"):
        for b, block in enumerate(getattr(model, layer)):
            if block.downsample is not None:
                order.append((f"{layer}.{b}.downsample.0", f"{layer}.{b}.downsample.1"))
            order += [(f"{layer}.{b}.conv{i}", f"{layer}.{b}.bn{i}") for i in (1, 2, 3)]
    return order


def _simclr_variables(model: nn.Module) -> dict[str, np.ndarray]:
    sd = model.state_dict()
    out: dict[str, np.ndarray] = {"global_step": np.array(225206)}
    for i, (conv, bn) in enumerate(_tf_order(model)):
        suffix = f"_{i}" if i else ""
        kernel = sd[f"{conv}.weight"].permute(2, 3, 1, 0).numpy().copy()  # OIHW -> HWIO
        out[f"base_model/conv2d{suffix}/kernel"] = kernel
        out[f"base_model/conv2d{suffix}/kernel/Momentum"] = np.zeros_like(kernel)
        for tf_name, torch_name in (("gamma", "weight"), ("beta", "bias"), ("moving_mean", "running_mean"),
                                    ("moving_variance", "running_var")):
            out[f"base_model/batch_normalization{suffix}/{tf_name}"] = sd[f"{bn}.{torch_name}"].numpy().copy()
    out["head_contrastive/nl_0/dense/kernel"] = np.ones((2048, 8), np.float32)  # heads are dropped: test-sized
    out["head_contrastive/nl_0/batch_normalization/gamma"] = np.ones(8, np.float32)
    out["head_supervised/linear_layer/dense/kernel"] = np.ones((2048, 10), np.float32)
    return out


def test_simclr_tf_variables_round_trip(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    source = _source_model("resnet50")
    variables = _simclr_variables(source)
    # tensorflow is an optional extra: stand in for tf.train.load_checkpoint with the variables it would return
    monkeypatch.setattr("medtransfer.models.hub._read_tensorflow", lambda path: variables)
    model = convert_file(tmp_path / "ResNet50_1x" / "model.ckpt-225206", arch="resnet50", converter="simclr-tf")
    _assert_same_model(model, source)


def test_simclr_tf_refuses_a_wider_network() -> None:
    variables = _simclr_variables(_source_model("resnet50"))
    del variables["base_model/conv2d_52/kernel"]
    with pytest.raises(CheckpointError, match="52 convs and 53 BatchNorms; a ResNet-50 \\(1x\\) has 53"):
        CONVERTERS.get("simclr-tf").fn(variables)


# ------------------------------------------------------------------------------------------------ shared steps
def test_densenet_legacy_rename_is_torchvisions() -> None:
    # the three cases torchvision's regex covers, and a key it must leave alone
    sd = {"features.denseblock1.denselayer1.norm.1.weight": 1, "features.denseblock4.denselayer16.conv.2.weight": 2,
          "features.denseblock2.denselayer3.norm.2.running_var": 3, "features.norm5.weight": 4}
    assert list(rename_densenet_legacy(sd)) == [
        "features.denseblock1.denselayer1.norm1.weight", "features.denseblock4.denselayer16.conv2.weight",
        "features.denseblock2.denselayer3.norm2.running_var", "features.norm5.weight"]


def test_prefixes_are_stripped_only_at_the_start() -> None:
    # ssl-transfer's k.replace('module.', '') would also have rewritten the second key
    sd = {"module.conv1.weight": torch.zeros(1), "layer1.submodule.x": torch.zeros(1)}
    assert set(CONVERTERS.get("swav").fn(sd)) == {"conv1.weight", "layer1.submodule.x"}


def test_missing_prefix_names_the_layout() -> None:
    with pytest.raises(CheckpointError, match="No key starts with 'module.encoder_q.'"):
        CONVERTERS.get("moco").fn({"state_dict": {"module.conv1.weight": torch.zeros(1)}})


def test_non_tensor_entry_is_a_layout_error() -> None:
    with pytest.raises(CheckpointError, match="Entry 'epoch' is a int, not a tensor"):
        CONVERTERS.get("torchvision").fn({"conv1.weight": torch.zeros(1), "epoch": 3})


def test_every_converter_has_a_round_trip_test() -> None:
    tested = {f for f, _, _ in LAYOUTS} | {"byol-haiku", "simclr-tf"}
    assert tested == set(CONVERTERS.names())
