"""``geomlops package register``: a validated package becomes a registered model and item.

The MLflow registered model is named like the package; the item, in ``models``, has stage
``registered`` (no weights yet) and records the commit and image.

Identity and content. A package is identified by name and version (item id
:func:`package_item_id`); its content is the digest of its files
(:func:`geomlops.registration.source.package_digest`). Registering the same content again
changes nothing and keeps the provenance recorded the first time (commit, image), so a later
commit that did not touch the package does not count as a change. Different content under a
registered name and version is refused with :class:`ConflictError` before anything is
written: a version, once registered, always means the same code. One upgrade is allowed: an
image recorded as a tag is replaced by the same content's pushed image *digest* (a local
registration followed by CI's).

Order of writes, and why nothing is left half-registered. The catalog item is the commit
point: the MLflow registered model is created (or its tags set) first, the item written
last. If the item cannot be written, the MLflow change is undone (the model deleted if this
call created it, its previous tags restored otherwise) before the error is raised. Should
the process die between the two writes, the MLflow model exists without an item; nothing
reads a package without its item (training resolves packages from the catalog), and the next
``register`` converges: it finds the model, sets its tags and writes the item.
"""

from __future__ import annotations

import copy
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from geomlops.catalog.client import CatalogClient, configured_api_key
from geomlops.catalog.collections import MODELS
from geomlops.catalog.extensions import VERSION_SCHEMA
from geomlops.connections import get_connections
from geomlops.errors import ConflictError, GeomlopsError, NotFoundError
from geomlops.model import properties as prop
from geomlops.model.ids import package_item_id
from geomlops.model.stages import STAGE_PROPERTY, Stage
from geomlops.registration.source import SourceInfo, package_digest, source_info
from geomlops.registration.validate import ValidationResult, validate_or_raise
from geomlops.settings import Settings, get_settings

log = logging.getLogger(__name__)

Action = Literal["created", "updated", "unchanged"]

STAGE = STAGE_PROPERTY
REGISTERED = Stage.REGISTERED.value
SHA_PATTERN = re.compile(r"^[0-9a-f]{7,64}$")


def default_image(settings: Settings, name: str, commit: str) -> str:
    """The image reference CI pushes for a package at a commit (a tag, not yet a digest)."""
    return f"{settings.registration.image_repository.rstrip('/')}/{name}:{commit}"


def has_digest(image: str) -> bool:
    """Whether an image reference pins content (``…@sha256:…``) rather than naming a tag."""
    return "@sha256:" in image


@dataclass(frozen=True)
class Provenance:
    """Where a registration came from; kept as first recorded while the content is the same."""

    commit: str
    dirty: bool
    image: str
    source_href: str
    git_url: str
    """The repository training clones the package from (:mod:`geomlops.package_source`)."""
    package_path: str
    """The package's folder in that repository."""


@dataclass
class RegistrationResult:
    """What ``register`` did, for people (``summary``) and programs (``as_dict``)."""

    name: str
    version: str
    item_id: str
    digest: str
    provenance: Provenance
    mlflow: Action
    item: Action
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready record (``--json``)."""
        return {
            "name": self.name,
            "version": self.version,
            "item_id": self.item_id,
            "collection": MODELS,
            "registered_model": self.name,
            "digest": self.digest,
            "git_commit": self.provenance.commit,
            "git_dirty": self.provenance.dirty,
            "git_url": self.provenance.git_url,
            "package_path": self.provenance.package_path,
            "image": self.provenance.image,
            "mlflow": self.mlflow,
            "item": self.item,
            "notes": self.notes,
        }

    def summary(self) -> list[str]:
        """One line per thing registered (notes are in ``notes``)."""
        return [
            f"MLflow registered model {self.name}: {self.mlflow}",
            f"STAC item {MODELS}/{self.item_id}: {self.item} "
            f"(commit {self.provenance.commit[:12]}, image {self.provenance.image})",
        ]


def registered_item(
    validated: ValidationResult, digest: str, provenance: Provenance
) -> dict[str, Any]:
    """The package's catalog item: its ``mlm.json`` plus identity, stage and provenance.

    No weights exist yet: the ``mlm:model`` asset (which MLM requires) points at the MLflow
    registered model's ``production`` alias, where trained versions will be once promoted.
    """
    assert validated.spec is not None and validated.mlm is not None  # noqa: S101 - validated
    spec = validated.spec
    item = copy.deepcopy(validated.mlm)
    item["id"] = package_item_id(spec.name, spec.version)
    item["collection"] = MODELS
    extensions = item.setdefault("stac_extensions", [])
    if VERSION_SCHEMA not in extensions:
        extensions.append(VERSION_SCHEMA)
    props = item["properties"]
    props.update(
        {
            STAGE: REGISTERED,
            prop.PACKAGE: spec.name,
            prop.PACKAGE_VERSION: spec.version,
            prop.PACKAGE_DIGEST: digest,
            prop.GIT_COMMIT: provenance.commit,
            prop.GIT_URL: provenance.git_url,
            prop.PACKAGE_PATH: provenance.package_path,
            prop.IMAGE: provenance.image,
            prop.MLFLOW_MODEL: spec.name,
        }
    )
    if provenance.dirty:
        props[prop.GIT_DIRTY] = True
    for asset in item.get("assets", {}).values():
        roles = asset.get("roles", [])
        if "mlm:model" in roles:
            asset["href"] = f"models:/{spec.name}@production"
            asset["title"] = (
                f"No weights yet: trained versions of MLflow registered model {spec.name}; "
                "this resolves once one is promoted to production"
            )
        if "mlm:source_code" in roles:
            asset["href"] = provenance.source_href
    item["links"] = [
        link for link in item.get("links", []) if link.get("rel") not in ("self", "collection")
    ]
    return item


def registration_tags(item: dict[str, Any]) -> dict[str, str]:
    """The MLflow registered model's tags for package item ``item`` (`reconcile --repair` too)."""
    props = item["properties"]
    tags = {
        "geomlops.package": props[prop.PACKAGE],
        "geomlops.package_version": props[prop.PACKAGE_VERSION],
        "geomlops.package_item": item["id"],
        "geomlops.package_digest": props[prop.PACKAGE_DIGEST],
        "geomlops.git_commit": props[prop.GIT_COMMIT],
        "geomlops.git_url": props[prop.GIT_URL],
        "geomlops.image": props[prop.IMAGE],
    }
    if props.get(prop.GIT_DIRTY):
        tags["geomlops.git_dirty"] = "true"
    return tags


def _version_key(text: str) -> tuple[int, ...]:
    return tuple(int(p) if p.isdigit() else -1 for p in str(text).split("."))


def _service_urls(settings: Settings) -> tuple[str, str]:
    """STAC API and MLflow URLs: registration needs no other service."""
    conn = get_connections(settings)
    return conn.stac_url, conn.mlflow_tracking_uri


class _RegisteredModel:
    """Create or tag the MLflow registered model, remembering how to undo it."""

    def __init__(self, client: Any, name: str) -> None:
        self.client = client
        self.name = name
        self._undo: Callable[[], None] | None = None

    def apply(self, tags: dict[str, str], description: str) -> tuple[Action, str | None]:
        from mlflow.exceptions import MlflowException

        try:
            model = self.client.get_registered_model(self.name)
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise _mlflow_error(self.name, exc) from exc
            try:
                self.client.create_registered_model(self.name, tags=tags, description=description)
            except MlflowException as exc2:
                raise _mlflow_error(self.name, exc2) from exc2
            self._undo = lambda: self.client.delete_registered_model(self.name)
            return "created", None
        current = dict(model.tags or {})
        newest = current.get("geomlops.package_version")
        if newest and _version_key(newest) > _version_key(tags["geomlops.package_version"]):
            return "unchanged", f"MLflow tags describe the newer version {newest}; left as they are"
        changed = {k: v for k, v in tags.items() if current.get(k) != v}
        stale = [k for k in current if k.startswith("geomlops.") and k not in tags]
        if not changed and not stale:
            return "unchanged", None
        for key, value in changed.items():
            self.client.set_registered_model_tag(self.name, key, value)
        for key in stale:
            self.client.delete_registered_model_tag(self.name, key)

        def restore() -> None:
            for key in changed:
                if key in current:
                    self.client.set_registered_model_tag(self.name, key, current[key])
                else:
                    self.client.delete_registered_model_tag(self.name, key)
            for key in stale:
                self.client.set_registered_model_tag(self.name, key, current[key])

        self._undo = restore
        return "updated", None

    def undo(self) -> str | None:
        """Revert what :meth:`apply` changed; None when done, else why it could not be.

        Best effort: the error that made the registration fail is what the caller reports,
        with this one's reason beside it (no traceback: a dead service is not a bug).
        """
        if self._undo is None:
            return None
        try:
            self._undo()
        except Exception as exc:
            text = str(exc).strip()
            reason = text.splitlines()[0][:300] if text else exc.__class__.__name__
            log.warning("could not roll back the MLflow registered model %s: %s", self.name, reason)
            return reason
        log.warning("rolled back the MLflow registered model %s", self.name)
        return None


def _mlflow_error(name: str, exc: Exception) -> GeomlopsError:
    return GeomlopsError(
        f"MLflow refused the registered model {name}: {exc}",
        hint="check GEOMLOPS_MLFLOW_TRACKING_URI (or run `geomlops up`)",
    )


def register_package(
    path: Path | str,
    *,
    image: str | None = None,
    git_sha: str | None = None,
    git_url: str | None = None,
    settings: Settings | None = None,
    catalog: CatalogClient | None = None,
    mlflow_client: Any = None,
) -> RegistrationResult:
    """Validate, then register the package idempotently (see the module docstring).

    The source recorded is the package's repository (its remote ``origin``, or ``git_url``),
    the commit (``git_sha`` or HEAD) and the package's folder in it: training clones that
    outside the package's image. A repository without a remote is refused.
    """
    settings = settings or get_settings()
    if git_sha is not None and not SHA_PATTERN.match(git_sha):
        raise GeomlopsError(
            f"--git-sha {git_sha!r} is not a git commit hash",
            hint="give the full 40-character hash, e.g. from `git rev-parse HEAD`",
        )
    validated = validate_or_raise(path, settings)
    assert validated.spec is not None  # noqa: S101 - validation guarantees it
    package = validated.path
    name, version = validated.spec.name, validated.spec.version
    source: SourceInfo = source_info(package, git_sha, git_url)
    digest = package_digest(package, validated.repo_root)
    notes: list[str] = []
    if source.dirty:
        notes.append(
            f"the package has uncommitted changes; recorded as commit {source.commit[:12]} "
            "plus local edits (geomlops:git_dirty)"
        )
    image_given = image is not None
    if image is None:
        image = default_image(settings, name, source.commit)
    provenance = Provenance(
        source.commit, source.dirty, image, source.source_href(), source.git_url, source.path
    )
    item_id = package_item_id(name, version)

    own_catalog = catalog is None
    if catalog is None or mlflow_client is None:
        stac_url, tracking_uri = _service_urls(settings)
        if catalog is None:
            catalog = CatalogClient(stac_url, configured_api_key(settings))
        if mlflow_client is None:
            from mlflow.tracking import MlflowClient

            mlflow_client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    try:
        provenance = _settled_provenance(catalog, item_id, digest, provenance, notes)
        if not image_given and provenance.image == image:
            notes.append(f"no --image given: recorded {image}, the tag CI pushes (not built here)")
        item = registered_item(validated, digest, provenance)
        catalog.prepare(item, MODELS)  # an invalid item fails here, before any write
        model = _RegisteredModel(mlflow_client, name)
        description = str(item["properties"].get("description") or item["properties"]["title"])
        mlflow_action, note = model.apply(registration_tags(item), description)
        if note:
            notes.append(note)
        try:
            item_action = catalog.upsert_item(item, MODELS)
        except BaseException as exc:
            left = model.undo()
            if left is None or not isinstance(exc, GeomlopsError):
                raise
            raise type(exc)(
                f"{exc.message}; the MLflow registered model {name} it had {mlflow_action} "
                f"could not be rolled back ({left})",
                hint=f"once the services are back (`geomlops status`), `geomlops reconcile "
                f"{name} --repair` removes it, or `geomlops package register` again "
                "completes the registration",
            ) from exc
        if (mlflow_action, item_action) != ("unchanged", "unchanged"):
            _audit_registration(settings, catalog, item, provenance, digest, notes)
    finally:
        if own_catalog:
            catalog.close()
    return RegistrationResult(
        name, version, item_id, digest, provenance, mlflow_action, item_action, notes
    )


def _audit_registration(
    settings: Settings,
    catalog: CatalogClient,
    item: dict[str, Any],
    provenance: Provenance,
    digest: str,
    notes: list[str],
) -> None:
    """Append the registration to the audit trail, as the identity behind the key in use.

    The trail lives in the platform's database. A registration from somewhere without
    database access (CI against a deployed platform) says so in its notes instead.
    """
    from geomlops import audit
    from geomlops.audit import PACKAGE_VERSION_KEY, Action, AuditEntry
    from geomlops.catalog.db import pgstac_connection
    from geomlops.errors import StackNotRunning

    props = item["properties"]
    entry = AuditEntry(
        catalog.whoami().name,
        Action.REGISTER,
        str(props["mlm:name"]),
        None,  # the version column holds model versions; a package's is in details
        details={
            PACKAGE_VERSION_KEY: str(props["version"]),
            "item": item["id"],
            "digest": digest,
            "git_commit": provenance.commit,
            "git_url": provenance.git_url,
            "image": provenance.image,
        },
    )
    try:
        with pgstac_connection(settings) as conn:
            audit.append(conn, entry)
    except StackNotRunning as exc:
        notes.append(f"not in the audit trail (no database access from here): {exc.message}")


def _settled_provenance(
    catalog: CatalogClient, item_id: str, digest: str, wanted: Provenance, notes: list[str]
) -> Provenance:
    """The provenance to record: the stored one for the same content; conflict otherwise."""
    try:
        stored = catalog.get_item_dict(MODELS, item_id)
    except NotFoundError:
        return wanted
    props = stored.get("properties", {})
    if props.get(prop.PACKAGE_DIGEST) != digest:
        raise ConflictError(
            f"{item_id} is already registered with different content: stored "
            f"{props.get(prop.PACKAGE_DIGEST)} from commit {props.get(prop.GIT_COMMIT)}, "
            "this package is "
            f"{digest}; nothing was changed",
            hint="a registered version always means the same code: raise `version` in "
            "package.yaml and mlm.json, then register again",
        )
    code = next(
        (
            a.get("href", "")
            for a in stored.get("assets", {}).values()
            if "mlm:source_code" in a.get("roles", [])
        ),
        wanted.source_href,
    )
    kept = Provenance(
        str(props.get(prop.GIT_COMMIT, wanted.commit)),
        bool(props.get(prop.GIT_DIRTY, False)),
        str(props.get(prop.IMAGE, wanted.image)),
        code,
        str(props.get(prop.GIT_URL, wanted.git_url)),
        str(props.get(prop.PACKAGE_PATH, wanted.package_path)),
    )
    if has_digest(wanted.image) and not has_digest(kept.image):
        notes.append(f"image {kept.image} replaced by the pushed digest {wanted.image}")
        return wanted
    if wanted.commit != kept.commit or wanted.image != kept.image:
        notes.append(
            f"the same content is registered from commit {kept.commit[:12]} with image "
            f"{kept.image}; kept as first recorded"
        )
    return kept
