"""Safe reading of weight files, strict loading into a model, and a content hash of a model's weights."""

from __future__ import annotations

import hashlib
import pickle
from pathlib import Path

import torch
from torch import nn

from medtransfer.errors import CheckpointError

StateDict = dict[str, torch.Tensor]


def read_state_dict(path: str | Path) -> StateDict:
    """Read a flat state dict from `.safetensors` or a torch file, never unpickling arbitrary code.

    torch files are read with ``weights_only=True``: a checkpoint that needs code to unpickle is refused.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"Weights file {str(path)!r} does not exist.")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as e:
            raise CheckpointError(f"Could not read {str(path)!r} as safetensors ({e}); "
                                  f"the file may be truncated.") from e
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(
            f"Refused to load {str(path)!r}: it needs arbitrary code to unpickle, which could run anything. "
            f"Convert it to a safetensors file on a machine you trust, then pass that file. "
            f"({str(e).splitlines()[0]})"
        ) from e
    except (RuntimeError, EOFError, OSError) as e:
        raise CheckpointError(f"Could not read {str(path)!r} as a torch checkpoint ({e}); it may be truncated.") from e
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise CheckpointError(f"{str(path)!r} is not a flat state dict of tensors (keys: {list(sd)[:5]}); "
                              f"save its backbone's state_dict() (without wrappers or heads) and pass that.")
    return sd


def load_strict(model: nn.Module, sd: StateDict, *, source: str) -> None:
    """Load `sd` into `model` strictly; missing/unexpected keys and shape mismatches raise, naming `source`."""
    own = model.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    if missing or unexpected:
        raise CheckpointError(
            f"Weights from {source} do not fit the model: {len(missing)} missing keys {missing[:10]}, "
            f"{len(unexpected)} unexpected keys {unexpected[:10]}. Is it the right architecture and converter?"
        )
    bad = [f"{k}: {tuple(sd[k].shape)} vs {tuple(v.shape)}" for k, v in own.items() if sd[k].shape != v.shape]
    if bad:
        raise CheckpointError(f"Weights from {source} have {len(bad)} tensors of the wrong shape "
                              f"(checkpoint vs model): {bad[:10]}.")
    model.load_state_dict(sd, strict=True)


def weights_sha256(model: nn.Module) -> str:
    """sha256 over the model's state dict (names, dtypes, shapes, bytes): the identity of its weights.

    Remembered on the model and recomputed only when a tensor changed: every in-place update (an optimizer step,
    `load_state_dict`) bumps the tensor's version counter, and a replaced tensor has another address. Hashing
    ResNet-50's 100 MB takes ~0.4 s, which would otherwise be paid by every extraction call.
    """
    state = model.state_dict()
    stamp = tuple((k, v.data_ptr(), v._version, tuple(v.shape), v.dtype) for k, v in state.items())
    cached = model.__dict__.get("_medtransfer_sha256")
    if cached is not None and cached[0] == stamp:
        return cached[1]
    h = hashlib.sha256()
    for name, t in sorted(state.items()):
        t = t.detach().cpu().contiguous().reshape(-1)  # 1-d, so 0-d tensors can be viewed as bytes
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    model.__dict__["_medtransfer_sha256"] = (stamp, h.hexdigest())
    return h.hexdigest()
