"""geomlops: MLOps for geospatial machine learning."""

__version__ = "0.1.0"
