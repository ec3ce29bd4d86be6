"""Big Seldon messages through the seldon-core wrapper, at the cost of the hop, not of Python.

Every graph hop is a Seldon JSON message, and ours are big: a 512 x 512 x 13 chip is ~3 MB
of base64 in ``binData``; a flood map is hundreds of kilobytes of coordinates. Two parts of
the wrapper's stack (seldon-core 1.17.1 pins gunicorn 20.1 and Flask 2.2) were slow with
them, measured on the Sen1Floods11 chip:

- **reading the body**: gunicorn's ``Body.read`` pulls it 1 KB at a time, re-buffering
  the rest of each 8 KB socket chunk on every step: ~9 ms for 3 MB before the JSON is even
  parsed. :class:`WholeBody` reads a request with a ``Content-Length`` through gunicorn's
  own length reader in one call instead (the same bytes, socket chunk by socket chunk);
- **writing JSON**: Flask's provider is the standard library's ``json``: 9 ms to write one
  chip's GeoJSON. :class:`OrjsonProvider` takes under 1 ms.

The wrapper builds its Flask app itself and offers one hook into it: it registers the
component's ``model_error_handler`` blueprint, and a blueprint runs its ``record_once``
callbacks with the app when it is registered. :func:`big_messages_blueprint` installs both
there, so the components run unchanged under the plain ``seldon-core-microservice`` in a
cluster, and nothing of Flask, gunicorn or the wrapper is patched.

The JSON written differs from the standard library's in two ways that only make it
stricter: NaN and infinities become ``null`` (``NaN`` is not JSON), and keys keep their
order instead of being sorted (nothing in the Seldon protocol depends on it).
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable
from typing import Any, cast

import orjson
from flask import Blueprint, Flask, Response
from flask.blueprints import BlueprintSetupState
from flask.json.provider import DefaultJSONProvider

_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class OrjsonProvider(DefaultJSONProvider):
    """Flask's JSON provider with orjson doing the reading and writing.

    Types orjson cannot write go through Flask's own conversions (dates, UUIDs, dataclasses,
    ``__html__``), so anything the default provider accepted is still accepted.
    """

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        return self._bytes(obj).decode("utf-8")

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        return orjson.loads(s)

    def response(self, *args: Any, **kwargs: Any) -> Response:
        obj = self._prepare_response_obj(args, kwargs)
        app = cast(Flask, self._app)  # Flask's provider holds its app typed as the sans-IO base
        return app.response_class(self._bytes(obj), mimetype=self.mimetype)

    def _bytes(self, obj: Any) -> bytes:
        return orjson.dumps(obj, default=DefaultJSONProvider.default, option=_OPTIONS)


def _length_reader(stream: object) -> Any | None:
    """Gunicorn's reader of a ``Content-Length`` body behind ``stream``, if that is what it is."""
    try:
        from gunicorn.http.body import Body, LengthReader
    except ImportError:  # another WSGI server: its body reading is its own business
        return None
    if not isinstance(stream, Body) or not isinstance(stream.reader, LengthReader):
        return None
    if stream.buf.tell():  # something already read and buffered: leave the stream alone
        return None
    return stream.reader


class WholeBody:
    """WSGI middleware: a gunicorn request body read in one call, handed on as a BytesIO."""

    def __init__(self, app: WsgiApp) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        reader = _length_reader(environ.get("wsgi.input"))
        if reader is not None and reader.length > 0:
            environ["wsgi.input"] = io.BytesIO(reader.read(reader.length))
        return self.app(environ, start_response)


def _install(state: BlueprintSetupState) -> None:
    app = cast(Flask, state.app)
    app.json = OrjsonProvider(app)
    app.wsgi_app = WholeBody(app.wsgi_app)  # type: ignore[method-assign]


def big_messages_blueprint() -> Blueprint:
    """A blueprint that, once the wrapper registers it, sets its app up for big messages."""
    blueprint = Blueprint("geomlops_big_messages", __name__)
    blueprint.record_once(_install)
    return blueprint
