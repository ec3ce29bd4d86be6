"""The JSON contract between the model component and the raster-to-vector transformer.

The model component answers with a Seldon message whose ``jsonData`` is a
:class:`MaskPayload`; the output transformer turns it into GeoJSON. One module defines
both :func:`encode` and :func:`decode`, so the two sides cannot drift apart::

    {"jsonData": {
        "mask": {"shape": [512, 512], "dtype": "uint8", "compression": "zlib",
                 "data": "<base64 of the little-endian, row-major pixels>"},
        "probabilities": null,            # or an array like "mask": H x W or C x H x W
        "transform": [a, b, c, d, e, f],  # rasterio / affine order
        "crs": "EPSG:32630",              # an EPSG code or WKT
        "nodata": 255,
        "classes": [{"value": 0, "name": "not_water"}, {"value": 1, "name": "water"}]}}

That is a class mask's payload, the kind every model had before output kinds. A probability or
continuous output (:class:`geomlops.model.kinds.OutputKind`) sends its float raster as
``values`` (float32, NaN = no data) instead of ``mask``, and its ``output``: ``{"kind":
"probability", "threshold": 0.4, "colormap": "viridis", "unit": null}``; a payload without
``output`` is a class mask, so the flood models' payloads are unchanged.

A mask travels as raw bytes in base64 (optionally zlib-compressed: class masks shrink 10 to
100 times), not as nested JSON lists, which would be ~10x larger and slow to parse.
"""

from __future__ import annotations

import base64
import binascii
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from affine import Affine
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from geomlops.errors import ValidationFailed
from geomlops.model.kinds import DEFAULT_COLORMAP, OutputKind, OutputSpec

MASK_DTYPES = ("bool", "uint8", "int8", "uint16", "int16", "uint32", "int32")
VALUE_DTYPES = ("float32", "float64")
PROBABILITY_DTYPES = ("float16", "float32", "float64", "uint8")
DEFAULT_MAX_PIXELS = 8192 * 8192


class ArrayPayload(BaseModel):
    """A NumPy array as JSON: shape, dtype and base64 bytes (C order, little-endian)."""

    model_config = ConfigDict(extra="forbid")

    shape: list[int] = Field(min_length=2, max_length=3)
    dtype: str
    data: str
    compression: Literal["zlib"] | None = None
    scale: float | None = Field(
        default=None,
        gt=0,
        description="Multiply by this to get values in 0..1 (e.g. 1/255 for uint8).",
    )


class OutputPin(BaseModel):
    """The model output's kind and post-processing options (from its ``mlm:output``)."""

    model_config = ConfigDict(extra="forbid")

    kind: OutputKind
    threshold: float | None = None
    colormap: str = DEFAULT_COLORMAP
    unit: str | None = None


class MaskPayload(BaseModel):
    """What the model component sends: a class mask (or a float raster) and how to place it."""

    model_config = ConfigDict(extra="forbid")

    mask: ArrayPayload | None = None
    values: ArrayPayload | None = None
    output: OutputPin | None = None
    probabilities: ArrayPayload | None = None
    transform: list[float] = Field(min_length=6, max_length=9)
    crs: str | int
    nodata: float | None = None
    classes: list[dict[str, Any]] | None = None


@dataclass(frozen=True)
class DecodedMask:
    """A decoded payload, in the arguments :func:`~.vectorize.vectorize` takes."""

    mask: np.ndarray
    """The class mask, or a probability or continuous output's float raster."""
    transform: Affine
    crs: str | int
    nodata: float | None
    classes: list[dict[str, Any]] | None
    probabilities: np.ndarray | None
    output: OutputSpec | None = None
    """What the output is; None for a payload without ``output`` (a class mask)."""

    @property
    def spec(self) -> OutputSpec:
        """The output's kind and options (a class mask of ``classes`` when not sent)."""
        if self.output is not None:
            return self.output
        return OutputSpec(OutputKind.CLASS_MASK, classes=tuple(self.classes or ()))


def _array_to_payload(
    array: np.ndarray, *, compress: bool, scale: float | None = None
) -> dict[str, Any]:
    contiguous = np.ascontiguousarray(array)
    raw = contiguous.astype(contiguous.dtype.newbyteorder("<"), copy=False).tobytes()
    payload: dict[str, Any] = {
        "shape": list(contiguous.shape),
        "dtype": contiguous.dtype.name,
        "compression": "zlib" if compress else None,
        "data": base64.b64encode(zlib.compress(raw, 1) if compress else raw).decode("ascii"),
    }
    if scale is not None:
        payload["scale"] = scale
    return payload


def encode(
    mask: np.ndarray,
    transform: Affine | Sequence[float],
    crs: Any,
    *,
    classes: Iterable[Mapping[str, Any]] | None = None,
    nodata: float | None = None,
    probabilities: np.ndarray | None = None,
    compress: bool = True,
    output: OutputSpec | None = None,
) -> dict[str, Any]:
    """The ``jsonData`` object for a mask (what the model component returns).

    With an ``output`` of a float kind, ``mask`` is that output's float raster (NaN = no
    data), sent as ``values``; a class mask's payload has no ``output``.
    """
    floats = output is not None and output.kind.float_raster
    allowed = VALUE_DTYPES if floats else MASK_DTYPES
    if mask.dtype.name not in allowed:
        raise ValidationFailed(f"mask: dtype {mask.dtype} cannot be sent; use one of {allowed}")
    crs_text = crs if isinstance(crs, str | int) else crs.to_string()
    payload: dict[str, Any] = {
        ("values" if floats else "mask"): _array_to_payload(mask, compress=compress),
        "transform": [float(v) for v in tuple(transform)[:6]],
        "crs": crs_text,
        "nodata": None if nodata is None else float(nodata),
        "classes": None if classes is None else [dict(c) for c in classes],
    }
    if output is not None and output.kind is not OutputKind.CLASS_MASK:
        payload["output"] = {
            "kind": output.kind.value,
            "threshold": output.threshold,
            "colormap": output.colormap,
            "unit": output.unit,
        }
    if probabilities is not None:
        # Confidence travels as uint8 steps of 1/255 (within 0.2 %, ample for the mean
        # confidence a polygon carries): a quarter of float32's bytes, and it compresses.
        quantised = np.rint(np.clip(probabilities, 0.0, 1.0) * 255.0).astype(np.uint8)
        payload["probabilities"] = _array_to_payload(quantised, compress=compress, scale=1 / 255)
    return payload


def _decode_array(
    name: str, payload: ArrayPayload, allowed: tuple[str, ...], max_pixels: int
) -> np.ndarray:
    if payload.dtype not in allowed:
        raise ValidationFailed(f"{name}.dtype: {payload.dtype!r} is not one of {list(allowed)}")
    if any(n <= 0 for n in payload.shape):
        raise ValidationFailed(f"{name}.shape: {payload.shape} has an empty dimension")
    pixels = int(np.prod(payload.shape[-2:]))
    if pixels > max_pixels:
        raise ValidationFailed(
            f"{name}.shape: {payload.shape} has {pixels} pixels, more than the "
            f"{max_pixels} this transformer accepts",
            hint="split the scene into tiles, or raise the transformer's max_pixels",
        )
    dtype = np.dtype(payload.dtype).newbyteorder("<")
    expected = int(np.prod(payload.shape)) * dtype.itemsize
    try:
        raw = base64.b64decode(payload.data, validate=True)
    except binascii.Error as error:
        raise ValidationFailed(f"{name}.data: not base64 ({error})") from None
    if payload.compression == "zlib":
        inflater = zlib.decompressobj()
        try:
            # Never inflate more than the declared shape needs (no decompression bombs).
            raw = inflater.decompress(raw, expected + 1)
        except zlib.error as error:
            raise ValidationFailed(f"{name}.data: not zlib data ({error})") from None
    if len(raw) != expected:
        raise ValidationFailed(
            f"{name}.data: {len(raw)} bytes do not hold a {payload.dtype} array of shape "
            f"{payload.shape} ({expected} bytes)"
        )
    array = np.frombuffer(raw, dtype=dtype).reshape(payload.shape)
    if payload.scale is not None:
        return array.astype(np.float32) * np.float32(payload.scale)
    return array.astype(dtype.newbyteorder("="), copy=False)


def decode(json_data: Any, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> DecodedMask:
    """Check and decode a ``jsonData`` object; every problem is named by its field."""
    if not isinstance(json_data, Mapping):
        raise ValidationFailed(
            "jsonData: expected an object with mask, transform and crs",
            hint="the raster-to-vector transformer takes the model component's mask payload",
        )
    try:
        payload = MaskPayload.model_validate(dict(json_data))
    except ValidationError as error:
        raise ValidationFailed(
            "jsonData is not a mask payload",
            problems=[f"{'.'.join(str(p) for p in d['loc'])}: {d['msg']}" for d in error.errors()],
        ) from None
    kind = payload.output.kind if payload.output is not None else OutputKind.CLASS_MASK
    if kind is OutputKind.CHIP_CLASS:
        raise ValidationFailed("output.kind: chip-class answers have no raster to send here")
    field_name, sent, allowed = (
        ("values", payload.values, VALUE_DTYPES)
        if kind.float_raster
        else ("mask", payload.mask, MASK_DTYPES)
    )
    other = payload.mask if kind.float_raster else payload.values
    if sent is None or other is not None:
        raise ValidationFailed(
            f"{field_name}: a {kind.value} payload sends its raster as {field_name!r} "
            f"(and only there)",
            hint="a class mask is `mask`; a probability or continuous output is `values` "
            "with `output.kind`",
        )
    mask = _decode_array(field_name, sent, allowed, max_pixels)
    if mask.ndim != 2 and kind.float_raster:
        raise ValidationFailed(f"values.shape: {sent.shape} is not H x W")
    probabilities = None
    if payload.probabilities is not None:
        probabilities = _decode_array(
            "probabilities", payload.probabilities, PROBABILITY_DTYPES, max_pixels
        )
        if probabilities.dtype == np.uint8:
            raise ValidationFailed("probabilities: uint8 values need a scale (e.g. 1/255)")
    return DecodedMask(
        mask=mask,
        transform=Affine(*payload.transform[:6]),
        crs=payload.crs,
        nodata=payload.nodata,
        classes=payload.classes,
        probabilities=probabilities,
        output=None
        if payload.output is None
        else OutputSpec(
            kind,
            classes=tuple(payload.classes or ()),
            threshold=payload.output.threshold,
            colormap=payload.output.colormap,
            unit=payload.output.unit,
        ),
    )
