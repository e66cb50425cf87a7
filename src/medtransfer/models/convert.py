"""Source-format converters: one pure function per published checkpoint layout -> a flat backbone state dict.

Each converter takes what the file reader returns (a torch checkpoint, an unpickled BYOL/Haiku state, or a dict of
TensorFlow variables) and returns the backbone's state dict with the keys of `medtransfer.models.backbones`. The
card names its converter; nothing here guesses a format from the keys (STYLE.md). Prefixes are stripped with
`startswith`, never by substring (ssl-transfer's ``k.replace('module.', '')`` also rewrote keys that merely
contained it), and heads are dropped by their module prefix.

Layouts follow the reference studies' preparation scripts (PROTOCOLS.md §1.2 and §3).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

from medtransfer.errors import CheckpointError
from medtransfer.registry import Registry

StateDict = dict[str, torch.Tensor]
Reader = Literal["torch", "pickle", "tensorflow"]


@dataclass(frozen=True)
class Converter:
    """A registered source format.

    Attributes:
        name: registry name, the card's ``converter``.
        fn: the pure conversion function.
        reader: how the file is read: ``torch`` (``torch.load(weights_only=True)``), ``pickle`` (a full unpickle,
            allowed only with an explicit trust flag) or ``tensorflow`` (a TF checkpoint; needs tensorflow).
        description: the layout, in one line.
    """

    name: str
    fn: Callable[[Any], StateDict]
    reader: Reader
    description: str


CONVERTERS: Registry[Converter] = Registry("converter")


def _register(name: str, reader: Reader, description: str) -> Callable[[Callable[[Any], StateDict]],
                                                                       Callable[[Any], StateDict]]:
    def deco(fn: Callable[[Any], StateDict]) -> Callable[[Any], StateDict]:
        CONVERTERS.add(name, Converter(name, fn, reader, description))
        return fn

    return deco


# ----------------------------------------------------------------------------------------------- shared steps
def unwrap(ckpt: Any, keys: tuple[str, ...]) -> Mapping[str, Any]:
    """The state dict nested in `ckpt` under the first of `keys` it has; `ckpt` itself when it has none."""
    if not isinstance(ckpt, Mapping):
        raise CheckpointError(f"Expected a checkpoint dict, got a {type(ckpt).__name__}; is this the right file?")
    for key in keys:
        inner = ckpt.get(key)
        if isinstance(inner, Mapping):
            return inner
    return ckpt


def keep_prefix(sd: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    """Only the entries under `prefix` (e.g. MoCo's query encoder), with the prefix removed."""
    out = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
    if not out:
        raise CheckpointError(f"No key starts with {prefix!r} (first keys: {list(sd)[:5]}); the file is not in "
                              f"the expected layout. Check the model name or pass the right --format.")
    return out


def strip_prefix(sd: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    """Remove `prefix` from the keys that start with it (``module.`` of DataParallel); other keys are kept."""
    return {(k[len(prefix):] if k.startswith(prefix) else k): v for k, v in sd.items()}


def drop_heads(sd: Mapping[str, Any], heads: tuple[str, ...]) -> dict[str, Any]:
    """Remove the entries of head modules (projection, prototypes, classifier ...), matched by key prefix."""
    return {k: v for k, v in sd.items() if not k.startswith(heads)}


def tensors_only(sd: Mapping[str, Any]) -> StateDict:
    """Check every value is a tensor (numpy arrays are converted); anything else means a wrong layout."""
    out: StateDict = {}
    for k, v in sd.items():
        if isinstance(v, np.ndarray):
            v = torch.from_numpy(np.ascontiguousarray(v))
        if not isinstance(v, torch.Tensor):
            raise CheckpointError(f"Entry {k!r} is a {type(v).__name__}, not a tensor: the checkpoint is nested "
                                  f"differently than this format expects. Check the model name or pass --format.")
        out[k] = v
    return out


_HEADS = ("fc.", "classifier.")
# torchvision renames these in `_load_state_dict` (pytorch/vision#474): DenseNet weights saved before torch 0.4
# used nn.Sequential-style names ``norm.1``, ``conv.2`` for what are now the attributes ``norm1``, ``conv2``.
_DENSENET_LEGACY = re.compile(r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|"
                              r"running_var))$")


def rename_densenet_legacy(sd: Mapping[str, Any]) -> dict[str, Any]:
    """``features.denseblock1.denselayer1.norm.1.weight`` -> ``...norm1.weight`` (torchvision's own regex)."""
    out = {}
    for k, v in sd.items():
        m = _DENSENET_LEGACY.match(k)
        out[m.group(1) + m.group(2) if m else k] = v
    return out


# ------------------------------------------------------------------------------------------ torch formats
@_register("torchvision", "torch", "flat torchvision state dict (or {'state_dict': ...}); fc/classifier dropped")
def convert_torchvision(ckpt: Any) -> StateDict:
    """torchvision-named weights: supervised ResNets, Barlow Twins' and DINO's backbone files, converted SimCLR."""
    return tensors_only(drop_heads(unwrap(ckpt, ("state_dict",)), _HEADS))


@_register("densenet-legacy", "torch", "torchvision DenseNet with pre-0.4 'norm.1' style keys; classifier dropped")
def convert_densenet_legacy(ckpt: Any) -> StateDict:
    """torchvision's published DenseNet-121 (``densenet121-a639ec97.pth``) still has the legacy key names."""
    return tensors_only(drop_heads(rename_densenet_legacy(unwrap(ckpt, ("state_dict",))), _HEADS))


@_register("moco", "torch", "{'state_dict': {'module.encoder_q.*', 'module.encoder_k.*', 'module.queue'}, "
                            "'optimizer', 'epoch'}; query encoder kept, fc/classifier dropped")
def convert_moco(ckpt: Any) -> StateDict:
    """MoCo v1/v2 and PCL v1/v2 (ImageNet), MoCo-CXR (ResNet-18, DenseNet-121): the query encoder."""
    sd = keep_prefix(unwrap(ckpt, ("state_dict",)), "module.encoder_q.")
    return tensors_only(drop_heads(sd, _HEADS))


@_register("pycontrast", "torch", "{'model': {'module.encoder.*', 'module.head.*', 'module.head_jig.*'}, "
                                  "'model_ema', 'optimizer', 'epoch'}; the encoder kept")
def convert_pycontrast(ckpt: Any) -> StateDict:
    """InsDis, PIRL and InfoMin from PyContrast (the online encoder; ``model_ema`` is ignored)."""
    sd = keep_prefix(unwrap(ckpt, ("state_dict", "model")), "module.encoder.")
    return tensors_only(drop_heads(sd, _HEADS))


@_register("swav", "torch", "flat {'module.*', 'module.projection_head.*', 'module.prototypes.*'}")
def convert_swav(ckpt: Any) -> StateDict:
    """SwAV, DeepCluster-v2 and SeLa-v2 (facebookresearch/swav releases)."""
    sd = strip_prefix(unwrap(ckpt, ("state_dict",)), "module.")
    return tensors_only(drop_heads(sd, ("projection_head.", "prototypes.", *_HEADS)))


@_register("supervised-ckpt", "torch", "PyTorch ImageNet-example checkpoint {'state_dict': {'module.*'}, 'epoch', "
                                       "'best_acc1', 'optimizer'}; 'module.' optional; fc/classifier dropped")
def convert_supervised_ckpt(ckpt: Any) -> StateDict:
    """iNat2021 and the in-domain / domain-adapted chest X-ray ResNet-50s of BenchmarkTransferLearning."""
    sd = strip_prefix(unwrap(ckpt, ("state_dict", "model")), "module.")
    return tensors_only(drop_heads(sd, _HEADS))


@_register("mimic-chexpert", "torch", "Lightning {'state_dict': {'model.encoder_q.*', 'model.encoder_k.*', "
                                      "'model.queue'}, 'optimizer_states', 'epoch'}; query encoder, classifier dropped")
def convert_mimic_chexpert(ckpt: Any) -> StateDict:
    """CovidPrognosis MoCo DenseNet-121s pretrained on MIMIC-CXR + CheXpert."""
    sd = keep_prefix(unwrap(ckpt, ("state_dict",)), "model.encoder_q.")
    return tensors_only(drop_heads(sd, _HEADS))


@_register("dino", "torch", "DINO backbone file (flat); or a full checkpoint {'teacher': {'backbone.*', 'head.*'}}")
def convert_dino(ckpt: Any) -> StateDict:
    """DINO ResNet-50 (torchvision keys, no fc) and ViT-S/16, ViT-B/16 (timm keys)."""
    sd = strip_prefix(strip_prefix(unwrap(ckpt, ("teacher",)), "module."), "backbone.")
    return tensors_only(drop_heads(sd, ("head.", *_HEADS)))


# -------------------------------------------------------------------------------------- BYOL (Haiku pickle)
_HAIKU_TOP_HEADS = ("projector", "predictor", "classifier")


def _haiku_module_to_torch(path: str) -> str:
    """``block_group_1/~/block_0/~/conv_2`` -> ``layer2.0.conv3`` (Haiku ResNet-50 -> torchvision)."""
    if path == "initial_conv":
        return "conv1"
    if path == "initial_batchnorm":
        return "bn1"
    m = re.fullmatch(r"block_group_(\d+)/~/block_(\d+)/~/(conv_(\d)|batchnorm_(\d)|shortcut_conv|shortcut_batchnorm)",
                     path)
    if m is None:
        raise CheckpointError(f"Haiku module {path!r} is not part of a ResNet-50 encoder; is this a BYOL "
                              f"ResNet-50 checkpoint (pretrain_res50x1.pkl)?")
    group, block, leaf = int(m.group(1)), int(m.group(2)), m.group(3)
    name = {"shortcut_conv": "downsample.0", "shortcut_batchnorm": "downsample.1"}.get(leaf)
    if name is None:
        index = int(m.group(4) or m.group(5)) + 1  # Haiku counts from 0, torchvision from 1
        name = f"conv{index}" if leaf.startswith("conv") else f"bn{index}"
    return f"layer{group + 1}.{block}.{name}"


def _field(state: Any, name: str) -> Mapping[str, Any]:
    value = state.get(name) if isinstance(state, Mapping) else getattr(state, name, None)
    if not isinstance(value, Mapping):
        raise CheckpointError(f"BYOL experiment state has no {name!r} mapping; expected the layout of "
                              f"pretrain_res50x1.pkl ({{'experiment_state': (online_params, online_state, ...)}}).")
    return value


def _encoder_modules(tree: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """Haiku ``{'res_net50/~/block_group_0/~/...': {'w': ...}}`` -> encoder-relative paths; heads dropped."""
    out = {}
    for module, leaves in tree.items():
        top, sep, rest = module.partition("/~/")
        if top.startswith(_HAIKU_TOP_HEADS):
            continue
        if not sep:
            raise CheckpointError(f"Haiku module {module!r} is outside the encoder and not a known head.")
        out[rest] = leaves
    return out


@_register("byol-haiku", "pickle", "Haiku pickle {'experiment_state': {online_params, online_state, ...}}; conv "
                                   "HWIO->OIHW, BN scale/offset, EMA mean/var; projector/predictor dropped")
def convert_byol_haiku(ckpt: Any) -> StateDict:
    """BYOL ResNet-50 (``pretrain_res50x1.pkl``), mapped by Haiku module name, so no key is matched by position.

    Haiku convs are (H, W, in, out): permuted (3, 2, 0, 1) to torch's (out, in, H, W). BatchNorm's ``scale`` /
    ``offset`` are weight / bias, and its running statistics are the ``average`` of the ``mean_ema`` and
    ``var_ema`` states. Haiku pads 'SAME' (asymmetric at stride 2): use the ``resnet50-tfsame`` architecture.
    """
    if not isinstance(ckpt, Mapping) or "experiment_state" not in ckpt:
        raise CheckpointError("BYOL checkpoint has no 'experiment_state'; expected pretrain_res50x1.pkl's layout.")
    state = ckpt["experiment_state"]
    out: dict[str, Any] = {}
    for path, leaves in _encoder_modules(_field(state, "online_params")).items():
        key = _haiku_module_to_torch(path)
        if "w" in leaves:
            out[f"{key}.weight"] = torch.from_numpy(np.asarray(leaves["w"])).permute(3, 2, 0, 1).contiguous()
        else:
            out[f"{key}.weight"] = torch.from_numpy(np.asarray(leaves["scale"]).reshape(-1).copy())
            out[f"{key}.bias"] = torch.from_numpy(np.asarray(leaves["offset"]).reshape(-1).copy())
    stats = {"mean_ema": "running_mean", "var_ema": "running_var"}
    for path, leaves in _encoder_modules(_field(state, "online_state")).items():
        module, _, stat = path.rpartition("/~/")
        if stat not in stats:
            raise CheckpointError(f"BYOL state entry {path!r} is not a BatchNorm EMA (mean_ema / var_ema).")
        out[f"{_haiku_module_to_torch(module)}.{stats[stat]}"] = torch.from_numpy(
            np.asarray(leaves["average"]).reshape(-1).copy())
    return tensors_only(out)


# ------------------------------------------------------------------------------ SimCLR (TensorFlow checkpoint)
_TF_CONV = re.compile(r"^base_model/conv2d(?:_(\d+))?/kernel$")
_TF_BN = re.compile(r"^base_model/batch_normalization(?:_(\d+))?/(gamma|beta|moving_mean|moving_variance)$")
_TF_BN_NAMES = {"gamma": "weight", "beta": "bias", "moving_mean": "running_mean", "moving_variance": "running_var"}


def _resnet_tf_creation_order(blocks: tuple[int, ...] = (3, 4, 6, 3)) -> list[tuple[str, str]]:
    """(conv, bn) torch module names in the order SimCLR's TF ResNet creates its layers.

    TF numbers layers by creation (``conv2d``, ``conv2d_1`` ...). SimCLR's bottleneck block builds the projection
    shortcut before the main path, so a block's ``downsample`` comes first here, unlike torch's module order.
    """
    order = [("conv1", "bn1")]
    for layer, n in enumerate(blocks, start=1):
        for b in range(n):
            if b == 0:
                order.append((f"layer{layer}.0.downsample.0", f"layer{layer}.0.downsample.1"))
            order += [(f"layer{layer}.{b}.conv{i}", f"layer{layer}.{b}.bn{i}") for i in (1, 2, 3)]
    return order


@_register("simclr-tf", "tensorflow", "TF checkpoint of SimCLR v1/v2 (base_model/conv2d_N/kernel, "
                                      "base_model/batch_normalization_N/*); heads and optimizer slots dropped")
def convert_simclr_tf(variables: Mapping[str, Any]) -> StateDict:
    """SimCLR v1 / v2 ResNet-50 (1x, no selective kernels) from its TensorFlow variables (name -> array).

    Accounts for every ``base_model/`` variable: convs and BNs are matched by their TF creation index, optimizer
    slots (``.../Momentum``) and the heads (``head_contrastive``, ``head_supervised``) are dropped.
    """
    convs: dict[int, Any] = {}
    bns: dict[int, dict[str, Any]] = {}
    for name, value in variables.items():
        if (m := _TF_CONV.match(name)) is not None:
            convs[int(m.group(1) or 0)] = value
        elif (m := _TF_BN.match(name)) is not None:
            bns.setdefault(int(m.group(1) or 0), {})[m.group(2)] = value
        elif name.startswith("base_model/") and name.count("/") <= 2:
            raise CheckpointError(f"TF variable {name!r} is neither a conv kernel nor a BatchNorm parameter; is "
                                  f"this a SimCLR ResNet-50 (1x, sk0) checkpoint?")
    order = _resnet_tf_creation_order()
    if sorted(convs) != list(range(len(order))) or sorted(bns) != list(range(len(order))):
        raise CheckpointError(f"SimCLR checkpoint has {len(convs)} convs and {len(bns)} BatchNorms; a ResNet-50 "
                              f"(1x) has {len(order)} of each. Wider (2x, 4x) or SK models are not supported.")
    out: dict[str, Any] = {}
    for i, (conv, bn) in enumerate(order):
        if len(bns[i]) != len(_TF_BN_NAMES):
            raise CheckpointError(f"TF BatchNorm {i} has only {sorted(bns[i])} of {sorted(_TF_BN_NAMES)}.")
        out[f"{conv}.weight"] = torch.from_numpy(np.asarray(convs[i])).permute(3, 2, 0, 1).contiguous()
        for tf_name, torch_name in _TF_BN_NAMES.items():
            out[f"{bn}.{torch_name}"] = torch.from_numpy(np.asarray(bns[i][tf_name]).reshape(-1).copy())
    return tensors_only(out)
