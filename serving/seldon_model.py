r"""The Seldon MODEL component: a GeoTIFF in, the class mask with its georeferencing out.

Runs under the seldon-core 1.17.1 Python wrapper in the serving environment::

    seldon-core-microservice geomlops.serving.seldon_model.SegmentationModel \
        --service-type MODEL --parameters '[{"name": "model_name", "value": "flood-water-s2",
                                            "type": "STRING"}]'

(locally through :mod:`geomlops.transformers.microservice`, which binds 127.0.0.1). It
answers ``/api/v1.0/predictions`` with the mask payload (:mod:`geomlops.transformers.
raster_to_vector.payload`) in ``jsonData`` — what the raster-to-vector output transformer
turns into GeoJSON — and ``meta.tags`` naming the model, its version and its STAC item.

The version is the ``production`` one unless ``model_version`` names one, by the platform's
one resolution rule (:func:`geomlops.model.resolve.resolve_model`, asked over MLflow's REST
API: the serving environment has no MLflow client), so a rejected version is never served,
nor a production version whose records disagree. A model with nothing promoted does not
stop the component: it starts, answers 404 with what to do, and looks again (at most every
``retry_seconds``), so promoting a version is enough to bring the service to life.

In a pipeline (:mod:`geomlops.model.pipeline`) the graph has two MODEL nodes: a
:class:`MaskModel` first, answering with the request and the pixels its rule masks
(:mod:`geomlops.serving.gate`), then this component, which reads the same image with its
own bands and makes the masked pixels no data.
Serving production, it follows production: a background thread asks the governed record
every ``GEOMLOPS_SERVING_FOLLOW_SECONDS`` which version that is, and after a promotion or a
rollback loads the new version *before* swapping it in, so requests never wait on a load
and a version that fails to load never replaces a working one (the failure is logged and
named in every answer's tags until a later check succeeds). Started with a version
(``model_version``), it serves only that one. Every answer says which version answered and
whether it was pinned (``meta.tags``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from seldon_core.flask_utils import SeldonMicroserviceException

from geomlops.errors import GeomlopsError
from geomlops.ml.raster import local_gdal
from geomlops.model.pipeline import MaskRule, MaskSpec, mask_rule
from geomlops.model.registry import RestRegistry
from geomlops.model.resolve import NoProductionVersion, ResolvedModel, resolve_model
from geomlops.serving.gate import check_grid, gated_message, split_gated
from geomlops.serving.inputs import InputPolicy, InputRejected, read_image, request_image
from geomlops.serving.predictor import Predictor
from geomlops.settings import get_settings
from geomlops.transformers.wrapper_messages import big_messages_blueprint

log = logging.getLogger(__name__)
COMPONENT_NAME = "model"

Resolver = Callable[[str, "str | None"], ResolvedModel]
"""What the model component is given: ``resolve(name, version) -> ResolvedModel``."""


def _default_resolver(name: str, version: str | None) -> ResolvedModel:
    settings = get_settings()
    registry = RestRegistry.from_settings(settings)
    return resolve_model(name, version, settings=settings, registry=registry)


class SegmentationModel:
    """Seldon model component serving one registered segmentation model."""

    def __init__(
        self,
        model_name: str = "",
        model_version: str = "",
        probabilities: bool = True,
        retry_seconds: float = 5.0,
        resolver: Resolver | None = None,
    ) -> None:
        if not model_name:
            raise GeomlopsError("parameter model_name is required (the registered model name)")
        self.model_name = model_name
        self.model_version = model_version or None
        self.probabilities = probabilities
        self.retry_seconds = retry_seconds
        self.resolver = resolver or _default_resolver
        self.settings = get_settings()
        self.policy = InputPolicy.from_settings(self.settings)
        self.predictor: Predictor | None = None
        self._problem: GeomlopsError | None = None
        self._follow_problem: str | None = None
        self._last_attempt = float("-inf")
        self._lock = threading.Lock()
        self._follower: threading.Thread | None = None
        self._stop = threading.Event()
        # The wrapper registers this blueprint: orjson, and request bodies read at once.
        self.model_error_handler = big_messages_blueprint()

    @property
    def pinned(self) -> bool:
        """Started with a version: it serves only that one and follows nothing."""
        return self.model_version is not None

    def load(self) -> None:
        """Resolve and load the model (called by the wrapper in each worker, after its fork).

        Serving production, it also starts following it (:meth:`follow_production`).
        """
        self._try_load()
        if not self.pinned and self._follower is None:
            self._follower = threading.Thread(
                target=self._follow, name="follow-production", daemon=True
            )
            self._follower.start()

    def _follow(self) -> None:
        while not self._stop.wait(self.settings.serving.follow_seconds):
            self.follow_production()

    def follow_production(self) -> str | None:
        """Serve the version the governed record now has in production; the version served.

        The new version is loaded while the old one keeps answering, then swapped in under
        the lock. When the record cannot be read or the new version cannot be loaded, the
        old one stays and the problem is logged and put in every answer's tags.
        """
        current = self.predictor
        try:
            resolved = self.resolver(self.model_name, None)
            if current is not None and resolved.version == current.resolved.version:
                self._follow_problem = None
                return current.resolved.version
            loaded = Predictor.load(resolved, self.settings, with_probabilities=self.probabilities)
        except (GeomlopsError, OSError, RuntimeError) as error:
            served = current.resolved.version if current is not None else None
            self._follow_problem = (
                f"could not follow production ({error}); still serving version {served}"
                if served
                else f"could not follow production ({error})"
            )
            log.warning("%s", self._follow_problem)
            return served
        with self._lock:
            previous, self.predictor = self.predictor, loaded
            self._problem = self._follow_problem = None
        log.info(
            "production of %s is now version %s (was %s): serving it",
            self.model_name,
            loaded.resolved.version,
            previous.resolved.version if previous is not None else "none",
        )
        return loaded.resolved.version

    def _try_load(self) -> Predictor | None:
        with self._lock:
            if self.predictor is not None:
                return self.predictor
            if time.monotonic() - self._last_attempt < self.retry_seconds:
                return None
            self._last_attempt = time.monotonic()
            try:
                resolved = self.resolver(self.model_name, self.model_version)
                self._check(resolved)
                self.predictor = Predictor.load(
                    resolved, self.settings, with_probabilities=self.probabilities
                )
                self._problem = None
                log.info("serving %s version %s", resolved.name, resolved.version)
            except GeomlopsError as error:
                self._problem = error
                log.warning("model not available: %s", error)
            return self.predictor

    def _check(self, resolved: ResolvedModel) -> None:
        """Refuse a resolved version this component cannot use (before loading it)."""

    def _predictor(self) -> Predictor:
        predictor = self._try_load()
        if predictor is not None:
            return predictor
        problem = self._problem
        if isinstance(problem, NoProductionVersion):
            raise SeldonMicroserviceException(
                str(problem), status_code=404, reason="NO_PRODUCTION_VERSION"
            )
        raise SeldonMicroserviceException(
            f"model {self.model_name} is not available: {problem}",
            status_code=503,
            reason="MODEL_UNAVAILABLE",
        )

    def predict_raw(self, request: dict[str, Any]) -> dict[str, Any]:
        """Answer one Seldon message: the mask payload in ``jsonData``, tags in ``meta``.

        A message from a pipeline's mask model carries the request and its gate: the gated
        pixels become no data.
        """
        predictor = self._predictor()
        try:
            image_request, masked = split_gated(request)
            raster = self._raster(image_request, predictor)
            if masked is not None:
                check_grid(masked, raster)
        except InputRejected as error:
            raise SeldonMicroserviceException(
                str(error), status_code=error.status, reason=error.reason
            ) from error
        meta: dict[str, Any] = request["meta"] if isinstance(request.get("meta"), dict) else {}
        tags = {**(meta.get("tags") or {}), **predictor.tags, "pinned": self.pinned}
        if self._follow_problem:
            tags["follow_problem"] = self._follow_problem
        return {"jsonData": predictor.predict(raster, masked), "meta": {**meta, "tags": tags}}

    def _raster(self, request: Any, predictor: Predictor) -> Any:
        """The request's image, read with ``predictor``'s bands (InputRejected if unusable)."""
        image = request_image(request, self.policy, self.settings)
        with local_gdal():
            return read_image(image, predictor.spec.bands, self.policy)

    def init_metadata(self) -> dict[str, Any]:
        """``/metadata``: what the component takes and gives, and which version it asks for.

        The wrapper computes this once, in the server's master process before it forks its
        workers, so it must not load the model (torch thread pools do not survive a fork);
        the version actually served is in every answer's ``meta.tags``.
        """
        return {
            "name": self.model_name,
            "versions": [self.model_version or "production"],
            "platform": "geomlops",
            "inputs": [
                # The wrapper's metadata schema allows no schema for binData: a GeoTIFF whose
                # band descriptions name the model's mlm:input bands.
                {"messagetype": "binData"},
                {
                    "messagetype": "jsonData",
                    "schema": {
                        "type": "object",
                        "properties": {"url": {"type": "string", "format": "uri"}},
                        "required": ["url"],
                    },
                },
            ],
            "outputs": [
                {
                    "messagetype": "jsonData",
                    "schema": {
                        "description": "mask payload (geomlops.transformers."
                        "raster_to_vector.payload) with transform, crs and classes"
                    },
                }
            ],
            "custom": {"alias": "" if self.model_version else "production"},
        }


class MaskModel(SegmentationModel):
    """A pipeline's mask model: answers with the request and the pixels its rule masks.

    Parameters (the graph node's): ``model_name``/``model_version`` as for the primary, and
    the pipeline spec's ``output``, ``threshold`` and ``drop`` (:class:`MaskSpec`); the rule is
    worked out from them and the resolved version's item by :func:`mask_rule`, as batch
    inference does.
    """

    def __init__(
        self,
        model_name: str = "",
        model_version: str = "",
        output: str = "",
        threshold: float | str = "",
        drop: str = "above",
        retry_seconds: float = 5.0,
        resolver: Resolver | None = None,
    ) -> None:
        super().__init__(
            model_name, model_version, False, retry_seconds=retry_seconds, resolver=resolver
        )
        self.spec = MaskSpec(
            model=model_name,
            version=model_version or None,
            output=output or None,
            threshold=float(threshold) if str(threshold) != "" else None,
            drop=drop,  # type: ignore[arg-type]
        )
        self.rule: MaskRule | None = None

    def _check(self, resolved: ResolvedModel) -> None:
        self.rule = mask_rule(self.spec, resolved.item)

    def predict_raw(self, request: dict[str, Any]) -> dict[str, Any]:
        """The request as it came, the pixels the rule masks, and this version's tags."""
        predictor = self._predictor()
        assert self.rule is not None  # noqa: S101 - set by _check before the predictor
        try:
            raster = self._raster(request, predictor)
        except InputRejected as error:
            raise SeldonMicroserviceException(
                str(error), status_code=error.status, reason=error.reason
            ) from error
        values, missing = predictor.probabilities(raster)
        masked = self.rule.masked(values) & ~missing  # no data stays no data, not "masked"
        meta: dict[str, Any] = request["meta"] if isinstance(request.get("meta"), dict) else {}
        tags = {**(meta.get("tags") or {})}
        tags.update({f"mask_{key}": value for key, value in predictor.tags.items()})
        tags["mask_rule"] = self.rule.describe()
        return {"jsonData": gated_message(request, raster, masked), "meta": {**meta, "tags": tags}}
