"""STAC catalog: collections, items (MLM and others), validation and the STAC API."""
