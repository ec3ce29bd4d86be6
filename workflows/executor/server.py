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
from dataclasses import dataclass
from typing import Annotated, Any

import httpx
from fastapi import Body, Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from geomlops.errors import (
    AuthError,
    ConflictError,
    GeomlopsError,
    NotFoundError,
    StackNotRunning,
    ValidationFailed,
)
from geomlops.settings import Settings, get_settings
from geomlops.workflows.executor.api import LocalExecutor
from geomlops.workflows.executor.manifest import API_VERSION
from geomlops.workflows.executor.model import RunPhase, RunState, iso, pod_name

log = logging.getLogger(__name__)

ARGO_VERSION = "v3.7.18"
"""The Argo Server version whose API shapes this app answers with."""
CREATOR_LABEL = "workflows.argoproj.io/creator"
TEMPLATE_LABEL = "workflows.argoproj.io/workflow-template"
PHASE_LABEL = "workflows.argoproj.io/phase"
COMPLETED_LABEL = "workflows.argoproj.io/completed"
STATE_DIR_ANNOTATION = "workflows.geomlops.io/state-dir"
"""Where the local run keeps its state and pod files (local runs only)."""
SUBMITTER = "submitted-by"
LOCAL_OUTPUTS = {"/tmp/outputs": "{pod_dir}/outputs"}  # noqa: S108 - container path, mapped
"""Container paths the platform's templates write outputs to, mapped per pod locally."""
PENDING_OUTPUTS = "pending-outputs.json"
"""Output parameters set on suspend nodes (``PUT …/set``) for the next resume."""
WRITER, APPROVER, ADMIN = "writer", "approver", "admin"
WHOAMI_PATH = "/auth/whoami"
AUTH_TIMEOUT = 10.0
SETTLE_TIMEOUT = 15.0
"""Seconds a resume/stop/terminate waits for the run's executor to take it up."""

# gRPC status codes, and the HTTP status grpc-gateway answers each with.
INVALID_ARGUMENT, NOT_FOUND, ALREADY_EXISTS, PERMISSION_DENIED = 3, 5, 6, 7
FAILED_PRECONDITION, ABORTED, INTERNAL, UNAVAILABLE, UNAUTHENTICATED = 9, 10, 13, 14, 16
HTTP_STATUS = {
    INVALID_ARGUMENT: 400,
    NOT_FOUND: 404,
    ALREADY_EXISTS: 409,
    PERMISSION_DENIED: 403,
    FAILED_PRECONDITION: 400,
    ABORTED: 409,
    INTERNAL: 500,
    UNAVAILABLE: 503,
    UNAUTHENTICATED: 401,
}


class ArgoError(Exception):
    """An answer in the gRPC-gateway's error shape."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _error_response(code: int, message: str) -> JSONResponse:
    return JSONResponse(
        {"code": code, "message": message, "details": []}, status_code=HTTP_STATUS.get(code, 500)
    )


def _code_of(error: GeomlopsError) -> int:
    """The one table from the platform's errors to Argo's."""
    if isinstance(error, NotFoundError):
        return NOT_FOUND
    if isinstance(error, ValidationFailed):
        return INVALID_ARGUMENT
    if isinstance(error, ConflictError):
        return ABORTED
    if isinstance(error, AuthError):
        return UNAUTHENTICATED
    if isinstance(error, StackNotRunning):
        return UNAVAILABLE
    return INTERNAL


@dataclass(frozen=True)
class Caller:
    """Who sent the request, as the catalog names them."""

    name: str
    roles: frozenset[str]

    def require(self, *roles: str) -> None:
        """Refuse the request unless the caller holds one of ``roles`` (or is admin)."""
        if ADMIN in self.roles or self.roles & set(roles):
            return
        raise ArgoError(
            PERMISSION_DENIED,
            f"identity {self.name!r} has roles {sorted(self.roles) or 'none'}; this needs one "
            f"of {list(roles)} or admin",
        )


class Backend:
    """The settings and the executor behind the app (resolved per request)."""

    def __init__(self, settings: Settings | None) -> None:
        self.fixed = settings
        self._http: httpx.AsyncClient | None = None

    @property
    def http(self) -> httpx.AsyncClient:
        """One client for every credential check.

        A new client costs ~70 ms (its TLS context), twenty times the check itself, and a
        waiting CLI polls several times a second.
        """
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=AUTH_TIMEOUT)
        return self._http

    async def close(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    @property
    def settings(self) -> Settings:
        # Unset: re-read per request, so an app run inside a test follows its environment.
        return self.fixed or get_settings()

    def executor(self) -> LocalExecutor:
        """The local executor, with the templates' output paths mapped per pod."""
        settings = self.settings
        path_map = {**LOCAL_OUTPUTS, **settings.workflows.path_map}
        settings = settings.model_copy(
            update={"workflows": settings.workflows.model_copy(update={"path_map": path_map})}
        )
        return LocalExecutor(settings)

    def templates(self, namespace: str) -> dict[str, dict[str, Any]]:
        """The platform's WorkflowTemplates as installed in ``namespace``."""
        from geomlops.workflows.templates import all_templates, render

        installed = {}
        for name, template in all_templates(self.settings).items():
            manifest = render(template)
            manifest.setdefault("metadata", {})["namespace"] = namespace
            installed[name] = manifest
        return installed

    async def caller(self, request: Request) -> Caller:
        """The identity behind the request's credential, asked of the catalog."""
        from geomlops.connections import get_connections

        headers = {}
        authorization = request.headers.get("authorization") or ""
        scheme, _, token = authorization.strip().partition(" ")
        if request.headers.get("x-api-key"):
            headers["x-api-key"] = request.headers["x-api-key"]
        elif scheme.lower() == "bearer" and token.strip():
            # Argo clients send every token as a bearer token: an OIDC token (a JWT) goes on
            # as one, anything else is one of the catalog's API keys.
            token = token.strip()
            if token.count(".") == 2:
                headers["authorization"] = f"Bearer {token}"
            else:
                headers["x-api-key"] = token
        if not headers:
            raise ArgoError(
                UNAUTHENTICATED,
                "this request needs a credential: send `Authorization: Bearer <API key>`",
            )
        try:
            url = get_connections(self.settings).stac_url + WHOAMI_PATH
            response = await self.http.get(url, headers=headers)
        except (httpx.HTTPError, StackNotRunning) as exc:
            raise ArgoError(UNAVAILABLE, f"cannot check the credential: {exc}") from exc
        if response.status_code in (401, 403):
            try:
                reason = response.json().get("description") or response.text
            except ValueError:
                reason = response.text
            raise ArgoError(UNAUTHENTICATED, f"credential refused: {reason}")
        if response.status_code != 200:
            raise ArgoError(UNAVAILABLE, f"the catalog answered {response.status_code}")
        data = response.json()
        return Caller(name=str(data["name"]), roles=frozenset(data.get("roles") or []))


async def _caller(request: Request) -> Caller:
    backend: Backend = request.app.state.backend
    return await backend.caller(request)


CallerDep = Annotated[Caller, Depends(_caller)]
JsonBody = Annotated[dict[str, Any], Body()]


# --- the Argo objects answered -----------------------------------------------------------


def _node(node: dict[str, Any]) -> dict[str, Any]:
    """A node of the executor's status as Argo's ``NodeStatus``."""
    out: dict[str, Any] = {
        "id": node["id"],
        "name": node["name"],
        "displayName": node["displayName"],
        "type": node["type"],
        "phase": node["phase"],
    }
    for key in ("templateName", "message", "startedAt", "finishedAt", "boundaryID", "inputs"):
        if node.get(key):
            out[key] = node[key]
    if node.get("children"):
        out["children"] = list(node["children"])
    if node.get("outputs"):
        outputs = dict(node["outputs"])
        if "exitCode" in outputs:
            outputs["exitCode"] = str(outputs["exitCode"])
        out["outputs"] = outputs
    if node.get("retries") is not None:
        out["nodeFlag"] = {"retried": True}
    if node.get("restarts"):
        out["failedPodRestarts"] = int(node["restarts"])
    return out


def workflow_object(executor: LocalExecutor, name: str, *, nodes: bool = True) -> dict[str, Any]:
    """The run as Argo's ``Workflow`` object (metadata, spec, status)."""
    state = executor.store.load(name)
    status = executor.status(name)
    source = state.workflow["metadata"]
    labels = {
        **(source.get("labels") or {}),
        PHASE_LABEL: state.phase,
        COMPLETED_LABEL: "true" if state.finished else "false",
    }
    annotations = {
        **(source.get("annotations") or {}),
        STATE_DIR_ANNOTATION: status["stateDir"],
    }
    body: dict[str, Any] = {"phase": state.phase}
    for key in ("message", "startedAt", "finishedAt", "progress"):
        if status.get(key):
            body[key] = status[key]
    if nodes and status["nodes"]:
        body["nodes"] = {n["id"]: _node(n) for n in status["nodes"]}
    return {
        "apiVersion": API_VERSION,
        "kind": "Workflow",
        "metadata": {
            "name": state.name,
            "namespace": state.namespace,
            "uid": state.uid,
            "resourceVersion": str(state.seq),
            "generation": 1,
            "creationTimestamp": iso(state.created_at),
            "labels": labels,
            "annotations": annotations,
        },
        "spec": state.workflow["spec"],
        "status": body,
    }


def _load(executor: LocalExecutor, namespace: str, name: str) -> None:
    """Raise Argo's NotFound unless ``name`` is a run in ``namespace``."""
    try:
        state = executor.store.load(name)
    except NotFoundError:
        state = None
    if state is None or state.namespace != namespace:
        raise ArgoError(NOT_FOUND, f'workflows.argoproj.io "{name}" not found')


def _parameters(values: list[str] | None) -> dict[str, str]:
    parsed = {}
    for value in values or []:
        key, sep, text = value.partition("=")
        if not sep or not key:
            raise ArgoError(INVALID_ARGUMENT, f"parameter {value!r} is not name=value")
        parsed[key] = text
    return parsed


def _labels(text: str | None) -> dict[str, str]:
    labels = {}
    for part in (text or "").split(","):
        if part.strip():
            key, sep, value = part.partition("=")
            if not sep:
                raise ArgoError(INVALID_ARGUMENT, f"label {part!r} is not key=value")
            labels[key.strip()] = value.strip()
    return labels


def _node_selector(selector: str | None) -> str | None:
    """The node a ``nodeFieldSelector`` names (``displayName=…``, ``name=…`` or ``id=…``)."""
    if not selector:
        return None
    key, sep, value = selector.partition("=")
    if not sep or key.strip() not in ("displayName", "name", "id") or "," in value:
        raise ArgoError(
            INVALID_ARGUMENT,
            f"nodeFieldSelector {selector!r}: only displayName=, name= or id= of one node is "
            "supported by the local executor",
        )
    return value.strip()


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
        return _error_response(error.code, error.message)

    @app.exception_handler(GeomlopsError)
    async def _platform_error(request: Request, error: GeomlopsError) -> JSONResponse:
        return _error_response(_code_of(error), str(error))

    @app.exception_handler(RequestValidationError)
    async def _bad_request(request: Request, error: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}" for e in error.errors()
        )
        return _error_response(INVALID_ARGUMENT, f"malformed request: {problems}")

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        code = {404: NOT_FOUND, 405: INVALID_ARGUMENT}.get(error.status_code, INTERNAL)
        return _error_response(code, f"{request.method} {request.url.path}: {error.detail}")

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
                **_labels(options.get("labels")),
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
        params = _parameters(options.get("parameters"))
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
        wanted = _labels(label_selector)
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
        node = _node_selector(body.get("nodeFieldSelector"))
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
        node = _node_selector(body.get("nodeFieldSelector"))
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
