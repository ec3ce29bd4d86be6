"""Schema URIs of the STAC extensions the platform writes, one place for each version.

The platform writes MLM v1.6.0 because that is what stac-model 0.7 emits (pystac's own MLM
support defaults to v1.4.0, which the project does not write). Items written by others may
use any version whose schema resolves; see :mod:`geomlops.catalog.validation`.
"""

from __future__ import annotations

from pystac.extensions.eo import SCHEMA_URI as EO_SCHEMA
from pystac.extensions.file import SCHEMA_URI as FILE_SCHEMA
from pystac.extensions.projection import SCHEMA_URI as PROJECTION_SCHEMA
from pystac.extensions.raster import SCHEMA_URI as RASTER_SCHEMA
from pystac.extensions.version import SCHEMA_URI as VERSION_SCHEMA
from stac_model.schema import SCHEMA_URI as MLM_SCHEMA

from geomlops.model.properties import PREFIX

# pystac has no processing extension; v1.2.0 is the newest the schema mirror carries.
PROCESSING_SCHEMA = "https://stac-extensions.github.io/processing/v1.2.0/schema.json"

# Anything no extension covers goes under this one documented prefix (DESIGN.md §4); the
# names under it are listed in geomlops.model.properties.
GEOMLOPS_PREFIX = PREFIX

__all__ = [
    "EO_SCHEMA",
    "FILE_SCHEMA",
    "GEOMLOPS_PREFIX",
    "MLM_SCHEMA",
    "PROCESSING_SCHEMA",
    "PROJECTION_SCHEMA",
    "RASTER_SCHEMA",
    "VERSION_SCHEMA",
]
