"""The STAC API of the running stack: search, queryables, authenticated writes, the client."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from catalog_items import S1_BANDS, model_dict
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from geomlops.catalog.api import create_app
from geomlops.catalog.client import CatalogClient
from geomlops.catalog.db import pgstac_connection
from geomlops.catalog.keys import create_key, revoke_key
from geomlops.catalog.mlm import INPUT_BANDS
from geomlops.cli.main import app as cli
from geomlops.connections import Connections
from geomlops.errors import AuthError, NotFoundError, ValidationFailed
from geomlops.settings import AuthSettings, get_settings

pytestmark = pytest.mark.stack

# A patch of the South Pacific in the 1980s: no other test writes models there.
REGION = [-151.0, -21.0, -138.0, -8.0]
SEARCH_ITEMS = {
    "t-seg-s2-1985": dict(bbox=(-150, -20, -149, -19), start_year=1985),
    "t-cls-s1-1986": dict(
        bbox=(-149.5, -19.5, -148.5, -18.5), start_year=1986, tasks=("classification",)
    ),
    "t-seg-tf-far": dict(bbox=(-140, -10, -139, -9), start_year=1985, framework="tensorflow"),
    "t-both-1990": dict(
        bbox=(-150, -20, -149, -19),
        start_year=1990,
        tasks=("semantic-segmentation", "classification"),
    ),
}


def _search_item(item_id: str) -> dict:
    from datetime import UTC, datetime

    spec = dict(SEARCH_ITEMS[item_id])
    year = spec.pop("start_year")
    bands = S1_BANDS if "s1" in item_id else None
    return model_dict(
        item_id,
        start=datetime(year, 1, 1, tzinfo=UTC),
        end=datetime(year, 6, 30, tzinfo=UTC),
        bands=bands,
        **spec,
    )


@pytest.fixture(scope="module")
def admin(stack: Connections) -> Iterator[CatalogClient]:
    with CatalogClient.from_settings() as client:
        yield client


@pytest.fixture(scope="module")
def anonymous(stack: Connections) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.stac_url, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def search_items(admin: CatalogClient) -> list[str]:
    for item_id in SEARCH_ITEMS:
        admin.upsert_item(_search_item(item_id))
    return list(SEARCH_ITEMS)


def _ids(client: CatalogClient, **criteria) -> set[str]:
    return {f["id"] for f in client.iter_search(collections=["models"], **criteria)}


def test_collections_exist_with_their_extensions(anonymous: httpx.Client) -> None:
    collections = {c["id"]: c for c in anonymous.get("/collections").json()["collections"]}
    assert {"models", "datasets", "imagery", "predictions"} <= set(collections)
    assert any("/mlm/" in u for u in collections["models"]["stac_extensions"])


def test_queryables_list_the_mlm_fields(anonymous: httpx.Client) -> None:
    for path in ("/queryables", "/collections/models/queryables"):
        props = anonymous.get(path).json()["properties"]
        for name in ("mlm:tasks", "mlm:framework", "mlm:accelerator", "mlm:architecture"):
            assert name in props, (path, sorted(props))
        assert props["mlm:tasks"]["type"] == "array"
        assert props[INPUT_BANDS]["type"] == "array"


def test_search_by_bbox_datetime_and_mlm_filters(admin: CatalogClient, search_items) -> None:
    near = [-150.5, -20.5, -148.0, -18.0]
    assert _ids(admin, bbox=near) == {"t-seg-s2-1985", "t-cls-s1-1986", "t-both-1990"}
    assert _ids(admin, bbox=near, datetime="1985-01-01T00:00:00Z/1985-12-31T23:59:59Z") == {
        "t-seg-s2-1985"
    }
    seg = {"op": "a_contains", "args": [{"property": "mlm:tasks"}, ["semantic-segmentation"]]}
    torch = {"op": "=", "args": [{"property": "mlm:framework"}, "pytorch"]}
    assert _ids(admin, bbox=REGION, filter=seg) == {"t-seg-s2-1985", "t-seg-tf-far", "t-both-1990"}
    assert _ids(admin, bbox=REGION, filter=torch) == {
        "t-seg-s2-1985",
        "t-cls-s1-1986",
        "t-both-1990",
    }
    both = {"op": "and", "args": [seg, torch]}
    assert _ids(admin, bbox=REGION, filter=both) == {"t-seg-s2-1985", "t-both-1990"}
    vv = {"op": "a_contains", "args": [{"property": INPUT_BANDS}, ["VV"]]}
    assert _ids(admin, bbox=REGION, filter=vv) == {"t-cls-s1-1986"}
    ring = [[-140.5, -10.5], [-138.5, -10.5], [-138.5, -8.5], [-140.5, -8.5], [-140.5, -10.5]]
    far = {"type": "Polygon", "coordinates": [ring]}
    assert _ids(admin, intersects=far) == {"t-seg-tf-far"}


def test_search_follows_pages(admin: CatalogClient, search_items) -> None:
    one_per_page = list(admin.iter_search(collections=["models"], bbox=REGION, limit=1))
    assert sorted(f["id"] for f in one_per_page) == sorted(SEARCH_ITEMS)


def test_cli_search_json(search_items) -> None:
    result = CliRunner().invoke(
        cli,
        [
            "catalog", "search", "--collection", "models", "--bbox", ",".join(map(str, REGION)),
            "--task", "classification", "--framework", "pytorch", "--json",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    ids = {f["id"] for f in json.loads(result.stdout)["features"]}
    assert ids == {"t-cls-s1-1986", "t-both-1990"}


# The South Atlantic in 1975: items spelled as registered packages spell them (MLM's enum).
CASE_REGION = "-31,-41,-28,-38"


@pytest.fixture(scope="module")
def cased_items(admin: CatalogClient) -> set[str]:
    from datetime import UTC, datetime

    when = {"start": datetime(1975, 1, 1, tzinfo=UTC), "end": datetime(1975, 6, 30, tzinfo=UTC)}
    admin.upsert_item(
        model_dict("t-case-torch", framework="PyTorch", bbox=(-30, -40, -29, -39), **when)
    )
    admin.upsert_item(
        model_dict("t-case-tf", framework="TensorFlow", bbox=(-30, -40, -29, -39), **when)
    )
    return {"t-case-torch", "t-case-tf"}


@pytest.mark.parametrize(
    ("option", "value", "expected"),
    [
        ("--framework", "pytorch", {"t-case-torch"}),  # the CLI's own example
        ("--framework", "PYTORCH", {"t-case-torch"}),
        ("--framework", "PyTorch", {"t-case-torch"}),
        ("--framework", "tensorflow", {"t-case-tf"}),
        ("--framework", "pytorc", set()),  # equality, not a prefix
        ("--task", "Semantic-Segmentation", {"t-case-torch", "t-case-tf"}),
        ("--accelerator", "CUDA", {"t-case-torch", "t-case-tf"}),
    ],
)
def test_cli_search_ignores_case(cased_items, option: str, value: str, expected: set[str]) -> None:
    result = CliRunner().invoke(
        cli,
        ["catalog", "search", "-c", "models", "--bbox", CASE_REGION, option, value, "--json"],
    )
    assert result.exit_code == 0, result.output
    assert {f["id"] for f in json.loads(result.stdout)["features"]} == expected


def test_write_without_credential_is_401_and_changes_nothing(
    admin: CatalogClient, anonymous: httpx.Client
) -> None:
    item = admin.prepare(model_dict("t-anon"))
    response = anonymous.post("/collections/models/items", json=item)
    assert response.status_code == 401
    body = response.json()
    assert body["code"] == "Unauthorized" and "X-API-Key" in body["description"]
    assert anonymous.get("/collections/models/items/t-anon").status_code == 404

    admin.upsert_item(item)
    changed = dict(item, properties={**item["properties"], "mlm:name": "hijacked"})
    assert anonymous.put("/collections/models/items/t-anon", json=changed).status_code == 401
    assert anonymous.delete("/collections/models/items/t-anon").status_code == 401
    assert anonymous.post("/collections", json={"id": "x"}).status_code == 401
    assert admin.get_item("models", "t-anon").properties["mlm:name"] == "t-anon model"
    # A search is a read, even as a POST.
    assert anonymous.post("/search", json={"collections": ["models"], "limit": 1}).is_success


def test_wrong_role_is_403_and_revoked_key_stops_working(stack: Connections) -> None:
    with pgstac_connection() as conn:
        approver_key, _ = create_key(conn, "t-approver", ["approver"])
        writer_key, _ = create_key(conn, "t-writer", ["writer"])
    with (
        CatalogClient(stack.stac_url, approver_key) as approver,
        pytest.raises(AuthError, match="not allowed"),
    ):
        approver.upsert_item(model_dict("t-by-approver"))
    with CatalogClient(stack.stac_url, writer_key) as writer:
        assert writer.upsert_item(model_dict("t-by-writer")) == "created"
        with pgstac_connection() as conn:
            revoke_key(conn, "t-writer")
            logged = conn.execute(
                "SELECT status FROM geomlops.write_log WHERE identity = 't-writer' "
                "AND path LIKE '/collections/models/items%'"
            ).fetchall()
        assert (201,) in logged
        with pytest.raises(AuthError, match="not authenticated"):
            writer.delete_item("models", "t-by-writer")
    with CatalogClient(stack.stac_url) as reader:
        assert reader.get_item("models", "t-by-writer").id == "t-by-writer"


def test_approvers_may_only_update_existing_model_items(
    stack: Connections, admin: CatalogClient
) -> None:
    """Approvers record decisions on model items; they create and delete nothing.

    A stage is theirs to change only as the audit log records a decision (see
    tests/governance/test_security.py); other fields of an existing item they may update.
    """
    with pgstac_connection() as conn:
        approver_key, _ = create_key(conn, "t-approver-2", ["approver"])
    admin.upsert_item(model_dict("t-decided"))
    with CatalogClient(stack.stac_url, approver_key) as approver:
        item = approver.get_item_dict("models", "t-decided")
        item["properties"]["mlm:architecture"] = "UNet (reviewed)"
        assert approver.upsert_item(item) == "updated"
        item["properties"]["geomlops:stage"] = "production"
        with pytest.raises(AuthError, match=r"not allowed.*not a model version item"):
            approver.upsert_item(item)
        with pytest.raises(AuthError, match="not allowed"):
            approver.delete_item("models", "t-decided")
        with pytest.raises(AuthError, match="not allowed"):
            approver.upsert_item(model_dict("t-new-by-approver"))
    stored = admin.get_item("models", "t-decided").properties
    assert stored["mlm:architecture"] == "UNet (reviewed)"
    assert stored.get("geomlops:stage") != "production"


def test_upsert_is_idempotent_and_deprecate_delete_work(admin: CatalogClient) -> None:
    item = model_dict("t-upsert")
    assert admin.upsert_item(item) == "created"
    assert admin.upsert_item(item) == "unchanged"
    assert admin.upsert_item(model_dict("t-upsert")) == "unchanged"
    item["properties"]["mlm:architecture"] = "UNet++"
    assert admin.upsert_item(item) == "updated"
    assert admin.deprecate("models", "t-upsert", latest="t-upsert-2") == "updated"
    stored = admin.get_item("models", "t-upsert")
    assert stored.properties["deprecated"] is True
    assert any(link.rel == "latest-version" for link in stored.links)
    assert admin.deprecate("models", "t-upsert", latest="t-upsert-2") == "unchanged"
    admin.delete_item("models", "t-upsert")
    with pytest.raises(NotFoundError):
        admin.get_item("models", "t-upsert")


def test_invalid_item_is_rejected_with_field_messages_and_not_written(
    admin: CatalogClient,
) -> None:
    item = model_dict("t-invalid")
    del item["properties"]["mlm:input"]
    item["properties"]["mlm:framework"] = ["pytorch"]
    with pytest.raises(ValidationFailed) as caught:
        admin.upsert_item(item)
    text = "\n".join(caught.value.problems)
    assert "t-invalid: $.properties: 'mlm:input' is a required property" in text
    assert "t-invalid: $.properties['mlm:framework']" in text
    with pytest.raises(NotFoundError):
        admin.get_item("models", "t-invalid")


def test_cli_add_then_re_add_is_unchanged(tmp_path: Path, stack: Connections) -> None:
    path = tmp_path / "item.json"
    item = model_dict("t-cli-add")
    del item["collection"]
    path.write_text(json.dumps(item))
    runner = CliRunner()
    first = runner.invoke(cli, ["catalog", "add", str(path), "--collection", "models"])
    assert first.exit_code == 0, first.output
    assert "created\tmodels/t-cli-add" in first.stdout
    again = runner.invoke(cli, ["catalog", "add", str(path), "--collection", "models"])
    assert "unchanged\tmodels/t-cli-add" in again.stdout


def test_cli_keys_create_list_revoke(stack: Connections) -> None:
    runner = CliRunner()
    created = runner.invoke(cli, ["keys", "create", "t-cli-bob", "--role", "writer", "--json"])
    assert created.exit_code == 0, created.output
    key = json.loads(created.stdout)["key"]
    listed = json.loads(runner.invoke(cli, ["keys", "list", "--json"]).stdout)
    assert {"name": "t-cli-bob", "roles": ["writer"]}.items() <= next(
        k for k in listed if k["name"] == "t-cli-bob"
    ).items()
    assert key not in created.stderr and key not in json.dumps(listed)  # shown once only
    assert next(k for k in listed if k["name"] == "t-cli-bob")["hint"] == key[:8] + "…"
    assert runner.invoke(cli, ["keys", "create", "t-cli-bob"]).exit_code == 1
    assert runner.invoke(cli, ["keys", "revoke", "t-cli-bob"]).exit_code == 0
    assert runner.invoke(cli, ["keys", "revoke", "t-cli-bob"]).exit_code == 1
    with CatalogClient(stack.stac_url, key) as revoked, pytest.raises(AuthError):
        revoked.upsert_item(model_dict("t-cli-bob-item"))


def test_reads_can_be_closed(stack: Connections, admin: CatalogClient) -> None:
    settings = get_settings().model_copy(update={"auth": AuthSettings(public_reads=False)})
    with TestClient(create_app(settings)) as api:
        assert api.get("/collections").status_code == 401
        assert api.post("/search", json={}).status_code == 401
        assert api.get("/_mgmt/ping").status_code == 200
        assert api.get("/collections", headers={"X-API-Key": admin.api_key or ""}).is_success


def test_range_items_keep_null_datetime_and_3d_bbox_searches_work(
    anonymous: httpx.Client, search_items
) -> None:
    """Two repairs over PgSTAC found with stac-api-validator (see catalog/api.py)."""
    item = anonymous.get("/collections/models/items/t-seg-s2-1985").json()
    assert "datetime" in item["properties"] and item["properties"]["datetime"] is None
    bbox_3d = "-150.5,-20.5,0,-148,-18,100"
    response = anonymous.get("/search", params={"bbox": bbox_3d, "collections": "models"})
    assert response.status_code == 200, response.text
    assert {f["id"] for f in response.json()["features"]} == {
        "t-seg-s2-1985",
        "t-cls-s1-1986",
        "t-both-1990",
    }
