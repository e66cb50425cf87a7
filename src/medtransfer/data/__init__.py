"""Datasets: cards, the ImageDataset interface, and one module per source (MedMNIST, phantoms, user folders)."""

from __future__ import annotations

import importlib

from medtransfer.data.base import DATASETS, ArrayDataset, DatasetCard, DatasetEntry, ImageDataset, default_data_root
from medtransfer.data.folder import FolderDataset, folder_card, folder_dataset
from medtransfer.data.mednist import unpack_subset
from medtransfer.data.sources import check_options, get_card, is_user_path, load

__all__ = ["DATASETS", "check_options", "ArrayDataset", "DatasetCard", "DatasetEntry", "FolderDataset", "ImageDataset",
           "default_data_root", "folder_card", "folder_dataset", "get_card", "is_user_path", "load", "unpack_subset"]

# The source modules; each registers its datasets in DATASETS when imported.
SOURCES = ("medmnist", "mednist", "phantoms", "drive", "montgomery", "siim", "chexpert", "chestxray14", "shenzhen",
           "eyepacs", "bach", "ichallenge", "stoic", "rsna", "rsna_pe", "pancreas")
for _source in SOURCES:
    importlib.import_module(f"{__name__}.{_source}")
