import logging
import warnings

from medtransfer._lightning import quiet_lightning


def test_quiet_lightning_hides_known_noise_and_restores_the_loggers():
    logger = logging.getLogger("pytorch_lightning.trainer")
    logger.setLevel(logging.DEBUG)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with quiet_lightning():
            assert logger.level == logging.WARNING
            warnings.warn("The 'train_dataloader' does not have many workers which may be a bottleneck.", stacklevel=1)
            warnings.warn("something users must see", stacklevel=1)
    assert [str(w.message) for w in caught] == ["something users must see"]
    assert logger.level == logging.DEBUG


def test_a_torch_device_maps_to_lightnings_accelerator_and_device_index() -> None:
    import torch

    from medtransfer._lightning import lightning_devices

    assert lightning_devices(torch.device("cpu")) == ("cpu", 1)
    assert lightning_devices(torch.device("cuda")) == ("gpu", [0])
    assert lightning_devices(torch.device("cuda", 1)) == ("gpu", [1])  # not the first GPU when cuda:1 is asked
