"""The sample-data registry: lookup, checksum verification, and downloads from a local server."""

from __future__ import annotations

import functools
import hashlib
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from geomlops.errors import GeomlopsError, NotFoundError
from geomlops.sample_data import (
    REGISTRY,
    ChecksumMismatch,
    SampleFile,
    fetch,
    fetch_file,
    sample_data_root,
    sha256_of,
)
from geomlops.settings import SampleDataSettings, Settings, StackSettings

S2_KEY = "imagery/sen1floods11/Spain_7370579_S2Hand.tif"


def _settings(root: Path | None, *, network: bool = False, home: Path | None = None) -> Settings:
    stack = StackSettings(home=home) if home else StackSettings()
    return Settings(
        stack=stack, sample_data=SampleDataSettings(sample_data=root, allow_network=network)
    )


@pytest.fixture
def shared_root() -> Path:
    root = sample_data_root()
    if not (root / S2_KEY).is_file():
        pytest.skip(f"sample data not present under {root} (set GEOMLOPS_SAMPLE_DATA)")
    return root


@pytest.fixture
def http_dir(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A real HTTP server on 127.0.0.1 serving a temporary directory."""
    served = tmp_path / "served"
    served.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield served, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def _entry(base_url: str, payload: bytes, key: str = "generated/chip.bin") -> SampleFile:
    return SampleFile(
        key=key,
        url=f"{base_url}/chip.bin",
        sha256=hashlib.sha256(payload).hexdigest(),
        size=len(payload),
        license="CC0-1.0",
        description="generated",
    )


def test_every_registered_file_is_intact_in_the_shared_data(shared_root: Path) -> None:
    for entry in REGISTRY.values():
        path = fetch(entry.key)
        assert path == shared_root / entry.key
        assert path.stat().st_size == entry.size
        assert entry.url.startswith("https://raw.githubusercontent.com/")


def test_registry_covers_the_sen1floods11_chip() -> None:
    stems = {Path(key).name for key in REGISTRY}
    for layer in ("S2Hand", "S1Hand", "LabelHand"):
        assert f"Spain_7370579_{layer}.tif" in stems


def test_unknown_key_names_the_known_files() -> None:
    with pytest.raises(NotFoundError) as caught:
        fetch("imagery/nope.tif")
    assert "imagery/nope.tif" in caught.value.message
    assert S2_KEY in (caught.value.hint or "")


def test_tampered_file_is_refused_with_both_hashes(tmp_path: Path) -> None:
    entry = REGISTRY[S2_KEY]
    copy = tmp_path / entry.key
    copy.parent.mkdir(parents=True)
    copy.write_bytes(b"not the chip")
    with pytest.raises(ChecksumMismatch) as caught:
        fetch(S2_KEY, settings=_settings(tmp_path))
    assert entry.sha256 in caught.value.message
    assert sha256_of(copy) in caught.value.message


def test_missing_file_without_network_says_how_to_get_it(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError) as caught:
        fetch(S2_KEY, settings=_settings(tmp_path, network=False))
    assert str(tmp_path) in caught.value.message
    assert "GEOMLOPS_ALLOW_NETWORK" in (caught.value.hint or "")
    assert not (tmp_path / S2_KEY).exists()


def test_missing_file_is_downloaded_verified_and_then_reused(
    tmp_path: Path, http_dir: tuple[Path, str]
) -> None:
    served, base_url = http_dir
    payload = bytes(range(256)) * 64
    (served / "chip.bin").write_bytes(payload)
    entry = _entry(base_url, payload)
    root = tmp_path / "cache"

    path = fetch_file(entry, settings=_settings(root, network=True))
    assert path == root / entry.key
    assert path.read_bytes() == payload

    (served / "chip.bin").unlink()  # a second fetch must not need the server
    assert fetch_file(entry, settings=_settings(root, network=True)) == path


def test_download_with_wrong_bytes_leaves_nothing(
    tmp_path: Path, http_dir: tuple[Path, str]
) -> None:
    served, base_url = http_dir
    (served / "chip.bin").write_bytes(b"substituted content")
    entry = _entry(base_url, b"the registered content")
    root = tmp_path / "cache"
    with pytest.raises(ChecksumMismatch, match="does not match its sha256"):
        fetch_file(entry, settings=_settings(root, network=True))
    assert not (root / entry.key).exists()
    assert list((root / "generated").iterdir()) == []


def test_download_of_a_missing_url_is_a_clear_error(
    tmp_path: Path, http_dir: tuple[Path, str]
) -> None:
    _, base_url = http_dir
    entry = _entry(base_url, b"whatever")
    with pytest.raises(GeomlopsError, match=r"could not download generated/chip\.bin"):
        fetch_file(entry, settings=_settings(tmp_path, network=True))


def test_unset_root_falls_back_to_the_state_directory(tmp_path: Path) -> None:
    settings = _settings(None, home=tmp_path / "home")
    assert sample_data_root(settings) == tmp_path / "home" / "sample-data"


def test_environment_variables_configure_lookup(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GEOMLOPS_SAMPLE_DATA", str(tmp_path))
    monkeypatch.setenv("GEOMLOPS_ALLOW_NETWORK", "true")
    settings = SampleDataSettings()
    assert settings.sample_data == tmp_path
    assert settings.allow_network is True
