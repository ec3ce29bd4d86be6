"""Seldon transformer components and the raster-to-vector library."""
