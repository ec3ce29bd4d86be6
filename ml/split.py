"""The spatial train / held-out split and the patch grid.

Neighbouring pixels are strongly correlated, so a random split of patches would evaluate
on pixels the model has all but seen. The held-out block is a band of columns at the right
edge of the scene, separated from the training block by a buffer of unused columns wider
than a patch's overlap, so no training patch touches it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from geomlops.errors import ValidationFailed
from geomlops.ml.spec import HoldoutSpec


@dataclass(frozen=True)
class ColumnBlock:
    """Columns ``[start, stop)`` spanning the full height of the scene."""

    start: int
    stop: int

    @property
    def width(self) -> int:
        """Number of columns."""
        return self.stop - self.start


@dataclass(frozen=True)
class SpatialSplit:
    """Training block on the left, held-out block on the right, a buffer between."""

    train: ColumnBlock
    holdout: ColumnBlock


def spatial_split(width: int, holdout: HoldoutSpec, patch_size: int) -> SpatialSplit:
    """Split ``width`` columns; both blocks must hold at least one full patch."""
    held = math.ceil(width * holdout.fraction)
    train_stop = width - held - holdout.buffer
    if train_stop < patch_size or held < patch_size:
        raise ValidationFailed(
            f"a scene {width} pixels wide cannot hold a training block and a held-out block "
            f"of at least one {patch_size}-pixel patch each (holdout {holdout.fraction}, "
            f"buffer {holdout.buffer})",
            hint="use a wider scene or a smaller patch_size in package.yaml",
        )
    return SpatialSplit(train=ColumnBlock(0, train_stop), holdout=ColumnBlock(width - held, width))


def window_starts(length: int, size: int, stride: int) -> list[int]:
    """Offsets of windows of ``size`` every ``stride`` covering ``[0, length)`` fully.

    The last window is aligned to the end, so the edge is covered without padding; a
    ``length`` shorter than ``size`` gives one window at 0 (the caller pads).
    """
    if length <= size:
        return [0]
    starts = list(range(0, length - size + 1, stride))
    if starts[-1] != length - size:
        starts.append(length - size)
    return starts


def patch_grid(height: int, block: ColumnBlock, size: int, stride: int) -> list[tuple[int, int]]:
    """Top-left (row, col) of every patch inside ``block`` (columns) of a scene."""
    rows = window_starts(height, size, stride)
    cols = [block.start + c for c in window_starts(block.width, size, stride)]
    return [(r, c) for r in rows for c in cols]
