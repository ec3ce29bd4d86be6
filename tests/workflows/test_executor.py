"""The local Argo executor on small hand-written manifests, one per supported feature.

Each manifest is plain Argo (validated against both Argo schema versions below); steps
write files into a `workdir` parameter so tests can see what ran, in which order, how many
times, with which values.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from geomlops.errors import ConflictError, NotFoundError, ValidationFailed
from geomlops.settings import Settings, StackSettings, WorkflowSettings
from geomlops.workflows.executor import LocalExecutor, ProgressEvent
from geomlops.workflows.schema import ArgoSchema

MANIFESTS = Path(__file__).parent / "manifests"


def _load(name: str) -> dict[str, Any]:
    return yaml.safe_load((MANIFESTS / f"{name}.yaml").read_text())


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        stack=StackSettings(home=tmp_path / "home"),
        workflows=WorkflowSettings(
            parallelism=4,
            path_map={"/outputs": "{pod_dir}/outputs"},
            poll_interval=0.05,
            kill_grace=1.0,
        ),
    )


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    path = tmp_path / "work"
    path.mkdir()
    return path


@pytest.fixture
def events() -> list[ProgressEvent]:
    return []


@pytest.fixture
def executor(settings: Settings, events: list[ProgressEvent]) -> LocalExecutor:
    return LocalExecutor(settings, listener=events.append)


def _run(executor: LocalExecutor, name: str, workdir: Path, **parameters: str) -> dict[str, Any]:
    run = executor.submit(MANIFESTS / f"{name}.yaml", {"workdir": str(workdir), **parameters})
    return executor.run(run)


def _nodes(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Nodes by display name (unique within these small manifests)."""
    return {node["displayName"]: node for node in status["nodes"]}


def _output(node: dict[str, Any], name: str) -> str:
    return next(p["value"] for p in node["outputs"]["parameters"] if p["name"] == name)


def test_dag_diamond_runs_each_step_once_in_dependency_order(executor, workdir):
    status = _run(executor, "dag-diamond", workdir)

    assert status["phase"] == "Succeeded"
    order = (workdir / "order.txt").read_text().split()
    assert order[0] == "A" and order[-1] == "D" and sorted(order[1:3]) == ["B", "C"]
    for step in "ABCD":
        assert (workdir / f"runs-{step}.txt").read_text() == "run\n"
    nodes = _nodes(status)
    assert {nodes[s]["phase"] for s in "ABCD"} == {"Succeeded"}
    assert nodes[status["name"]]["type"] == "DAG"
    # {{pod.name}} and {{workflow.name}} reach the process; the pod name is Argo's v2 form.
    assert nodes["A"]["outputs"]["result"] == f"pod {nodes['A']['podName']} of {status['name']}"
    assert nodes["A"]["podName"].startswith(f"{status['name']}-mark-")
    assert nodes["A"]["image"] == "busybox"


def test_parameters_flow_through_inputs_files_defaults_and_nested_dag_outputs(executor, workdir):
    status = _run(executor, "parameters", workdir)

    assert status["phase"] == "Succeeded", status["message"]
    assert status["workflowTemplate"] == "parameters"
    assert status["name"].startswith("parameters-")
    nodes = _nodes(status)
    # valueFrom.path through the mapped /outputs; the input default filled `name`.
    assert _output(nodes["produce"], "message") == "hello world"
    assert _output(nodes["produce"], "missing") == "fallback"
    assert _output(nodes["inner"], "shouted") == "HELLO WORLD"
    assert (workdir / "consumed.txt").read_text() == "HELLO WORLD|fallback|red"


def test_submitted_parameters_override_values_and_are_checked(executor, workdir):
    status = _run(executor, "parameters", workdir, greeting="hi", colour="green")
    assert (workdir / "consumed.txt").read_text() == "HI WORLD|fallback|green"

    with pytest.raises(ValidationFailed) as caught:
        executor.submit(MANIFESTS / "parameters.yaml", {"colour": "blue", "colour2": "x"})
    problems = "\n".join(caught.value.problems)
    assert "'colour2' is neither in spec.arguments.parameters nor an input" in problems
    assert "'blue' is not one of red, green" in problems
    assert "parameter 'workdir' has no value" in problems
    assert status["parameters"]["greeting"] == "hi"


def test_with_param_and_with_items_fan_out_and_aggregate(executor, workdir):
    status = _run(executor, "fanout", workdir)

    assert status["phase"] == "Succeeded", status["message"]
    for name in ("t1", "t2", "x", "y", "z"):
        assert (workdir / f"tile-{name}").read_text() == "done"
    nodes = _nodes(status)
    assert nodes["tiles"]["type"] == "TaskGroup"
    assert _output(nodes["tiles(1:name:t2,size:3)"], "area") == "9"
    assert (workdir / "collected.txt").read_text() == '["4", "9"]\n["x", "y", "z"]'


def test_when_false_is_skipped_and_unmet_depends_is_omitted(executor, workdir):
    status = _run(executor, "when", workdir)

    assert status["phase"] == "Succeeded"
    nodes = _nodes(status)
    assert nodes["flip"]["outputs"]["result"] == "heads"
    assert nodes["heads"]["phase"] == "Succeeded"
    assert nodes["tails"]["phase"] == "Skipped"
    assert "evaluated false" in nodes["tails"]["message"]
    assert nodes["after-tails"]["phase"] == "Omitted"
    assert nodes["big"]["phase"] == "Succeeded"
    assert sorted((workdir / "said.txt").read_text().split()) == ["big", "heads"]


def test_when_numeric_comparison_false_skips(executor, workdir):
    status = _run(executor, "when", workdir, threshold="3")
    assert _nodes(status)["big"]["phase"] == "Skipped"


def test_steps_template_passes_script_result_and_honours_continue_on(executor, workdir):
    status = _run(executor, "steps", workdir)

    assert status["phase"] == "Succeeded", status["message"]
    nodes = _nodes(status)
    assert nodes["count"]["outputs"]["result"] == "10"
    assert nodes["skipped"]["phase"] == "Skipped"
    assert nodes["tolerated"]["phase"] == "Failed"
    assert nodes["[1]"]["type"] == "StepGroup"
    assert (workdir / "shown.txt").read_text() == "sum=10\nlast\n"


def test_retry_fails_twice_then_succeeds_with_backoff(executor, workdir, events):
    status = _run(executor, "retry", workdir)

    assert status["phase"] == "Succeeded"
    assert (workdir / "attempts.txt").read_text() == "attempt 0\nattempt 1\nattempt 2\n"
    retry = next(n for n in status["nodes"] if n["type"] == "Retry")
    attempts = [n for n in status["nodes"] if n["type"] == "Pod"]
    assert [n["phase"] for n in attempts] == ["Failed", "Failed", "Succeeded"]
    assert [n["displayName"] for n in attempts] == [
        f"{retry['displayName']}({i})" for i in range(3)
    ]
    assert retry["outputs"]["result"] == "succeeded on retry 2"
    times = [float(t) for t in (workdir / "times.txt").read_text().split()]
    assert times[1] - times[0] >= 0.2 - 0.02  # backoff duration
    assert times[2] - times[1] >= 0.4 - 0.02  # times factor 2
    assert [e.kind for e in events if e.node_type == "Retry"].count("retrying") == 2
    assert "not yet" in executor.logs(status["name"], f"{retry['displayName']}(0)")


def test_exhausted_retries_fail_the_run_and_still_run_on_exit(executor, workdir):
    status = _run(executor, "retry-exhausted", workdir)

    assert status["phase"] == "Failed"
    assert "No more retries left" in status["message"]
    assert (workdir / "tries.txt").read_text() == "try\n" * 3  # limit "2": 1 + 2 retries
    nodes = _nodes(status)
    assert nodes["doomed"]["phase"] == "Failed"
    assert "never" not in nodes  # the next step group never started
    assert nodes[f"{status['name']}.onExit"]["phase"] == "Succeeded"
    assert (workdir / "exit-status.txt").read_text() == "Failed"


def test_suspend_pauses_the_run_and_resume_supplies_the_decision(executor, workdir):
    run = executor.submit(MANIFESTS / "suspend.yaml", {"workdir": str(workdir)})
    status = executor.run(run)

    assert status["phase"] == "Running"
    assert status["suspended"] is True
    approve = _nodes(status)["approve"]
    assert (approve["type"], approve["phase"], approve["suspended"]) == ("Suspend", "Running", True)
    assert (workdir / "notes.txt").read_text() == "built\n"

    with pytest.raises(ValidationFailed, match="cannot resume"):
        executor.resume(run, parameters={"decision": "maybe"})
    with pytest.raises(ValidationFailed):
        executor.resume(run, parameters={"unknown": "x"})
    status = executor.resume(run, parameters={"decision": "yes"}, reason="approved by ana")

    assert status["phase"] == "Succeeded"
    approve = _nodes(status)["approve"]
    assert approve["message"] == "approved by ana"
    assert _output(approve, "decision") == "yes"
    assert (workdir / "notes.txt").read_text() == "built\nyes\n"
    with pytest.raises(ConflictError):
        executor.resume(run)


def test_parallelism_of_a_template_caps_concurrent_pods(executor, workdir):
    status = _run(executor, "parallelism", workdir)

    assert status["phase"] == "Succeeded"
    spans = [
        tuple(map(float, line.split())) for line in (workdir / "spans.txt").read_text().splitlines()
    ]
    assert len(spans) == 6
    overlap = max(sum(1 for s, e in spans if s <= t < e) for t, _ in spans)
    assert overlap == 2


def test_global_parallelism_setting_runs_one_pod_at_a_time(tmp_path, workdir):
    settings = Settings(
        stack=StackSettings(home=tmp_path / "home1"), workflows=WorkflowSettings(parallelism=1)
    )
    executor = LocalExecutor(settings)
    status = executor.run(
        executor.submit(MANIFESTS / "parallelism.yaml", {"workdir": str(workdir)})
    )
    spans = [
        tuple(map(float, line.split())) for line in (workdir / "spans.txt").read_text().splitlines()
    ]
    assert status["phase"] == "Succeeded"
    assert max(sum(1 for s, e in spans if s <= t < e) for t, _ in spans) == 1


def test_unsupported_fields_are_rejected_up_front_with_their_paths(executor, settings):
    with pytest.raises(ValidationFailed) as caught:
        executor.submit(MANIFESTS / "unsupported.yaml")

    problems = caught.value.problems
    paths = {p.split(":")[0] for p in problems}
    assert paths == {
        "spec.volumes",
        "spec.templates[1].resource",
        "spec.templates[2].container.command",
        "spec.templates[3].synchronization",
        "spec.templates[3].container.volumeMounts",
        "spec.templates[3].outputs.artifacts",
    }
    assert any("entrypoint of image 'busybox' cannot run as a local process" in p for p in problems)
    assert not settings.workflows_state_dir.exists() or not any(
        settings.workflows_state_dir.iterdir()
    )


def test_undefined_references_and_bad_structure_are_rejected(executor):
    manifest = _load("dag-diamond")
    tasks = manifest["spec"]["templates"][0]["dag"]["tasks"]
    tasks[1]["arguments"]["parameters"][0]["value"] = "{{tasks.C.outputs.result}}"  # not a dep
    tasks[2]["depends"] = "A.Completed"
    tasks[3]["depends"] = "B && nope"
    manifest["spec"]["templates"][1]["container"]["args"][0] += " {{inputs.parameters.other}}"
    manifest["spec"]["templates"][1]["container"]["command"].append("{{=sprig.upper('x')}}")
    manifest["spec"]["templates"].append(
        {"name": "lonely", "daemon": True, "container": {"image": "x", "command": ["x"]}}
    )

    with pytest.raises(ValidationFailed) as caught:
        executor.validate(manifest, {"workdir": "/tmp"})
    problems = "\n".join(caught.value.problems)
    assert (
        "spec.templates[0].dag.tasks[1].arguments.parameters[0].value: task 'C' is not a dependency"
        in problems
    )
    assert "task result 'Completed' for task 'A' is not one of" in problems
    assert "depends on unknown task 'nope'" in problems
    assert "no input parameter 'other'" in problems
    assert "expression tags ({{=…}}) are not supported" in problems
    assert "spec.templates[2].daemon: daemoned steps are not supported" in problems


def test_entrypoint_and_exit_handler_inputs_must_come_from_arguments(executor):
    manifest = _load("suspend")
    manifest["spec"]["onExit"] = "note"  # needs input `text`, which no argument supplies
    with pytest.raises(ValidationFailed) as caught:
        executor.validate(manifest, {"workdir": "/tmp"})
    assert caught.value.problems == [
        "spec.onExit: template 'note' needs input 'text', which no workflow argument of that "
        "name supplies"
    ]
    # An input the entrypoint declares may be passed like `argo submit -p`.
    manifest["spec"]["onExit"] = "approve"
    manifest["spec"]["entrypoint"] = "note"
    workflow = executor.validate(manifest, {"workdir": "/tmp", "text": "hi"})
    assert {"name": "text", "value": "hi"} in workflow["spec"]["arguments"]["parameters"]


def test_dependency_cycle_and_missing_template_are_rejected(executor):
    manifest = _load("dag-diamond")
    tasks = manifest["spec"]["templates"][0]["dag"]["tasks"]
    tasks[0]["depends"] = "D"
    tasks[1]["template"] = "missing"
    with pytest.raises(ValidationFailed) as caught:
        executor.validate(manifest, {"workdir": "/tmp"})
    problems = "\n".join(caught.value.problems)
    assert "dependency cycle: A -> D -> B -> A" in problems or "dependency cycle" in problems
    assert "spec.templates[0].dag.tasks[1].template: no template named 'missing'" in problems


def test_failing_step_fails_dependents_and_the_run(executor, workdir):
    manifest = _load("dag-diamond")
    manifest["spec"]["templates"][1]["container"]["args"][0] = (
        'test "{{inputs.parameters.step}}" != B && echo ok'
    )
    status = executor.run(executor.submit(manifest, {"workdir": str(workdir)}))

    nodes = _nodes(status)
    assert status["phase"] == "Failed"
    assert nodes["B"]["phase"] == "Failed"
    assert nodes["B"]["outputs"]["exitCode"] == "1"
    assert nodes["D"]["phase"] == "Omitted"  # failFast would also have stopped it
    assert "task 'B' failed" in status["message"]


def test_a_step_that_cannot_start_is_an_error(executor, workdir):
    manifest = _load("dag-diamond")
    manifest["spec"]["templates"][1]["container"]["command"] = ["/nonexistent/tool"]
    status = executor.run(executor.submit(manifest, {"workdir": str(workdir)}))

    assert status["phase"] == "Error"
    assert "failed to start '/nonexistent/tool'" in _nodes(status)["A"]["message"]


def test_status_list_and_logs(executor, workdir):
    status = _run(executor, "dag-diamond", workdir)
    name = status["name"]

    assert [r["name"] for r in executor.list()] == [name]
    assert executor.list()[0]["phase"] == "Succeeded"
    assert executor.logs(name, "A").strip() == f"pod {_nodes(status)['A']['podName']} of {name}"
    everything = executor.logs(name)
    assert everything.count("--- ") == 4
    with pytest.raises(NotFoundError):
        executor.logs(name, "Z")
    with pytest.raises(NotFoundError):
        executor.status("no-such-run")


def test_secrets_and_working_dir_and_env_references(tmp_path, workdir):
    secrets = tmp_path / "secrets" / "s3-credentials"
    secrets.mkdir(parents=True)
    (secrets / "access-key").write_text("AKIA-LOCAL")
    package = tmp_path / "package"
    package.mkdir()
    settings = Settings(
        stack=StackSettings(home=tmp_path / "home"),
        workflows=WorkflowSettings(
            secrets_dir=tmp_path / "secrets", path_map={"/opt/package": str(package)}
        ),
    )
    manifest = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Workflow",
        "metadata": {"name": "env-check"},
        "spec": {
            "entrypoint": "main",
            "templates": [
                {
                    "name": "main",
                    "container": {
                        "image": "ghcr.io/example/package:1",
                        "command": ["sh", "-c", 'echo "$(KEY_COPY) $(pwd)" > /opt/package/out.txt'],
                        "workingDir": "/opt/package",
                        "env": [
                            {
                                "name": "KEY",
                                "valueFrom": {
                                    "secretKeyRef": {"name": "s3-credentials", "key": "access-key"}
                                },
                            },
                            {"name": "KEY_COPY", "value": "$(KEY)"},
                        ],
                        "resources": {"limits": {"nvidia.com/gpu": "1"}},
                    },
                    "nodeSelector": {"accelerator": "gpu"},
                }
            ],
        },
    }
    for version in ArgoSchema().versions:
        assert ArgoSchema().problems(manifest, version) == []
    executor = LocalExecutor(settings)
    status = executor.run(executor.submit(manifest))

    assert status["phase"] == "Succeeded", status["nodes"]
    assert (package / "out.txt").read_text() == f"AKIA-LOCAL {package}\n"
    with pytest.raises(ConflictError):
        executor.submit(manifest)  # metadata.name is taken

    missing = copy.deepcopy(manifest)
    missing["metadata"]["name"] = "env-check-2"
    missing["spec"]["templates"][0]["container"]["env"][0]["valueFrom"]["secretKeyRef"]["key"] = (
        "nope"
    )
    status = executor.run(executor.submit(missing))
    assert status["phase"] == "Error"
    assert "secret 's3-credentials' key 'nope'" in status["nodes"][0]["message"]


@pytest.mark.parametrize("path", sorted(MANIFESTS.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_test_manifest_is_valid_argo_for_both_schema_versions(path):
    schema = ArgoSchema()
    assert set(schema.versions) >= {"4.1.2", "3.7.18"}
    manifest = yaml.safe_load(path.read_text())
    for version in ("4.1.2", "3.7.18"):
        assert schema.problems(manifest, version) == [], (path.name, version)


def test_schema_validation_names_the_offending_field():
    manifest = _load("retry")
    manifest["spec"]["templates"][0]["retryStrategy"]["limit"] = 4  # IntOrString is typed string
    manifest["spec"]["templates"][0]["parallelism"] = "two"
    schema = ArgoSchema()
    problems = schema.problems(manifest, "3.7.18")
    assert problems == [
        "spec.templates[0].parallelism: 'two' is not of type 'integer'",
        "spec.templates[0].retryStrategy.limit: 4 is not of type 'string'",
    ]
    with pytest.raises(ValidationFailed) as caught:
        schema.validate(manifest)
    assert len(caught.value.problems) == 4  # two per version
    # A WorkflowTemplate validates against its own kind (the root oneOf would fail it).
    assert schema.problems(_load("parameters"), "4.1.2") == []
