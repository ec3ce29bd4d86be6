"""Where a shard's finished tiles go: the run's folder in S3, or a local folder.

A tile is done when its record exists; the record is written after the mask, so a tile
interrupted half-way is never taken as done, and a retried or resumed shard redoes exactly
the tiles without a record.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from geomlops import objects
from geomlops.connections import Connections
from geomlops.workflows.inference.config import InferenceRunConfig, Tile, TileRecord
from geomlops.workflows.inference.storage import put_file


class S3TileSink:
    """Tiles of a run in its S3 folder (``tiles/<tile>.tif`` and ``tiles/<tile>.json``)."""

    def __init__(self, conn: Connections, config: InferenceRunConfig) -> None:
        self.conn = conn
        self.config = config

    def done(self, tile: Tile) -> bool:
        return objects.exists(self.conn, self.config.tile_record_uri(tile.id))

    def put(self, tile: Tile, mask_path: Path, record: TileRecord) -> None:
        put_file(self.conn, mask_path, self.config.tile_mask_uri(tile.id))
        objects.write_json(
            self.conn, self.config.tile_record_uri(tile.id), record.model_dump(mode="json")
        )


class LocalTileSink:
    """Tiles in a local folder (benchmarks, tests, runs without an object store)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)

    def record_path(self, tile_id: str) -> Path:
        return self.folder / f"{tile_id}.json"

    def mask_path(self, tile_id: str) -> Path:
        return self.folder / f"{tile_id}.tif"

    def done(self, tile: Tile) -> bool:
        return self.record_path(tile.id).is_file()

    def put(self, tile: Tile, mask_path: Path, record: TileRecord) -> None:
        target = self.mask_path(tile.id)
        partial = target.with_name(f".{target.name}.part")
        shutil.copyfile(mask_path, partial)
        partial.replace(target)
        record_partial = self.record_path(tile.id).with_suffix(".json.part")
        record_partial.write_text(json.dumps(record.model_dump(mode="json")))
        record_partial.replace(self.record_path(tile.id))
