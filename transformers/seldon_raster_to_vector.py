r"""The Seldon OUTPUT_TRANSFORMER that turns the model component's answer into GeoJSON.

Runs under the seldon-core 1.17.1 Python wrapper, in the serving environment
(``requirements/serving.txt``), as::

    seldon-core-microservice \
        geomlops.transformers.seldon_raster_to_vector.RasterToVector \
        --service-type TRANSFORMER

(locally through :mod:`geomlops.transformers.microservice`, which binds 127.0.0.1).
The wrapper passes the model's answer to :meth:`RasterToVector.transform_output` at
``/transform-output``: its ``jsonData`` is a mask payload (:mod:`.raster_to_vector.payload`)
and the answer's ``jsonData`` is an RFC 7946 FeatureCollection, made by the post-processor
of the output's kind (:func:`geomlops.transformers.postprocess.postprocess`, the one batch
inference runs): class polygons for a class mask, polygons above the declared threshold and
zonal statistics (the foreign member ``geomlops:stats``) for a probability or continuous
value. The model's ``meta.tags``
(model name, version, STAC item) pass through unchanged, so every answer stays traceable.

Options come from the graph's ``parameters`` (strings in the SeldonDeployment), e.g.
``{"name": "min_area_m2", "value": "1000", "type": "FLOAT"}``.
"""

from __future__ import annotations

from typing import Any

from seldon_core.flask_utils import SeldonMicroserviceException

from geomlops import __version__
from geomlops.errors import ValidationFailed
from geomlops.ml.raster import local_gdal
from geomlops.transformers.postprocess import RasterPrediction, postprocess
from geomlops.transformers.raster_to_vector import VectorizeOptions, payload, unparsed_geometry
from geomlops.transformers.wrapper_messages import big_messages_blueprint

COMPONENT_NAME = "raster-to-vector"


def _skip_values(text: str) -> list[int]:
    try:
        return [int(part) for part in text.replace(";", ",").split(",") if part.strip()]
    except ValueError:
        raise ValidationFailed(
            f"parameter skip_values: {text!r} is not a comma-separated list of integers"
        ) from None


class RasterToVector:
    """Seldon output transformer: mask payload in ``jsonData`` → GeoJSON in ``jsonData``."""

    def __init__(
        self,
        min_area_m2: float = 0.0,
        simplify_tolerance_m: float = 0.0,
        skip_values: str = "",
        precision: int = 6,
        max_pixels: int = payload.DEFAULT_MAX_PIXELS,
    ) -> None:
        # Bad parameters stop the component at start, where the deployment shows it,
        # rather than failing every request.
        self.options = VectorizeOptions.parse(
            {
                "min_area_m2": min_area_m2,
                "simplify_tolerance_m": simplify_tolerance_m,
                "skip_values": _skip_values(skip_values),
                "precision": precision,
            }
        )
        if max_pixels <= 0:
            raise ValidationFailed(f"parameter max_pixels: {max_pixels} must be positive")
        self.max_pixels = max_pixels
        # The wrapper registers this blueprint: orjson, and request bodies read at once.
        self.model_error_handler = big_messages_blueprint()

    def transform_output(
        self, X: Any, features_names: Any, meta: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """The GeoJSON FeatureCollection of the prediction in ``X`` (the ``jsonData`` object)."""
        try:
            decoded = payload.decode(X, max_pixels=self.max_pixels)
            prediction = RasterPrediction(
                decoded.mask,
                decoded.transform,
                decoded.crs,
                nodata=decoded.nodata,
                confidence=decoded.probabilities,
            )
            with local_gdal():
                processed = postprocess(decoded.spec, prediction, options=self.options)
            return processed.feature_collection(geometry=unparsed_geometry)
        except ValidationFailed as error:
            raise SeldonMicroserviceException(
                str(error), status_code=400, reason="BAD_MASK_PAYLOAD"
            ) from error

    def init_metadata(self) -> dict[str, Any]:
        """What ``/metadata`` reports: the contract in and out, and the options in force."""
        return {
            "name": COMPONENT_NAME,
            "versions": [__version__],
            "platform": "geomlops",
            "inputs": [
                {"messagetype": "jsonData", "schema": payload.MaskPayload.model_json_schema()}
            ],
            "outputs": [
                {
                    "messagetype": "jsonData",
                    "schema": {
                        "description": "RFC 7946 GeoJSON FeatureCollection, one feature per "
                        "class: class_name, class_value, area_m2, mean_confidence; for a "
                        "probability or continuous output the polygons above its threshold "
                        "and zonal statistics in geomlops:stats"
                    },
                }
            ],
            "custom": {
                key: str(value) for key, value in self.options.model_dump(mode="json").items()
            }
            | {"max_pixels": str(self.max_pixels)},
        }
