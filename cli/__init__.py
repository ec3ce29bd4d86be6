"""The `geomlops` command line: one module per verb group."""
