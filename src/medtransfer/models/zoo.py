"""The named models. Architectures from random initialisation need no download; published checkpoints follow."""

from __future__ import annotations

from medtransfer.models.card import InputContract, ModelCard
from medtransfer.models.published import PUBLISHED
from medtransfer.registry import Registry

MODELS: Registry[ModelCard] = Registry("model")

_SMALL = InputContract(input_size=None, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))  # MedMNIST: Normalize(0.5, 0.5)

for _card in (
    ModelCard("resnet18", "resnet18", 512, description="ResNet-18 (torchvision), random initialisation."),
    ModelCard("resnet50", "resnet50", 2048, description="ResNet-50 (torchvision), random initialisation."),
    ModelCard("densenet121", "densenet121", 1024, description="DenseNet-121 (torchvision), random initialisation."),
    ModelCard("resnet18-small", "resnet18-small", 512, input=_SMALL,
              paper="MedMNIST v2, Yang et al., Sci. Data 2023",
              description="ResNet-18 with the 3x3 stride-1 stem and no max-pool of the MedMNIST 28 px benchmark; "
                          "images are used at their stored size. Random initialisation."),
    ModelCard("resnet50-small", "resnet50-small", 2048, input=_SMALL,
              paper="MedMNIST v2, Yang et al., Sci. Data 2023",
              description="ResNet-50 with the MedMNIST 28 px stem; random initialisation."),
    ModelCard("small-cnn", "small-cnn", 64, input=_SMALL,
              description="Three VGG-style conv blocks (16-32-64) with global max pooling, 64-d; a light "
                          "from-scratch baseline for small images. Random initialisation."),
    ModelCard("test-cnn", "test-cnn", 16, input=InputContract(input_size=None, mean=(0.5,) * 3, std=(0.5,) * 3),
              description="A 2-layer CNN with 16-d features, for tests."),
):
    MODELS.add(_card.name, _card)

# 3D encoders (MONAI; models/backbones3d.py): grey volumes at their stored size, [0, 1] mapped to [-1, 1].
_VOL = InputContract(input_size=None, mean=(0.5,), std=(0.5,), in_chans=1)
# MedMNIST3D's loader gives voxels / 255 in [0, 1] with no normalisation (MedMNIST3D.__getitem__)
_VOL_MEDMNIST = InputContract(input_size=None, mean=(0.0,), std=(1.0,), in_chans=1)
for _card in (
    ModelCard("resnet18-3d-small", "resnet18-3d-small", 512, input=_VOL_MEDMNIST, dims=3,
              paper="MedMNIST v2, Yang et al., Sci. Data 2023",
              description="The 'ResNet-18+3D' of the MedMNIST v2 3D benchmark: the 28 px ResNet-18 (3x3x3 "
                          "stride-1 stem, no max-pool) with 3D convs, voxels in [0, 1]. Random initialisation "
                          "(MONAI's; the reference inflates a random 2D init)."),
    ModelCard("resnet18-3d", "resnet18-3d", 512, input=_VOL, dims=3,
              description="3D ResNet-18 (MONAI), one input channel; random initialisation."),
    ModelCard("resnet10-3d", "resnet10-3d", 512, input=_VOL, dims=3,
              description="3D ResNet-10 (MONAI), one input channel; random initialisation."),
    ModelCard("unet-encoder-3d", "unet-encoder-3d", 128, input=_VOL, dims=3,
              paper="Taleb et al., 3D Self-Supervised Methods for Medical Imaging, NeurIPS 2020",
              description="3D U-Net down path (4 levels, 16 filters doubling, max pooling), the pretext-task "
                          "encoder of Taleb et al.; random initialisation."),
    ModelCard("test-cnn3d", "test-cnn3d", 16, input=_VOL, dims=3,
              description="A 2-layer 3D CNN with 16-d features, for tests."),
):
    MODELS.add(_card.name, _card)

# Published checkpoints (models/published.py): fetched or converted into $MEDTRANSFER_HOME/models/<name>/.
for _card in PUBLISHED:
    MODELS.add(_card.name, _card)


def is_internal(name: str) -> bool:
    """True for the tiny ``test-*`` models that exist for the test-suite (hidden by `models list`)."""
    return name.startswith("test-")
