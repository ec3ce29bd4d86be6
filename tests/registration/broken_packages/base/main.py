"""Entry points of tiny-water: the platform's CLI with a one-layer model."""

from pathlib import Path

from model import build_model

from geomlops.ml.cli import package_app

if __name__ == "__main__":
    package_app(Path(__file__).resolve().parent, build_model)()
