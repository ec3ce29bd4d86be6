"""OIDC bearer tokens on the STAC API: signed by a local RSA key, keys served as a JWKS."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
import pytest
from catalog_items import model_dict
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi.testclient import TestClient

from geomlops.catalog.api import create_app
from geomlops.catalog.client import CatalogClient
from geomlops.connections import Connections
from geomlops.settings import AuthSettings, get_settings

pytestmark = pytest.mark.stack

ISSUER = "https://idp.example.test/realms/geomlops"
AUDIENCE = "geomlops-catalog"


@pytest.fixture(scope="module")
def signing_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def jwks_url(signing_key: rsa.RSAPrivateKey) -> Iterator[str]:
    """The issuer's key set, served over HTTP on loopback as an identity provider would."""
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(signing_key.public_key()))
    body = json.dumps({"keys": [{**jwk, "kid": "k1", "use": "sig", "alg": "RS256"}]}).encode()

    class JWKS(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), JWKS)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/certs"
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture(scope="module")
def api(stack: Connections, jwks_url: str) -> Iterator[TestClient]:
    auth = AuthSettings(oidc_issuer=ISSUER, oidc_audience=AUDIENCE, oidc_jwks_url=jwks_url)
    with TestClient(create_app(get_settings().model_copy(update={"auth": auth}))) as client:
        yield client


def token(key: rsa.RSAPrivateKey, **overrides: object) -> str:
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "u-123",
        "preferred_username": "carol",
        "roles": ["writer"],
        "iat": now,
        "exp": now + 300,
        **overrides,
    }
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": "k1"})


def _post(api: TestClient, item_id: str, bearer: str):
    with CatalogClient("http://testserver") as offline:
        item = offline.prepare(model_dict(item_id))
    return api.post(
        "/collections/models/items", json=item, headers={"Authorization": f"Bearer {bearer}"}
    )


def test_valid_token_with_writer_role_may_write(api: TestClient, signing_key) -> None:
    response = _post(api, "t-oidc-ok", token(signing_key))
    assert response.status_code == 201, response.text
    assert api.get("/collections/models/items/t-oidc-ok").status_code == 200


def test_token_without_role_is_403(api: TestClient, signing_key) -> None:
    response = _post(api, "t-oidc-norole", token(signing_key, roles=["approver"]))
    assert response.status_code == 403
    assert "carol" in response.json()["description"]


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        ({"exp": int(time.time()) - 10}, "expired"),
        ({"aud": "someone-else"}, "audience"),
        ({"iss": "https://evil.example.test"}, "issuer"),
    ],
)
def test_bad_tokens_are_401(api: TestClient, signing_key, claims, reason) -> None:
    response = _post(api, f"t-oidc-{reason}", token(signing_key, **claims))
    assert response.status_code == 401
    assert response.json()["code"] == "Unauthorized"
    assert api.get(f"/collections/models/items/t-oidc-{reason}").status_code == 404


def test_token_signed_by_another_key_is_401(api: TestClient) -> None:
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    response = _post(api, "t-oidc-forged", token(stranger))
    assert response.status_code == 401
