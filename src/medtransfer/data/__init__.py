"""Datasets: cards, the ImageDataset interface, and one module per source (MedMNIST, phantoms, user folders)."""

from __future__ import annotations

from medtransfer.data.base import (
    DATASETS,
    ArrayDataset,
    DatasetCard,
    DatasetEntry,
    ImageDataset,
    default_data_root,
    get_card,
    load,
)

__all__ = ["DATASETS", "ArrayDataset", "DatasetCard", "DatasetEntry", "ImageDataset", "default_data_root",
           "get_card", "load"]
