"""Datasets: cards, the ImageDataset interface, and one module per source (MedMNIST, phantoms, user folders)."""

from __future__ import annotations

from medtransfer.data import medmnist, mednist, phantoms  # noqa: F401  (registers their datasets)
from medtransfer.data.base import (
    DATASETS,
    ArrayDataset,
    DatasetCard,
    DatasetEntry,
    ImageDataset,
    default_data_root,
    get_card,
    is_user_path,
    load,
)
from medtransfer.data.folder import FolderDataset, folder_card, folder_dataset
from medtransfer.data.mednist import unpack_subset

__all__ = ["DATASETS", "ArrayDataset", "DatasetCard", "DatasetEntry", "FolderDataset", "ImageDataset",
           "default_data_root", "folder_card", "folder_dataset", "get_card", "is_user_path", "load", "unpack_subset"]
