"""Entry points of flood-water-s2 (called by MLproject): the platform's CLI with this model."""

from pathlib import Path

from model import build_model

from geomlops.ml.cli import package_app

if __name__ == "__main__":
    package_app(Path(__file__).resolve().parent, build_model)()
