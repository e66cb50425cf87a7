from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from medtransfer import models
from medtransfer.analysis import inversion as inv
from medtransfer.errors import CheckpointError, ConfigError, DataError

tm = pytest.importorskip("torchmetrics.functional.image.lpips", reason="torchmetrics is needed for LPIPS")


def test_skip_net_has_the_reference_shape() -> None:
    net = inv.SkipNet()
    assert net.scales == 6
    z = torch.rand(1, 32, 128, 128) * 0.1  # six halvings: 2 x 2 at the bottom (the reference's 256 gives 4 x 4)
    assert net(z).shape == (1, 3, 128, 128)
    assert inv.SkipNet(out_channels=1)(z).shape == (1, 1, 128, 128)
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert {m.kernel_size[0] for m in convs} == {1, 3, 5, 7}
    assert not any(isinstance(m, torch.nn.Sigmoid) for m in net.modules())
    with pytest.raises(ConfigError, match="one entry per scale"):
        inv.SkipNet(down=(8, 8), up=(8,), skip=(4, 4), filters=(3, 3))


def test_inversion_lowers_the_feature_loss() -> None:
    model = models.create("small-cnn")
    image = torch.rand(1, 32, 32)
    torch.manual_seed(0)
    small = inv.SkipNet(in_channels=8, out_channels=1, down=(8, 8), up=(8, 8), skip=(2, 2), filters=(3, 3))
    r = inv.invert(model, image, iters=30, lr=1e-2, size=32, crop=28, net=small)
    assert r.reconstruction.shape == r.target.shape == (1, 28, 28)
    assert r.reconstruction.min() >= 0 and r.reconstruction.max() <= 1
    assert r.losses[-5:].mean() < 0.5 * r.losses[:5].mean()
    torch.manual_seed(0)
    again = inv.invert(model, image, iters=30, lr=1e-2, size=32, crop=28, net=inv.SkipNet(
        in_channels=8, out_channels=1, down=(8, 8), up=(8, 8), skip=(2, 2), filters=(3, 3)))
    np.testing.assert_allclose(again.losses[0], r.losses[0], rtol=1e-5)  # the same seeded noise


def test_inversion_rejects_bad_input() -> None:
    model = models.create("small-cnn")
    with pytest.raises(DataError, match=r"\[0, 1\]"):
        inv.invert(model, torch.rand(1, 32, 32) * 3, iters=1)
    with pytest.raises(DataError, match="one 2D image"):
        inv.invert(model, torch.rand(2, 1, 32, 32), iters=1)
    with pytest.raises(ConfigError, match="iters"):
        inv.invert(model, torch.rand(1, 32, 32), iters=0)
    with pytest.raises(ConfigError, match="crop"):
        inv.invert(model, torch.rand(1, 32, 32), size=64, crop=128)
    with pytest.raises(ConfigError, match="multi-scale"):
        inv.invert(models.create("dino-vit-s16", pretrained=False), torch.rand(3, 32, 32), iters=1)


@pytest.mark.parametrize("net", ["alex", "vgg", "squeeze"])
def test_lpips_arithmetic_equals_torchmetrics_on_random_nets(net: str) -> None:
    torch.manual_seed(0)
    module = tm._LPIPS(pretrained=True, net=net, pnet_rand=True)  # random backbone, the shipped linear layers
    a, b = torch.rand(2, 1, 40, 48), torch.rand(2, 1, 40, 48)
    ours = inv.perceptual_distance(a, b, module, size=64)
    theirs = module(inv.lpips_input(a, 64), inv.lpips_input(b, 64)).flatten().numpy()
    np.testing.assert_allclose(ours, theirs, rtol=1e-4)
    assert np.all(inv.perceptual_distance(a, a, module, size=64) == 0)


def test_missing_backbone_weights_name_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    old = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / "torch" / "hub"))
    try:
        path, url = inv.lpips_backbone_file("alex")
        assert path == tmp_path / "torch" / "hub" / "checkpoints" / "alexnet-owt-7be5be79.pth"
        assert url == "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth"
        with pytest.raises(CheckpointError, match="alexnet-owt-7be5be79.pth.*download.pytorch.org"):
            inv.load_lpips("alex")
        with pytest.raises(ConfigError, match="Unknown LPIPS network"):
            inv.load_lpips("resnet")
    finally:
        torch.hub.set_dir(old)


def test_present_backbone_weights_load_with_every_linear_key(tmp_path: Path) -> None:
    """A backbone file in torchvision's cache (here random weights in the real key layout) loads; the linear layers
    come from torchmetrics' files with every key checked."""
    import torchvision

    old = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / "hub"))
    try:
        path, _ = inv.lpips_backbone_file("squeeze")
        path.parent.mkdir(parents=True)
        torch.save(torchvision.models.squeezenet1_1().state_dict(), path)
        module = inv.load_lpips("squeeze")
        lin = inv.load_lpips_linear(Path(tm.__file__).parent / "lpips_models" / "squeeze.pth")
        torch.testing.assert_close(module.lin0.model[1].weight, lin["lin0.model.1.weight"])
        d = inv.perceptual_distance(torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32), module, size=64)
        assert d.shape == (1,) and d[0] > 0
    finally:
        torch.hub.set_dir(old)


def test_dip_size_must_fit_its_scales() -> None:
    with pytest.raises(ConfigError, match="multiple of 64 and at least 128"):
        inv.invert(models.create("small-cnn"), torch.rand(1, 32, 32), iters=1, size=96, crop=64)


def test_the_reported_loss_is_that_of_the_returned_reconstruction() -> None:
    from medtransfer.data.transforms import normalize

    model = models.create("small-cnn")
    torch.manual_seed(1)
    small = inv.SkipNet(in_channels=8, out_channels=1, down=(8, 8), up=(8, 8), skip=(2, 2), filters=(3, 3))
    image = torch.rand(1, 32, 32)
    state = torch.random.get_rng_state()
    r = inv.invert(model, image, iters=5, lr=1e-2, size=32, crop=28, net=small)
    assert torch.equal(torch.random.get_rng_state(), state)  # the caller's random stream is left alone
    c = model.card.input
    f = inv.layer4(model.eval())

    def prep(x: torch.Tensor) -> torch.Tensor:
        return normalize(x, mean=c.mean, std=c.std, normalization=c.normalization)

    with torch.no_grad():
        mse = torch.nn.functional.mse_loss(f(prep(torch.from_numpy(r.reconstruction)[None])),
                                           f(prep(torch.from_numpy(r.target)[None])))
    assert float(mse) == pytest.approx(r.final_loss, rel=1e-4)
