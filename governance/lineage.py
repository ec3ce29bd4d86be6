"""The full chain behind a model version: package, image, runs, data, approval.

Every link is resolved against the live systems (the catalog, the MLflow registry and
tracking server, the DVC dataset repository, the audit log), and a link that does not
resolve is reported as broken with what was expected, never left out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import psycopg

from geomlops import audit
from geomlops.audit import Action
from geomlops.catalog.client import CatalogClient
from geomlops.catalog.collections import DATASETS, IMAGERY, MODELS, PREDICTIONS, PROCESSORS
from geomlops.catalog.db import pgstac_url
from geomlops.connections import get_connections
from geomlops.errors import GeomlopsError, NotFoundError
from geomlops.governance.clients import CatalogAndRegistry
from geomlops.governance.gates import check_gates, recorded_metrics
from geomlops.model import properties as prop
from geomlops.model.stages import STAGE_PROPERTY
from geomlops.settings import Settings


@dataclass
class Link:
    """One node of the lineage tree."""

    kind: str
    label: str
    ok: bool = True
    problem: str | None = None
    facts: dict[str, Any] = field(default_factory=dict)
    children: list[Link] = field(default_factory=list)
    warning: str | None = None
    """Resolved, but weaker than it should be (an image named by a tag, a gate not met)."""

    def broken(self) -> list[Link]:
        """Every node at or below this one whose link did not resolve."""
        found = [] if self.ok else [self]
        for child in self.children:
            found.extend(child.broken())
        return found

    def warnings(self) -> list[Link]:
        """Every node at or below this one that carries a warning."""
        found = [self] if self.warning else []
        for child in self.children:
            found.extend(child.warnings())
        return found

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "label": self.label,
            "ok": self.ok,
            "problem": self.problem,
            "warning": self.warning,
            "facts": self.facts,
            "children": [c.as_dict() for c in self.children],
        }


def _broken(kind: str, label: str, problem: str, **facts: Any) -> Link:
    return Link(kind, label, ok=False, problem=problem, facts=facts)


class LineageResolver(CatalogAndRegistry):
    """Builds the lineage tree of catalog items, checking each link as it goes."""

    def _open_catalog(self, settings: Settings) -> CatalogClient:
        """Lineage only reads, and catalog reads are public: no key needed."""
        return CatalogClient(get_connections(settings).stac_url)

    def resolve(self, item_id: str) -> Link:
        """Lineage of a model version item (``models``) or a prediction item, by its id."""
        try:
            item = self.catalog.get_item_dict(MODELS, item_id)
        except NotFoundError:
            try:
                return self.prediction(self.catalog.get_item_dict(PREDICTIONS, item_id))
            except NotFoundError:
                pass
            raise NotFoundError(
                f"no model version or prediction item {item_id!r} in the catalog",
                hint="ids look like flood-water-s2-mv3 or a batch-inference run name; search "
                "with `geomlops catalog search`",
            ) from None
        return self.model_version(item)

    # --- prediction ------------------------------------------------------------------------
    def prediction(self, item: dict[str, Any]) -> Link:
        """Lineage of a prediction item, each link checked.

        Its model version (with that version's whole lineage), every source scene, the
        workflow run that made it, and its output objects.
        """
        props = item["properties"]
        root = Link(
            "prediction",
            item["id"],
            facts={
                "model": props.get(prop.MODEL),
                "model_version": props.get(prop.MODEL_VERSION),
                "workflow": props.get(prop.WORKFLOW),
                "outside_region": props.get(prop.OUTSIDE_REGION),
                "stats": props.get(prop.STATS),
                "software": props.get("processing:software"),
            },
        )
        sources = [
            link["href"].rstrip("/").rsplit("/", 1)[-1]
            for link in item.get("links", [])
            if link.get("rel") == "derived_from"
        ]
        model_ids = [i for i in sources if i == props.get(prop.MODEL_ITEM)]
        if not model_ids:
            root.children.append(
                _broken("model version", str(props.get(prop.MODEL_ITEM)),
                        "no derived_from link to the model version item")
            )  # fmt: skip
        for source in sources:
            if source in model_ids:
                try:
                    model = self.catalog.get_item_dict(MODELS, source)
                except NotFoundError:
                    root.children.append(
                        _broken("model version", source, "model version item not in catalog")
                    )
                    continue
                root.children.append(self.model_version(model))
            else:
                root.children.append(self._scene(source))
        if not any(c.kind == "scene" for c in root.children):
            root.children.append(_broken("scene", "?", "no derived_from link to source imagery"))
        root.children.append(self._workflow_run(props))
        root.children += [self._processor(entry) for entry in props.get(prop.PROCESSORS) or []]
        if props.get(prop.PROCESSING) == "pending":
            root.children.append(
                _broken("processor", "?", "its processors have not run: the outputs are pending")
            )
        root.children += [self._output(key, asset) for key, asset in item["assets"].items()]
        return root

    def _processor(self, entry: dict[str, Any]) -> Link:
        """A generic processor the prediction ran: its version item, checksum and outcome."""
        label = f"{entry.get('name')} v{entry.get('version')}"
        facts = {
            k: entry.get(k) for k in ("name", "version", "sha256", "params", "status", "result")
        }
        try:
            item = self.catalog.get_item_dict(PROCESSORS, str(entry.get("item")))
        except NotFoundError:
            return _broken("processor", label, "processor item not in the catalog", **facts)
        catalogued = item["properties"].get(prop.PROCESSOR_SHA256)
        if catalogued != entry.get("sha256"):
            return _broken(
                "processor", label, f"ran sha256 {entry.get('sha256')}, catalogued {catalogued}"
            )
        if entry.get("status") != "complete":
            return _broken("processor", label, f"failed: {entry.get('error')}", **facts)
        return Link("processor", label, facts=facts)

    def _scene(self, item_id: str) -> Link:
        try:
            scene = self.catalog.get_item_dict(IMAGERY, item_id)
        except NotFoundError:
            return _broken("scene", item_id, "imagery item not in the catalog")
        asset = (scene.get("assets") or {}).get("image") or {}
        link = self._output("image", asset)
        link.kind, link.label = "scene", item_id
        link.facts["datetime"] = scene["properties"].get("datetime")
        return link

    def _workflow_run(self, props: dict[str, Any]) -> Link:
        from geomlops import objects

        run = props.get(prop.WORKFLOW)
        if not run:
            return _broken("workflow run", "?", "no workflow run recorded")
        uri = f"s3://{self.settings.s3.bucket_predictions}/{run}/plan/config.json"
        conn = get_connections(self.settings)
        if not objects.exists(conn, uri):
            return _broken("workflow run", run, f"its plan {uri} is not in the object store")
        return Link(
            "workflow run",
            run,
            facts={"plan": uri, "runs": props.get(prop.WORKFLOW_RUNS)},
        )

    def _output(self, key: str, asset: dict[str, Any]) -> Link:
        from botocore.exceptions import ClientError

        from geomlops.objects import split

        href = asset.get("href", "")
        if not href.startswith("s3://"):
            return Link("output", f"{key}: {href}", facts={"checked": False})
        bucket, key_name = split(href)
        try:
            head = (
                get_connections(self.settings).s3_client().head_object(Bucket=bucket, Key=key_name)
            )
        except ClientError:
            return _broken("output", f"{key}: {href}", "object not in the object store")
        size = asset.get("file:size")
        if size is not None and head["ContentLength"] != size:
            return _broken(
                "output", f"{key}: {href}", f"{head['ContentLength']} bytes, item says {size}"
            )
        return Link("output", f"{key}: {href}", facts={"bytes": head["ContentLength"]})

    # --- model version ---------------------------------------------------------------------
    def model_version(self, item: dict[str, Any]) -> Link:
        props = item["properties"]
        root = Link(
            "model version",
            item["id"],
            facts={
                "model": props.get(prop.MLFLOW_MODEL) or props.get("mlm:name"),
                "version": props.get("version"),
                "stage": props.get(STAGE_PROPERTY),
                "trained_by": props.get(prop.TRAINED_BY),
            },
        )
        root.children = [
            self._package(props),
            self._image(props),
            self._registry_version(props),
            self._run("training run", props.get(prop.MLFLOW_RUN_ID)),
            self._run("evaluation run", props.get(prop.EVALUATE_RUN_ID)),
            self._gates(props),
            self._dataset(props),
            self._decisions(props),
        ]
        return root

    def _package(self, props: dict[str, Any]) -> Link:
        name, version = props.get(prop.PACKAGE), props.get(prop.PACKAGE_VERSION)
        commit = props.get(prop.GIT_COMMIT)
        label = f"{name} {version} @ {(commit or '?')[:12]}"
        facts = {"name": name, "version": version, "git_commit": commit}
        if not (name and version and commit):
            return _broken("package", label, "the item does not record package and commit", **facts)
        item_id = props.get(prop.PACKAGE_ITEM)
        if not item_id:
            return _broken("package", label, "no package item recorded", **facts)
        try:
            package = self.catalog.get_item_dict(MODELS, item_id)
        except NotFoundError:
            return _broken("package", label, f"package item {item_id} is not in the catalog")
        facts["item"] = item_id
        facts["source"] = next(
            (
                a.get("href")
                for a in package.get("assets", {}).values()
                if "mlm:source_code" in a.get("roles", [])
            ),
            None,
        )
        return Link("package", label, facts=facts)

    @staticmethod
    def _image(props: dict[str, Any]) -> Link:
        image = props.get(prop.IMAGE)
        if not image:
            return _broken("image", "?", "no container image recorded")
        # The registry is not reachable from every machine: the reference is reported as
        # recorded; a digest (`@sha256:`) pins it, a tag does not.
        pinned = "@sha256:" in image
        link = Link("image", image, facts={"pinned_by_digest": pinned})
        if not pinned:
            link.warning = (
                "not pinned by digest: the tag can be moved to another image, so what ran "
                "cannot be proven (CI records image@sha256:…)"
            )
        return link

    def _gates(self, props: dict[str, Any]) -> Link:
        """Each evaluation gate, the value the version reached, and whether it met it."""
        gates = props.get(prop.GATES)
        if not isinstance(gates, dict) or not gates:
            return Link("gates", "none declared", warning="the package declares no gates")
        results = check_gates(gates, recorded_metrics(props, self.mlflow))
        met = sum(r.met for r in results)
        node = Link("gates", f"{met} of {len(results)} met")
        for r in results:
            node.children.append(
                Link(
                    "gate",
                    f"{r.metric} {r.bounds}",
                    facts={"value": r.value, "met": r.met},
                    warning=r.problem,
                )
            )
        return node

    def _registry_version(self, props: dict[str, Any]) -> Link:
        from mlflow.exceptions import MlflowException

        name, version = (
            props.get(prop.MLFLOW_MODEL),
            props.get(prop.MLFLOW_MODEL_VERSION),
        )
        label = f"{name} v{version}"
        if name is None or version is None:
            return _broken("registry", label, "the item names no MLflow model version")
        try:
            mv = self.mlflow.get_model_version(name, str(version))
        except (MlflowException, TypeError):
            return _broken("registry", label, "not in the MLflow model registry")
        if props.get(prop.MLFLOW_RUN_ID) and mv.run_id != props[prop.MLFLOW_RUN_ID]:
            return _broken(
                "registry",
                label,
                f"registry says run {mv.run_id}, the item says {props[prop.MLFLOW_RUN_ID]}",
            )
        aliases = list(getattr(mv, "aliases", []) or [])
        return Link("registry", label, facts={"source": mv.source, "aliases": aliases})

    def _run(self, kind: str, run_id: str | None) -> Link:
        from mlflow.exceptions import MlflowException

        if not run_id:
            return _broken(kind, "?", "no run recorded")
        try:
            run = self.mlflow.get_run(run_id)
        except MlflowException:
            return _broken(kind, run_id, "run not found on the tracking server")
        return Link(
            kind,
            run_id,
            facts={
                "status": run.info.status,
                "params": dict(run.data.params),
                "metrics": dict(run.data.metrics),
            },
        )

    def _dataset(self, props: dict[str, Any]) -> Link:
        from geomlops.datasets.refs import DatasetRef
        from geomlops.datasets.registry import DatasetRegistry

        name, version = props.get(prop.DATASET), props.get(prop.DATASET_VERSION)
        md5, rev = props.get(prop.DATASET_MD5), props.get(prop.DATASET_GIT_REV)
        label = f"{name}@{version}"
        facts = {"name": name, "version": version, "md5": md5, "git_rev": rev}
        if not (name and version and md5):
            return _broken("dataset", label, "the item does not record its training data")
        try:
            found = DatasetRegistry(self.settings).resolve(DatasetRef.parse(label))
        except GeomlopsError as exc:
            return _broken("dataset", label, f"DVC: {exc.message}", **facts)
        if found.md5 != md5:
            return _broken(
                "dataset", label, f"DVC checksum is {found.md5}, the model was trained on {md5}"
            )
        if rev and found.git_rev != rev:
            return _broken(
                "dataset", label, f"tag points at {found.git_rev[:12]}, trained on {rev[:12]}"
            )
        try:
            self.catalog.get_item_dict(DATASETS, found.item_id)
        except NotFoundError:
            return _broken("dataset", label, f"dataset item {found.item_id} is not in the catalog")
        facts.update(size=found.size, files=found.file_count, item=found.item_id)
        return Link("dataset", label, facts=facts)

    def _decisions(self, props: dict[str, Any]) -> Link:
        model = props.get(prop.MLFLOW_MODEL)
        version = props.get(prop.MLFLOW_MODEL_VERSION)
        with psycopg.connect(pgstac_url(self.settings), connect_timeout=10) as conn:
            entries = list(audit.entries(conn, model, version))
        decisions = [
            e for e in entries if e.action in (Action.PROMOTE, Action.ROLLBACK, Action.REJECT)
        ]
        node = Link("decisions", f"{len(decisions)} recorded")
        for entry in decisions:
            node.children.append(
                Link(
                    "decision",
                    f"{entry.action} by {entry.actor}",
                    facts={
                        "at": entry.at.isoformat() if entry.at else None,
                        "reason": entry.reason,
                        "audit_id": entry.id,
                    },
                )
            )
        stage = props.get(STAGE_PROPERTY)
        if stage == "production" and not any(
            e.action in (Action.PROMOTE, Action.ROLLBACK) for e in decisions
        ):
            node.ok = False
            node.problem = "the item says production but no approval is in the audit log"
        return node
