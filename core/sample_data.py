"""The sample-data registry: every real file the platform uses, with its source and checksum.

Sample data is never committed to the repository. Each file is known here by its path under
the sample-data directory (``GEOMLOPS_SAMPLE_DATA``), the public URL it was taken from
(byte-for-byte, a git blob at a fixed commit) and its sha256. :func:`fetch` finds the file,
verifies it, and downloads it with pooch only when it is missing *and* the network is
allowed (``GEOMLOPS_ALLOW_NETWORK``), so a test run never reaches the internet by accident
and a corrupted or substituted file is refused instead of silently training a model on it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from geomlops.errors import GeomlopsError, NotFoundError
from geomlops.settings import Settings, get_settings


@dataclass(frozen=True)
class SampleFile:
    """One registered file: where it lives locally, where it came from, what it must hash to."""

    key: str
    """Path relative to the sample-data directory, with forward slashes."""
    url: str
    sha256: str
    size: int
    license: str
    description: str


class ChecksumMismatch(GeomlopsError):
    """A sample file exists but its bytes are not the registered ones."""


def _github(repo: str, commit: str, path: str) -> str:
    return f"https://raw.githubusercontent.com/{repo}/{commit}/{path}"


_SEN1FLOODS11 = ("cloudtostreet/Sen1Floods11", "b9e460dabe70230111a3c3d36cd0c5ce03606ee9")
_TERRATORCH = ("IBM/terratorch", "85467a9fbbaf567e7ce4541758c09a548a7bace5")
_SEN1FLOODS11_LICENSE = "not stated (cloudtostreet/Sen1Floods11#18); cite Bonafilia et al. 2020"

# Facts from ../shared/data/imagery/SOURCES.md and vector/SOURCES.md; sha256 computed there.
REGISTRY: dict[str, SampleFile] = {
    f.key: f
    for f in (
        SampleFile(
            key="imagery/sen1floods11/Spain_7370579_S2Hand.tif",
            url=_github(*_SEN1FLOODS11, "sample/S2/Spain_7370579_S2Hand.tif"),
            sha256="16e997e6a7159fa11160faf00591da763eb37ac82faf806f7fe733991944a048",
            size=2_320_690,
            license=_SEN1FLOODS11_LICENSE,
            description="Sentinel-2 L1C chip, 13 bands B1..B12 (TOA x10000), 512x512, EPSG:4326",
        ),
        SampleFile(
            key="imagery/sen1floods11/Spain_7370579_S1Hand.tif",
            url=_github(*_SEN1FLOODS11, "sample/S1/Spain_7370579_S1Hand.tif"),
            sha256="6c24bf791372da5e93450195eac8d676a7ef917884dfb479dafe4a565543b19a",
            size=1_507_705,
            license=_SEN1FLOODS11_LICENSE,
            description="Sentinel-1 GRD chip, VV and VH backscatter in dB, 512x512, EPSG:4326",
        ),
        SampleFile(
            key="imagery/sen1floods11/Spain_7370579_LabelHand.tif",
            url=_github(*_SEN1FLOODS11, "sample/Labels/Spain_7370579_LabelHand.tif"),
            sha256="b81224e01540b262faffd82cb42762c3c77df2ba084a5fb82d49bae421dd12d4",
            size=14_901,
            license=_SEN1FLOODS11_LICENSE,
            description="Hand label of the same chip: -1 no data, 0 not water, 1 water",
        ),
        SampleFile(
            key="imagery/hls_burn_scars_mask_only/"
            "subsetted_512x512_HLS.S30.T10TGS.2018285.v1.4.mask.tif",
            url=_github(
                *_TERRATORCH,
                "examples/notebooks/subsetted_512x512_HLS.S30.T10TGS.2018285.v1.4.mask.tif",
            ),
            sha256="482878a821190f69ad299c7581bcdabf014ff7f7a7ee7fa698ab1e1721fb495c",
            size=14_271,
            license="Apache-2.0 (repository); dataset CC-BY-4.0",
            description="HLS burn-scar label mask (no image), 512x512, UTM 10N, 30 m",
        ),
        SampleFile(
            key="imagery/hls_l30_terratorch_regression/regression_test_0_input.tif",
            url=_github(*_TERRATORCH, "tests/resources/inputs/regression_test_0_input.tif"),
            sha256="9aaf3e954ceaae6749d677d038f0f3296fd9ab834f54e8417c622aaac768ed92",
            size=1_232_750,
            license="Apache-2.0",
            description="HLS L30-like 10-band float32 image, 224x224, EPSG:32614, 30 m",
        ),
        SampleFile(
            key="imagery/landsat7_rgb_rasterio/RGB.byte.tif",
            url=_github(
                "rasterio/rasterio",
                "9709d1fce53b8c11ace1741ef25cfe427b197fb8",
                "tests/data/RGB.byte.tif",
            ),
            sha256="d7cbe932c7ed74a627706a9e9df99f706df3e5abc7d45a49e9d00677a6b09eb4",
            size=1_745_956,
            license="CC0-1.0",
            description="Landsat 7 RGB uint8, 791x718, EPSG:32618",
        ),
        SampleFile(
            key="imagery/sentinel2_ftw_austria/inference-img.tif",
            url=_github(
                "fieldsoftheworld/ftw-baselines",
                "0bc7a853c6be6a999c7290de5f49c2d3810c4f09",
                "tests/data-files/inference-img.tif",
            ),
            sha256="da482e7987b36898bd9f8381e7c7fe95c05dfc5ccbba19a58eb65e544d1af750",
            size=3_507_684,
            license="MIT (repository); Copernicus Sentinel data terms",
            description="Sentinel-2 two dates x 4 bands uint16, 578x379, EPSG:32633",
        ),
        SampleFile(
            key="vector/Sen1Floods11_Metadata.geojson",
            url=_github(*_SEN1FLOODS11, "Sen1Floods11_Metadata.geojson"),
            sha256="29790ad85135d03ebc73af1e582907901e43c3aa411b6f571a8a32ac7f1db536",
            size=14_092,
            license=_SEN1FLOODS11_LICENSE,
            description="Footprints and dates of the 12 Sen1Floods11 flood events",
        ),
        SampleFile(
            key="vector/countries.geojson",
            url=_github(
                "datasets/geo-countries",
                "17390bd9d91eb3afa03b759f6cf8d3f29d8cd839",
                "data/countries.geojson",
            ),
            sha256="91c9141d1e8901dbb371a5108fa903f62804f7514be692496747c1cecea288b7",
            size=463_907,
            license="ODC-PDDL-1.0",
            description="177 country polygons (Natural Earth), EPSG:4326",
        ),
    )
}


def sample_data_root(settings: Settings | None = None) -> Path:
    """The directory sample files are looked up in (and downloaded to).

    ``GEOMLOPS_SAMPLE_DATA`` when set; else ``../shared/data`` next to the repository when
    it exists (the settings default); else ``<GEOMLOPS_HOME>/sample-data``, a cache that
    only fills when downloads are allowed.
    """
    settings = settings or get_settings()
    return settings.sample_data.sample_data or settings.stack.home / "sample-data"


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file, read in chunks so large rasters do not fill memory."""
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def lookup(key: str) -> SampleFile:
    """The registry entry for ``key``, or a NotFoundError listing the known keys."""
    try:
        return REGISTRY[key]
    except KeyError:
        known = ", ".join(sorted(REGISTRY))
        raise NotFoundError(
            f"{key!r} is not a registered sample file", hint=f"known files: {known}"
        ) from None


def verify(path: Path, entry: SampleFile) -> Path:
    """Return ``path`` if its bytes hash to the registered sha256, else raise."""
    actual = sha256_of(path)
    if actual != entry.sha256:
        raise ChecksumMismatch(
            f"sample file {path} has sha256 {actual}, expected {entry.sha256} ({entry.key})",
            hint=f"delete it and fetch it again from {entry.url}, or point "
            "GEOMLOPS_SAMPLE_DATA at an intact copy",
        )
    return path


def fetch(key: str, *, settings: Settings | None = None) -> Path:
    """Local path of the registered sample file ``key``, verified against its sha256.

    A missing file is downloaded from its public URL only when ``GEOMLOPS_ALLOW_NETWORK``
    is true; pooch writes it under a temporary name and checks the hash before moving it
    into place, so a failed or corrupted download leaves nothing behind.
    """
    return fetch_file(lookup(key), settings=settings)


def fetch_file(entry: SampleFile, *, settings: Settings | None = None) -> Path:
    """:func:`fetch` for an entry given directly (a dataset not in :data:`REGISTRY`)."""
    settings = settings or get_settings()
    root = sample_data_root(settings)
    path = root / entry.key
    if path.is_file():
        return verify(path, entry)
    if not settings.sample_data.allow_network:
        raise NotFoundError(
            f"sample file {entry.key} is not under {root}",
            hint="set GEOMLOPS_SAMPLE_DATA to a directory holding it (e.g. ../shared/data), "
            f"or set GEOMLOPS_ALLOW_NETWORK=true to download it from {entry.url}",
        )
    return _download(entry, path)


def _download(entry: SampleFile, path: Path) -> Path:
    import pooch

    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fetched = pooch.retrieve(
            entry.url,
            known_hash=f"sha256:{entry.sha256}",
            fname=path.name,
            path=path.parent,
            progressbar=False,
        )
    except ValueError as error:  # pooch's hash mismatch
        raise ChecksumMismatch(
            f"download of {entry.key} from {entry.url} does not match its sha256",
            hint="the source changed or the download was corrupted; nothing was kept",
        ) from error
    except OSError as error:  # requests' connection and HTTP errors derive from OSError
        raise GeomlopsError(
            f"could not download {entry.key} from {entry.url}: {error}",
            hint="check the network, or place the file under GEOMLOPS_SAMPLE_DATA",
        ) from error
    return Path(fetched)
