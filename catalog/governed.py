"""The ``models`` collection's write guard: decisions are taken by governance, not by PATCH.

Authentication (:mod:`geomlops.catalog.auth`) says *who* may write; this middleware, inside
it, says *what* they may write to ``models``, where a model version's stage, approval and
the facts promotion checks (trainer, gates, evaluation run) live:

* an administrator may do anything (recovery; the local stack's bootstrap key);
* nobody else deletes model items, replaces the collection or bulk-loads into it;
* a new item enters as registration or training writes it: with no stage, ``registered`` or
  ``candidate``, and without approval or rejection fields (``DECISION_PROPERTIES``);
* the record fields (``RECORD_PROPERTIES``: trainer, gates, metrics, runs, package) are set
  when the item is created and never changed afterwards;
* the decision fields change only under an approver's credential (the one `geomlops
  promote/reject/rollback` act with), and only to the stage the audit log records: a
  decision is appended to the log first and then applied, so a stage the log does not
  record is a stage set behind governance's back, whoever sends it.

A refused write gets 403 with a ``{code, description}`` body naming the field, and nothing
is written. The stage the log records is replayed from ``geomlops.audit_log`` the same way
:func:`geomlops.governance.state.desired_state` does (the catalog may not import governance).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping, Sequence
from typing import Any

from geomlops.audit import Action
from geomlops.catalog.guards import replayed
from geomlops.catalog.identity import Identity, Role
from geomlops.errors import ValidationFailed
from geomlops.model import properties as prop
from geomlops.model.ids import MODELS_COLLECTION, parse_model_item_id
from geomlops.model.stages import Stage

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

COLLECTION_PATH = f"/collections/{MODELS_COLLECTION}"
ITEMS_PATH = f"{COLLECTION_PATH}/items"
ENTRY_STAGES = frozenset({Stage.REGISTERED.value, Stage.CANDIDATE.value})
"""The stages an item may be created with (registration, training)."""
DECISIONS = (Action.PROMOTE.value, Action.ROLLBACK.value, Action.REJECT.value)
DECISIONS_SQL = (
    "SELECT action, version FROM geomlops.audit_log "
    "WHERE model = $1 AND action = ANY($2::text[]) ORDER BY id"
)
EXISTING_SQL = "SELECT pgstac.get_item($1::text, $2::text)"
_MISSING = object()


class Refused(Exception):
    """A write to ``models`` that governance does not allow (HTTP 403)."""


def recorded_stage(decisions: Iterable[tuple[str, str | None]], version: str) -> Stage | None:
    """The stage the audit log's decisions give ``version`` (None: no decision about it)."""
    production: str | None = None
    released: set[str] = set()
    rejected: set[str] = set()
    for action, decided in decisions:
        if decided is None:
            continue
        if action in (Action.PROMOTE, Action.ROLLBACK):
            production = decided
            released.add(decided)
        elif action == Action.REJECT:
            rejected.add(decided)
    if version == production:
        return Stage.PRODUCTION
    if version in rejected:
        return Stage.REJECTED
    if version in released:
        return Stage.DEPRECATED
    return None


def check_new(item: Mapping[str, Any]) -> None:
    """A new item may enter only as registration or training writes it."""
    props = item.get("properties") or {}
    if not isinstance(props, Mapping):
        return  # not an item at all: the API's own validation answers
    stage = props.get(prop.STAGE, _MISSING)
    if stage is not _MISSING and stage not in ENTRY_STAGES:
        raise Refused(
            f"item {item.get('id')!r}: a new model item may have {prop.STAGE} "
            f"{' or '.join(sorted(ENTRY_STAGES))}, not {stage!r}; stages change only "
            "through `geomlops promote`, `reject` or `rollback`"
        )
    decided = [name for name in prop.DECISION_PROPERTIES[1:] if name in props]
    if decided:
        raise Refused(
            f"item {item.get('id')!r}: a new model item may not carry {', '.join(decided)}; "
            "they are written by `geomlops promote` or `reject`"
        )


def changed(old: Mapping[str, Any], new: Mapping[str, Any], names: Sequence[str]) -> list[str]:
    """The properties among ``names`` whose value (or presence) differs."""
    return [n for n in names if old.get(n, _MISSING) != new.get(n, _MISSING)]


def check_change(
    identity: Identity,
    item_id: str,
    old: Mapping[str, Any],
    new: Mapping[str, Any],
) -> list[str]:
    """The decision fields a non-administrator's update changes (refused if not allowed).

    Record fields never change; decision fields only for an approver, whose new stage the
    caller then checks against the audit log (:func:`check_recorded`).
    """
    locked = changed(old, new, prop.RECORD_PROPERTIES)
    if locked:
        raise Refused(
            f"item {item_id!r}: {', '.join(locked)} {'is' if len(locked) == 1 else 'are'} "
            "recorded when the item is created and cannot be changed (promotion checks them)"
        )
    decided = changed(old, new, prop.DECISION_PROPERTIES)
    if decided and Role.APPROVER not in identity.roles:
        raise Refused(
            f"item {item_id!r}: {', '.join(decided)} may only be changed by the governance "
            f"code (an approver's `geomlops promote`, `reject` or `rollback`); "
            f"{identity.name!r} is not an approver"
        )
    return decided


def check_recorded(
    item_id: str, old_stage: object, new_stage: object, decisions: list[tuple[str, str | None]]
) -> None:
    """An approver's stage change must be one the audit log records."""
    if new_stage == old_stage:
        return
    try:
        _, version = parse_model_item_id(item_id)
    except ValidationFailed:
        raise Refused(
            f"item {item_id!r} is not a model version item (NAME-mvN): its stage is not "
            "decided by governance"
        ) from None
    recorded = recorded_stage(decisions, version)
    allowed = str(recorded) if recorded is not None else Stage.CANDIDATE.value
    if new_stage != allowed:
        raise Refused(
            f"item {item_id!r}: {prop.STAGE} {new_stage!r} is not what the audit log records "
            f"for it ({allowed!r}); decide with `geomlops promote`, `reject` or `rollback`, "
            "which record the decision before applying it"
        )


class GovernedModelsMiddleware:
    """Applies the rules above to every write under ``/collections/models``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")[len(scope.get("root_path", "")) :]
        method = scope.get("method", "")
        identity = (scope.get("state") or {}).get("identity")
        if (
            scope["type"] != "http"
            or method not in ("POST", "PUT", "PATCH", "DELETE")
            or not (path == COLLECTION_PATH or path.startswith(COLLECTION_PATH + "/"))
            or not isinstance(identity, Identity)
            or Role.ADMIN in identity.roles
        ):
            await self.app(scope, receive, send)
            return
        body, replay = await _read_body(receive)
        try:
            await self._check(scope, identity, method, path, body)
        except Refused as exc:
            await _forbid(send, str(exc))
            return
        await self.app(scope, replay, send)

    async def _check(
        self, scope: Scope, identity: Identity, method: str, path: str, body: bytes
    ) -> None:
        rest = path[len(COLLECTION_PATH) :].strip("/")
        if rest != "items" and not rest.startswith("items/"):
            raise Refused(
                f"{method} {path}: only an administrator may change the {MODELS_COLLECTION} "
                "collection itself or bulk-load items into it"
            )
        if method == "DELETE":
            raise Refused(
                f"{method} {path}: model items are kept for the audit; only an administrator "
                "may delete one (reject or roll back a version instead)"
            )
        data = _json(body)
        if rest == "items":
            if method != "POST" or not isinstance(data, dict):
                return
            features = data.get("features") if data.get("type") == "FeatureCollection" else [data]
            for item in features if isinstance(features, list) else []:
                if isinstance(item, dict):
                    check_new(item)
            return
        if method not in ("PUT", "PATCH") or data is None:
            return
        from urllib.parse import unquote

        item_id = unquote(rest[len("items/") :])
        pool = scope["app"].state.readpool
        async with pool.acquire() as conn:
            existing = await conn.fetchval(EXISTING_SQL, item_id, MODELS_COLLECTION)
        if isinstance(existing, str):
            existing = json.loads(existing)
        if not isinstance(existing, dict):
            return  # the API answers 404
        new = _updated(existing, data, method)
        if new is None:
            return  # a malformed patch: the API answers 400
        old_props = existing.get("properties") or {}
        new_props = new.get("properties") or {}
        if not isinstance(new_props, dict):
            return
        decided = check_change(identity, item_id, old_props, new_props)
        if prop.STAGE in decided:
            model = _model_of(item_id)
            async with pool.acquire() as conn:
                rows = await conn.fetch(DECISIONS_SQL, model, list(DECISIONS))
            check_recorded(
                item_id,
                old_props.get(prop.STAGE),
                new_props.get(prop.STAGE),
                [(r["action"], r["version"]) for r in rows],
            )


def _model_of(item_id: str) -> str:
    try:
        return parse_model_item_id(item_id)[0]
    except ValidationFailed:
        return ""


def _json(body: bytes) -> Any:
    try:
        return json.loads(body) if body else None
    except ValueError:
        return None  # the API answers 400 for a body it cannot read


def _updated(existing: dict[str, Any], data: Any, method: str) -> dict[str, Any] | None:
    """The item a PUT or PATCH would store, computed as stac-fastapi-pgstac computes it."""
    if method == "PUT":
        return data if isinstance(data, dict) else None
    if isinstance(data, list):  # RFC 6902 JSON Patch
        import jsonpatch

        try:
            result = jsonpatch.JsonPatch(data).apply(copy.deepcopy(existing))
        except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException, TypeError):
            return None
        return result if isinstance(result, dict) else None
    if isinstance(data, dict):  # RFC 7396 merge patch
        from json_merge_patch import merge  # type: ignore[import-untyped]

        return merge(copy.deepcopy(existing), data)
    return None


async def _read_body(receive: Receive) -> tuple[bytes, Receive]:
    """The whole request body, and a ``receive`` that hands it to the app again."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    body = b"".join(chunks)
    return body, replayed(body, receive)


async def _forbid(send: Send, description: str) -> None:
    payload = json.dumps({"code": "Forbidden", "description": description}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 403,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})
