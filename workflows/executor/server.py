"""The local executor behind Argo Server's REST API: the subset the platform uses.

The CLI speaks to Argo through Hera's ``WorkflowsService`` on a cluster; this app answers
the same requests on 127.0.0.1, so the CLI has one code path (DESIGN.md §3). Paths, bodies
and answers follow Argo v3.7/v4 (``/api/v1/workflows/{namespace}/…``); errors are the
gRPC-gateway's ``{"code", "message"}`` with its HTTP status, so Hera raises the same
NotFound/BadRequest/Unauthorized/Forbidden classes a real Argo server makes it raise.

Served: version and info; the platform's WorkflowTemplates (read-only: they are the ones
``geomlops workflows render`` writes, installed as a cluster installs them with the Helm
chart); workflows: submit from a WorkflowTemplate, create, get, list, resume, set (output
parameters of suspend nodes), stop, terminate, retry, and logs. Each run is driven by its
own background process (:meth:`LocalExecutor.start`), so it outlives the request and a
restart of this service.

Credentials are the catalog's: the bearer token (or ``X-API-Key``) is checked by the
catalog's ``/auth/whoami``, the one place credentials are checked, so a revoked key stops
here at once too. Every request but version/info needs one; submitting, creating,
retrying and stopping need the ``writer`` role, resuming ``writer`` or ``approver`` (an
approver resumes a training run to approve it). The submitter becomes the run's
``workflows.argoproj.io/creator`` label and, when the workflow declares it, its
``submitted-by`` parameter, which may not name anyone else.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Annotated, Any

from fastapi import Body, Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from geomlops.errors import (
    GeomlopsError,
    NotFoundError,
)
from geomlops.settings import Settings
from geomlops.workflows.executor.api import LocalExecutor
from geomlops.workflows.executor.argo_wire import (
    APPROVER,
    ARGO_VERSION,
    CREATOR_LABEL,
    FAILED_PRECONDITION,
    INTERNAL,
    INVALID_ARGUMENT,
    NOT_FOUND,
    PENDING_OUTPUTS,
    PERMISSION_DENIED,
    SETTLE_TIMEOUT,
    SUBMITTER,
    TEMPLATE_LABEL,
    WRITER,
    ArgoError,
    code_of,
    error_response,
    parse_labels,
    parse_node_selector,
    parse_parameters,
    workflow_object,
)
from geomlops.workflows.executor.manifest import API_VERSION
from geomlops.workflows.executor.model import RunPhase, RunState, pod_name
from geomlops.workflows.executor.server_auth import Backend, Caller

log = logging.getLogger(__name__)


async def _caller(request: Request) -> Caller:
    backend: Backend = request.app.state.backend
    return await backend.caller(request)


CallerDep = Annotated[Caller, Depends(_caller)]
JsonBody = Annotated[dict[str, Any], Body()]


def _load(executor: LocalExecutor, namespace: str, name: str) -> None:
    """Raise Argo's NotFound unless ``name`` is a run in ``namespace``."""
    try:
        state = executor.store.load(name)
    except NotFoundError:
        state = None
    if state is None or state.namespace != namespace:
        raise ArgoError(NOT_FOUND, f'workflows.argoproj.io "{name}" not found')


def _claim_submitter(manifest: dict[str, Any], params: dict[str, str], caller: Caller) -> None:
    """Put the caller in ``submitted-by`` (when declared); refuse anyone else's name there."""
    declared = {
        p.get("name"): p
        for p in ((manifest.get("spec") or {}).get("arguments") or {}).get("parameters") or []
    }
    if SUBMITTER not in declared:
        return
    given = params.get(SUBMITTER) or declared[SUBMITTER].get("value") or ""
    if given and given != caller.name:
        raise ArgoError(
            PERMISSION_DENIED,
            f"{SUBMITTER}={given!r} but the credential is {caller.name!r}: the submitter is "
            "whoever submits",
        )
    params[SUBMITTER] = caller.name


def _with_creator(manifest: dict[str, Any], namespace: str, caller: Caller) -> dict[str, Any]:
    metadata = manifest.setdefault("metadata", {})
    metadata["namespace"] = namespace
    metadata.setdefault("labels", {})[CREATOR_LABEL] = caller.name
    return manifest


# --- the app ------------------------------------------------------------------------------


def create_app(settings: Settings | None = None) -> FastAPI:
    """The Argo Server API over the local executor.

    ``settings`` unset: the process-wide settings, read per request (``uvicorn --factory``
    in the local stack; tests run the same factory in-process).
    """
    backend = Backend(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await backend.close()

    app = FastAPI(
        lifespan=lifespan,
        title="geomlops local Argo API",
        version=ARGO_VERSION,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.backend = backend

    @app.exception_handler(ArgoError)
    async def _argo_error(request: Request, error: ArgoError) -> JSONResponse:
        return error_response(error.code, error.message)

    @app.exception_handler(GeomlopsError)
    async def _platform_error(request: Request, error: GeomlopsError) -> JSONResponse:
        return error_response(code_of(error), str(error))

    @app.exception_handler(RequestValidationError)
    async def _bad_request(request: Request, error: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}" for e in error.errors()
        )
        return error_response(INVALID_ARGUMENT, f"malformed request: {problems}")

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        code = {404: NOT_FOUND, 405: INVALID_ARGUMENT}.get(error.status_code, INTERNAL)
        return error_response(code, f"{request.method} {request.url.path}: {error.detail}")

    @app.get("/api/v1/version")
    def version() -> dict[str, str]:
        """Argo's ``InfoService.GetVersion`` (open: it is the health probe)."""
        return {
            "version": ARGO_VERSION,
            "buildDate": "",
            "gitCommit": "",
            "gitTag": ARGO_VERSION,
            "gitTreeState": "clean",
            "goVersion": "",
            "compiler": "geomlops-local",
            "platform": "local",
        }

    @app.get("/api/v1/info")
    def info() -> dict[str, Any]:
        return {"managedNamespace": "", "modals": {}, "navColor": ""}

    @app.get("/api/v1/workflow-templates/{namespace}")
    def list_templates(namespace: str, caller: CallerDep) -> dict[str, Any]:
        items = list(backend.templates(namespace).values())
        return {"metadata": {}, "items": items}

    @app.get("/api/v1/workflow-templates/{namespace}/{name}")
    def get_template(namespace: str, name: str, caller: CallerDep) -> dict[str, Any]:
        templates = backend.templates(namespace)
        if name not in templates:
            raise ArgoError(NOT_FOUND, f'workflowtemplates.argoproj.io "{name}" not found')
        return templates[name]

    @app.post("/api/v1/workflows/{namespace}/submit")
    def submit(namespace: str, body: JsonBody, caller: CallerDep) -> dict[str, Any]:
        """``WorkflowService.SubmitWorkflow``: a run of an installed WorkflowTemplate."""
        caller.require(WRITER)
        kind = body.get("resourceKind") or ""
        if kind not in ("WorkflowTemplate", "workflowtemplate"):
            raise ArgoError(
                INVALID_ARGUMENT,
                f"resourceKind {kind!r}: the local executor submits WorkflowTemplates only",
            )
        options = body.get("submitOptions") or {}
        if options.get("dryRun") or options.get("serverDryRun"):
            raise ArgoError(INVALID_ARGUMENT, "dry runs are not supported by the local executor")
        name = body.get("resourceName") or ""
        templates = backend.templates(namespace)
        if name not in templates:
            raise ArgoError(NOT_FOUND, f'workflowtemplates.argoproj.io "{name}" not found')
        template = templates[name]
        # As Argo does: a Workflow with the template's spec, labelled with its name.
        metadata: dict[str, Any] = {
            "labels": {
                **(template["metadata"].get("labels") or {}),
                **parse_labels(options.get("labels")),
                TEMPLATE_LABEL: name,
            },
            "annotations": dict(template["metadata"].get("annotations") or {}),
        }
        if options.get("name"):
            metadata["name"] = options["name"]
        else:
            metadata["generateName"] = options.get("generateName") or f"{name}-"
        manifest = _with_creator(
            {"apiVersion": API_VERSION, "kind": "Workflow", "metadata": metadata,
             "spec": template["spec"]},
            namespace,
            caller,
        )  # fmt: skip
        params = parse_parameters(options.get("parameters"))
        _claim_submitter(manifest, params, caller)
        executor = backend.executor()
        run = executor.submit(manifest, params)
        executor.start(run)
        return workflow_object(executor, run)

    @app.post("/api/v1/workflows/{namespace}")
    def create(namespace: str, body: JsonBody, caller: CallerDep) -> dict[str, Any]:
        """``WorkflowService.CreateWorkflow``: a run of the Workflow in the body."""
        caller.require(WRITER)
        manifest = body.get("workflow")
        if not isinstance(manifest, dict) or manifest.get("kind", "Workflow") != "Workflow":
            raise ArgoError(INVALID_ARGUMENT, "the body's `workflow` must be a Workflow")
        if body.get("serverDryRun") or (body.get("createOptions") or {}).get("dryRun"):
            raise ArgoError(INVALID_ARGUMENT, "dry runs are not supported by the local executor")
        manifest = _with_creator(
            {"apiVersion": API_VERSION, "kind": "Workflow", **manifest}, namespace, caller
        )
        params: dict[str, str] = {}
        _claim_submitter(manifest, params, caller)
        executor = backend.executor()
        run = executor.submit(manifest, params)
        executor.start(run)
        return workflow_object(executor, run)

    @app.get("/api/v1/workflows/{namespace}")
    def list_workflows(
        namespace: str,
        caller: CallerDep,
        label_selector: Annotated[str | None, Query(alias="listOptions.labelSelector")] = None,
        name_filter: Annotated[str | None, Query(alias="nameFilter")] = None,
    ) -> dict[str, Any]:
        """``WorkflowService.ListWorkflows``, newest first."""
        executor = backend.executor()
        wanted = parse_labels(label_selector)
        items = []
        for summary in executor.list():
            name = summary["name"]
            if name_filter and name_filter not in name:
                continue
            try:
                workflow = workflow_object(executor, name)
            except (NotFoundError, ValueError):
                continue
            labels = workflow["metadata"]["labels"]
            if workflow["metadata"]["namespace"] != namespace:
                continue
            if any(labels.get(k) != v for k, v in wanted.items()):
                continue
            items.append(workflow)
        return {"metadata": {}, "items": items}

    @app.get("/api/v1/workflows/{namespace}/{name}")
    def get(namespace: str, name: str, caller: CallerDep) -> dict[str, Any]:
        executor = backend.executor()
        _load(executor, namespace, name)
        return workflow_object(executor, name)

    @app.put("/api/v1/workflows/{namespace}/{name}/set")
    def set_(namespace: str, name: str, body: JsonBody, caller: CallerDep) -> dict[str, Any]:
        """``WorkflowService.SetWorkflow``: output parameters of suspend nodes.

        With ``phase: Succeeded`` the nodes are resumed with them at once; without a phase
        they are kept for the next resume, as ``argo node set`` then ``argo resume`` do.
        """
        caller.require(WRITER, APPROVER)
        executor = backend.executor()
        _load(executor, namespace, name)
        node = parse_node_selector(body.get("nodeFieldSelector"))
        try:
            outputs = json.loads(body.get("outputParameters") or "{}")
        except ValueError as exc:
            raise ArgoError(INVALID_ARGUMENT, f"outputParameters is not JSON: {exc}") from exc
        if not isinstance(outputs, dict):
            raise ArgoError(INVALID_ARGUMENT, "outputParameters must be a JSON object")
        outputs = {str(k): str(v) for k, v in outputs.items()}
        phase = body.get("phase")
        if phase == "Succeeded":
            executor.resume(name, node=node, parameters=outputs, reason=body.get("message"))
        elif phase:
            raise ArgoError(
                INVALID_ARGUMENT, f"phase {phase!r}: the local executor sets Succeeded only"
            )
        else:
            path = executor.store.run_dir(name) / PENDING_OUTPUTS
            pending = json.loads(path.read_text()) if path.exists() else {}
            pending.setdefault(node or "", {}).update(outputs)
            path.write_text(json.dumps(pending))
        return workflow_object(executor, name)

    @app.put("/api/v1/workflows/{namespace}/{name}/resume")
    def resume(namespace: str, name: str, body: JsonBody, caller: CallerDep) -> dict[str, Any]:
        caller.require(WRITER, APPROVER)
        executor = backend.executor()
        _load(executor, namespace, name)
        node = parse_node_selector(body.get("nodeFieldSelector"))
        path = executor.store.run_dir(name) / PENDING_OUTPUTS
        pending = json.loads(path.read_text()) if path.exists() else {}
        outputs = {**pending.get("", {}), **(pending.get(node, {}) if node else {})}
        _precondition(executor, name, "resume")
        executor.resume(name, node=node, parameters=outputs, wait=False)
        path.unlink(missing_ok=True)

        # As on Argo, the nodes are resumed once the call returns.
        def resumed(state: RunState) -> bool:
            names = [(n.name, n.display_name, n.id) for n in state.suspended_nodes]
            targets = [n for n in names if not node or node in n]
            return state.finished or not targets

        _settle(executor, name, resumed)
        return workflow_object(executor, name)

    @app.put("/api/v1/workflows/{namespace}/{name}/stop")
    def stop(namespace: str, name: str, body: JsonBody, caller: CallerDep) -> dict[str, Any]:
        """Stop: kill the pods, run the exit handler; the run ends Failed."""
        caller.require(WRITER)
        executor = backend.executor()
        _load(executor, namespace, name)
        if body.get("nodeFieldSelector"):
            raise ArgoError(INVALID_ARGUMENT, "stopping one node is not supported locally")
        _precondition(executor, name, "stop")
        executor.stop(name, reason=body.get("message") or None, wait=False)
        _settle(executor, name, lambda s: s.finished or bool(s.shutdown))
        return workflow_object(executor, name)

    @app.put("/api/v1/workflows/{namespace}/{name}/terminate")
    def terminate(namespace: str, name: str, caller: CallerDep) -> dict[str, Any]:
        """Terminate: kill the pods, no exit handler; the run ends Failed at once."""
        caller.require(WRITER)
        executor = backend.executor()
        _load(executor, namespace, name)
        _precondition(executor, name, "terminate")
        executor.stop(name, terminate=True, wait=False)
        grace = backend.settings.workflows.kill_grace
        _settle(executor, name, lambda s: s.finished, timeout=SETTLE_TIMEOUT + grace)
        return workflow_object(executor, name)

    @app.put("/api/v1/workflows/{namespace}/{name}/retry")
    def retry(namespace: str, name: str, body: JsonBody, caller: CallerDep) -> dict[str, Any]:
        """Run a Failed/Error run again from its failed nodes (succeeded ones are kept)."""
        caller.require(WRITER)
        executor = backend.executor()
        _load(executor, namespace, name)
        if body.get("restartSuccessful") or body.get("parameters"):
            raise ArgoError(
                INVALID_ARGUMENT,
                "restartSuccessful and parameters of a retry are not supported locally",
            )
        state = executor.store.load(name)
        if state.phase not in (RunPhase.FAILED, RunPhase.ERROR):
            raise ArgoError(
                FAILED_PRECONDITION, f"workflow {name} is {state.phase}: only a failed one retries"
            )
        executor.retry(name, wait=False)
        return workflow_object(executor, name)

    @app.get("/api/v1/workflows/{namespace}/{name}/log")
    def logs(
        namespace: str,
        name: str,
        caller: CallerDep,
        pod: Annotated[str | None, Query(alias="podName")] = None,
        grep: Annotated[str | None, Query()] = None,
        tail: Annotated[int | None, Query(alias="logOptions.tailLines", ge=0)] = None,
    ) -> StreamingResponse:
        """``WorkflowService.WorkflowLogs``: one ``{"result": LogEntry}`` JSON per line."""
        executor = backend.executor()
        _load(executor, namespace, name)
        entries = list(_log_entries(executor, name, pod, grep, tail))
        body = "".join(json.dumps({"result": e}) + "\n" for e in entries)
        return StreamingResponse(iter([body]), media_type="application/json")

    return app


def _settle(
    executor: LocalExecutor,
    name: str,
    done: Callable[[RunState], bool],
    timeout: float = SETTLE_TIMEOUT,
) -> None:
    """Wait (a bounded time) until the executor driving ``name`` has acted on a request."""
    deadline = time.monotonic() + timeout
    interval = min(0.05, executor.settings.workflows.poll_interval)
    while time.monotonic() < deadline:
        if done(executor.store.load(name)):
            return
        time.sleep(interval)
    log.warning("run %s: the executor did not act on the request within %.0f s", name, timeout)


def _precondition(executor: LocalExecutor, name: str, action: str) -> None:
    state = executor.store.load(name)
    if state.finished:
        raise ArgoError(
            FAILED_PRECONDITION,
            f"cannot {action} workflow {name}: it has completed ({state.phase})",
        )


def _log_entries(
    executor: LocalExecutor, name: str, pod: str | None, grep: str | None, tail: int | None
) -> Iterator[dict[str, str]]:
    """Each line of each pod's log (in node order), as Argo's ``LogEntry``."""
    state = executor.store.load(name)
    directory = executor.store.run_dir(name)
    for node in state.nodes.values():
        if not node.pod_name or (pod and pod not in (node.pod_name, node.id, node.name)):
            continue
        path = directory / "logs" / f"{node.pod_name}.log"
        if not path.exists():
            continue
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
        if grep:
            lines = [line for line in lines if grep in line]
        if tail is not None:
            lines = lines[-tail:] if tail else []
        for line in lines:
            yield {"podName": node.pod_name, "content": line}


__all__ = ["create_app", "pod_name", "workflow_object"]
