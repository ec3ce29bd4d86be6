"""Versioned training datasets: git + DVC, the `dvc` bucket, and an item in `datasets`.

A dataset version is a git tag ``NAME@vN`` in the dataset repository whose ``NAME.dvc``
file records the DVC checksum of the data; the bytes live in the S3 remote. Training reads
a dataset only as ``NAME@vN`` (:func:`materialise`), never from a loose path, and refuses
bytes whose checksum no longer matches what the version recorded.
"""

from geomlops.datasets.materialise import materialise
from geomlops.datasets.refs import DatasetRef
from geomlops.datasets.registry import DatasetRegistry, DatasetVersion

__all__ = ["DatasetRef", "DatasetRegistry", "DatasetVersion", "materialise"]
