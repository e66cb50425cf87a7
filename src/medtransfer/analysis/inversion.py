"""Feature inversion with a deep image prior, and perceptual distance (LPIPS) to the original (PROTOCOLS.md §1.10).

A DIP ``skip`` encoder-decoder maps fixed noise to an image; its weights are optimised so that the image's last-stage
("layer 4") feature map under the model matches the target image's. What the reconstruction keeps shows what the
features keep; LPIPS (AlexNet, VGG or SqueezeNet) measures how far it is from the original.

One deliberate difference from the reference (nanxuanzhao/Good_transfer as adapted by Anton et al.): there the
target is fed to the model un-normalised (ToTensor only) while the model was trained on normalised inputs; here both
the target and the reconstruction go through the model card's normalisation, so the features are those the model
computes on its own kind of input.
"""

from __future__ import annotations

import copy
import importlib.util
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from medtransfer.errors import CheckpointError, ConfigError, DataError

# ---------------------------------------------------------------- the deep image prior `skip` network


def _conv(c_in: int, c_out: int, k: int, *, downsample: bool = False) -> nn.Sequential:
    """DIP's conv: zero padding k//2, stride 1, then 2x2 average pooling when downsampling ('avg' mode)."""
    layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, k, padding=k // 2)]
    if downsample:
        layers.append(nn.AvgPool2d(2, 2))
    return nn.Sequential(*layers)


def _block(c_in: int, c_out: int, k: int, *, downsample: bool = False) -> list[nn.Module]:
    return [_conv(c_in, c_out, k, downsample=downsample), nn.BatchNorm2d(c_out), nn.LeakyReLU(0.2, inplace=True)]


class _Level(nn.Module):
    """One scale: concat(skip(x), up(deeper(down(x)))), then BN -> conv -> BN -> act -> 1x1 conv -> BN -> act."""

    def __init__(self, c_in: int, down: int, up: int, skip: int, k_down: int, k_up: int,
                 inner: nn.Module | None, inner_out: int) -> None:
        super().__init__()
        self.skip = nn.Sequential(*_block(c_in, skip, 1)) if skip else None
        deeper: list[nn.Module] = [*_block(c_in, down, k_down, downsample=True), *_block(down, down, k_down)]
        if inner is not None:
            deeper.append(inner)
        deeper.append(nn.Upsample(scale_factor=2, mode="nearest"))
        self.deeper = nn.Sequential(*deeper)
        k = inner_out if inner is not None else down
        self.merge = nn.Sequential(nn.BatchNorm2d(skip + k), *_block(skip + k, up, k_up), *_block(up, up, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d = self.deeper(x)
        if self.skip is not None:
            s = self.skip(x)
            h, w = min(s.shape[2], d.shape[2]), min(s.shape[3], d.shape[3])  # DIP's Concat crops to the smaller
            d = torch.cat([_centre(s, h, w), _centre(d, h, w)], dim=1)
        return self.merge(d)


def _centre(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    top, left = (x.shape[2] - h) // 2, (x.shape[3] - w) // 2
    return x[:, :, top:top + h, left:left + w]


class SkipNet(nn.Module):
    """Ulyanov et al.'s deep-image-prior ``skip`` network (no sigmoid: the output is clipped afterwards).

    Defaults: the reference's 32 input channels, channels down/up (16, 32, 64, 128, 128, 128), 4 skip channels per
    scale, filters (7, 7, 5, 5, 3, 3), nearest upsampling, average downsampling, zero padding, LeakyReLU(0.2).
    """

    def __init__(self, in_channels: int = 32, out_channels: int = 3,
                 down: Sequence[int] = (16, 32, 64, 128, 128, 128), up: Sequence[int] = (16, 32, 64, 128, 128, 128),
                 skip: Sequence[int] = (4,) * 6, filters: Sequence[int] = (7, 7, 5, 5, 3, 3)) -> None:
        super().__init__()
        if not len(down) == len(up) == len(skip) == len(filters):
            raise ConfigError("SkipNet: down, up, skip and filters need one entry per scale.")
        inner: nn.Module | None = None
        inner_out = 0
        for i in reversed(range(len(down))):
            c_in = in_channels if i == 0 else down[i - 1]
            inner = _Level(c_in, down[i], up[i], skip[i], filters[i], filters[i], inner, inner_out)
            inner_out = up[i]
        assert inner is not None
        self.body = inner
        self.head = nn.Conv2d(up[0], out_channels, 1)
        self.scales = len(down)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(z))


# ---------------------------------------------------------------- inversion


@dataclass(frozen=True)
class InversionResult:
    """A reconstruction (C, S, S) in [0, 1], the target it inverts (same shape), the loss per iteration, and the
    layer-4 MSE of the returned (clipped) reconstruction itself."""

    reconstruction: np.ndarray
    target: np.ndarray
    losses: np.ndarray
    final_loss: float


def layer4(model: nn.Module) -> nn.Sequential:
    """The model's last-stage feature map (ResNet layer4, DenseNet's last block, the last stage of small stems)."""
    from medtransfer.models.encoders import encoder_stages

    stages, _ = encoder_stages(model)
    return nn.Sequential(*stages)


def invert(model: nn.Module, image: torch.Tensor, *, iters: int = 1000, lr: float = 1e-3, size: int = 256,
           crop: int = 224, seed: int = 0, device: str | torch.device | None = None,
           net: nn.Module | None = None, tick: Callable[[int], None] | None = None) -> InversionResult:
    """Reconstruct `image` (C, H, W) in [0, 1] from the model's layer-4 features with a deep image prior.

    The target is resized (bilinear, shorter side) and centre-cropped to `crop`; the DIP maps noise (32, size, size)
    uniform x 0.1 to an image whose centre `crop` is compared; Adam on the DIP's weights only, MSE on layer-4 maps.
    `net` replaces the default `SkipNet` (smaller ones for tests).
    """
    from medtransfer.data.transforms import match_channels, normalize, resize_crop
    from medtransfer.features import default_device, resolve_contract

    if isinstance(iters, bool) or not isinstance(iters, int) or iters < 1:
        raise ConfigError(f"The 'iters' of an inversion must be a positive int. Got {iters!r} instead.")
    if crop > size:
        raise ConfigError(f"The inversion's crop ({crop}) must not exceed the DIP output size ({size}).")
    if image.dim() != 3 or float(image.min()) < 0 or float(image.max()) > 1:
        raise DataError(f"invert takes one 2D image (C, H, W) with values in [0, 1]; got shape {tuple(image.shape)}, "
                        f"range [{float(image.min()):.3g}, {float(image.max()):.3g}].")
    dev = default_device(device)
    contract = resolve_contract(model)
    model = copy.deepcopy(model).cpu()  # frozen here; the caller's model keeps its own flags and device
    features = layer4(model.eval()).to(dev)  # the stages are probed on the CPU, then moved
    for p in model.parameters():
        p.requires_grad_(False)

    def prepare(x: torch.Tensor) -> torch.Tensor:
        x = match_channels(x, contract.in_chans)
        return normalize(x, mean=contract.mean, std=contract.std, normalization=contract.normalization)

    target = resize_crop(image[None].float(), crop).clamp(0, 1).to(dev)
    with torch.no_grad():
        goal = features(prepare(target))
    g = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):  # a seeded init that leaves the caller's random state alone
        torch.manual_seed(seed)
        dip = (net or SkipNet(out_channels=target.shape[1])).to(dev).train()
    scales = getattr(dip, "scales", 0)
    if size % 2 ** scales or size // 2 ** scales < 2:  # batch norm needs more than one value at the bottom
        raise ConfigError(f"The DIP output size ({size}) must be a multiple of {2 ** scales} and at least "
                          f"{2 ** (scales + 1)} for a {scales}-scale skip network (the reference uses 256).")
    z = (torch.rand(1, 32 if net is None else _in_channels(dip), size, size, generator=g) * 0.1).to(dev)
    opt = torch.optim.Adam(dip.parameters(), lr=lr)
    top = (size - crop) // 2
    losses = np.empty(iters)
    for i in range(iters):
        opt.zero_grad(set_to_none=True)
        out = dip(z)[:, :, top:top + crop, top:top + crop]
        loss = F.mse_loss(features(prepare(out)), goal)
        loss.backward()
        opt.step()
        losses[i] = float(loss.detach())
        if tick is not None:
            tick(1)
    with torch.no_grad():  # in train mode, as it was optimised (batch statistics, as DIP keeps them)
        out = dip(z)[:, :, top:top + crop, top:top + crop].clamp(0, 1)
        final = float(F.mse_loss(features(prepare(out)), goal))
    return InversionResult(out[0].cpu().numpy(), target[0].cpu().numpy(), losses, final)


def _in_channels(net: nn.Module) -> int:
    return next(m for m in net.modules() if isinstance(m, nn.Conv2d)).in_channels


# ---------------------------------------------------------------- perceptual distance

LPIPS_NETS = {"alex": "AlexNet_Weights", "vgg": "VGG16_Weights", "squeeze": "SqueezeNet1_1_Weights"}


def lpips_backbone_file(net: str) -> tuple[Path, str]:
    """Where torchvision looks for the LPIPS backbone's ImageNet weights, and where they are published."""
    import torchvision.models

    if net not in LPIPS_NETS:
        raise ConfigError(f"Unknown LPIPS network {net!r}; choose one of {list(LPIPS_NETS)}.")
    url = getattr(torchvision.models, LPIPS_NETS[net]).DEFAULT.url
    return Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1], url


def load_lpips(net: str = "alex") -> nn.Module:
    """torchmetrics' LPIPS module with its published weights: the backbone's ImageNet weights from torchvision's
    cache (never downloaded here: a missing file is an error naming it, its folder and its URL) and the linear
    layers shipped inside torchmetrics, each key checked (torchmetrics itself loads them with strict=False)."""
    if importlib.util.find_spec("torchmetrics") is None:
        raise ConfigError("Perceptual distance needs torchmetrics (pip install 'torchmetrics>=1.4').")
    from torchmetrics.functional.image import lpips as tm

    path, url = lpips_backbone_file(net)
    if not path.is_file():
        raise CheckpointError(
            f"LPIPS ({net}) needs the ImageNet weights of its backbone, {path.name}, which are not in {path.parent}. "
            f"Fetch them on a machine with internet access ({url}, e.g. `curl -L -o {path.name} {url}`) and copy "
            f"the file to {path.parent}/ (or set TORCH_HOME to a folder whose hub/checkpoints/ holds it).")
    module = tm._LPIPS(pretrained=False, net=net, pnet_rand=False)  # type: ignore[arg-type]  # checked above
    lin_file = Path(tm.__file__).parent / "lpips_models" / f"{net}.pth"
    if not lin_file.is_file():
        raise CheckpointError(f"torchmetrics' LPIPS linear layers {lin_file} are missing; reinstall torchmetrics.")
    state = load_lpips_linear(lin_file)
    expected = {k for k in module.state_dict() if k.startswith("lin") and not k.startswith("lins.")}  # lins aliases
    if set(state) != expected:
        raise CheckpointError(f"{lin_file} does not match LPIPS-{net}'s linear layers: missing "
                              f"{sorted(expected - set(state))[:5]}, unexpected {sorted(set(state) - expected)[:5]}.")
    module.load_state_dict(state, strict=False)  # the backbone keys are already loaded by torchvision
    return module.eval()


def load_lpips_linear(path: Path) -> dict[str, torch.Tensor]:
    """The linear-layer weights file shipped by torchmetrics (saved from CUDA tensors: mapped to the CPU)."""
    return torch.load(path, map_location="cpu", weights_only=True)


def lpips_input(x: torch.Tensor, size: int = 224) -> torch.Tensor:
    """Images (N, C, H, W) in [0, 1] -> resized (bicubic) and centre-cropped to `size`, 3 channels, in [-1, 1]."""
    from medtransfer.data.transforms import match_channels, resize_crop

    return match_channels(resize_crop(x.float(), size, interpolation="bicubic"), 3) * 2 - 1


@torch.no_grad()
def perceptual_distance(a: torch.Tensor, b: torch.Tensor, module: Any, *, size: int = 224) -> np.ndarray:
    """LPIPS per image pair between `a` and `b` (N, C, H, W) in [0, 1], with `module` from `load_lpips` (or any
    torchmetrics `_LPIPS`): per layer, unit-normalise channels, square the difference, weight by the linear layer,
    average over space; sum over layers."""
    x, y = lpips_input(a, size), lpips_input(b, size)
    fa, fb = module.net(module.scaling_layer(x)), module.net(module.scaling_layer(y))
    total = torch.zeros(len(x))
    for k, lin in enumerate(module.lins):
        na = fa[k] / (fa[k].pow(2).sum(dim=1, keepdim=True).sqrt() + 1e-10)
        nb = fb[k] / (fb[k].pow(2).sum(dim=1, keepdim=True).sqrt() + 1e-10)
        total += lin.model((na - nb) ** 2).mean(dim=(1, 2, 3)).cpu()
    return total.numpy().astype(np.float64)
