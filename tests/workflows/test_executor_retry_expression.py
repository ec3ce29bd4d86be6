"""``retryStrategy.expression`` and termination messages in the local executor, as in Argo.

A failure that retrying cannot fix (the step exits with the code its template names) ends
its retry node after one attempt, with Argo's message; any other failure is retried up to
the limit. What the container wrote to its ``terminationMessagePath`` is the pod's message.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from geomlops.settings import Settings, StackSettings, WorkflowSettings
from geomlops.workflows.executor import LocalExecutor
from geomlops.workflows.executor.expressions import ExpressionError
from geomlops.workflows.executor.retry_expression import (
    EXPRESSION_FALSE,
    parse_retry_expression,
    retry_scope,
)
from geomlops.workflows.executor.timing import RetryPlan

MANIFEST = Path(__file__).parent / "manifests" / "retry-expression.yaml"


def _scope(code: str | None = "65", phase: str = "Failed", message: str = "") -> dict[str, str]:
    return retry_scope(exit_code=code, phase=phase, seconds=2.0, message=message, attempt=1)


@pytest.mark.parametrize(
    ("expression", "scope", "expected"),
    [
        ("asInt(lastRetry.exitCode) != 65", _scope("65"), False),
        ("asInt(lastRetry.exitCode) != 65", _scope("1"), True),
        ("asInt(lastRetry.exitCode) != 65", _scope(None), True),  # unknown: "-1"
        ('lastRetry.exitCode != "65"', _scope("65"), False),
        ("lastRetry.exitCode == 65", _scope("65"), False),  # a string is not a number
        ('lastRetry.status == "Error" || asInt(lastRetry.exitCode) > 1', _scope("2"), True),
        ("!(lastRetry.status == 'Failed') and retries == '1'", _scope(), False),
        ("not (asFloat(lastRetry.duration) >= 2.5)", _scope(), True),
        ('lastRetry.duration == "2"', _scope(), True),  # Go prints 2.0 seconds as "2"
        ('lastRetry.message contains "transient"', _scope(message="a transient blip"), True),
        ('lastRetry.message matches "^no scene"', _scope(message="no scene found"), True),
        ("string(asInt(retries)) == retries && -1 < 0", _scope(), True),
    ],
)
def test_retry_expression_values(expression: str, scope: dict[str, str], expected: bool) -> None:
    assert parse_retry_expression(expression).evaluate(scope) is expected


@pytest.mark.parametrize(
    ("expression", "why"),
    [
        ("lastRetry.exitcode != 1", "unknown name 'lastRetry.exitcode'"),
        ("exec(lastRetry.message)", "unknown function 'exec'"),
        ("asInt(lastRetry.exitCode) + 1 > 2", "unexpected '+ 1 > 2'"),
        ("(retries == '1'", "missing ')'"),
        ("", "it is empty"),
    ],
)
def test_retry_expression_rejects_what_it_cannot_evaluate(expression: str, why: str) -> None:
    with pytest.raises(ExpressionError, match=r"retryStrategy\.expression") as caught:
        parse_retry_expression(expression)
    assert why in caught.value.message


@pytest.mark.parametrize(
    ("expression", "scope"),
    [
        ("asInt(lastRetry.message) > 1", _scope(message="oops")),
        ("lastRetry.exitCode < 2", _scope()),
        ("retries", _scope()),
    ],
)
def test_retry_expression_type_errors_name_it(expression: str, scope: dict[str, str]) -> None:
    with pytest.raises(ExpressionError, match=r"retryStrategy\.expression"):
        parse_retry_expression(expression).evaluate(scope)


def test_an_expression_without_a_policy_decides_alone() -> None:
    """Argo >= 3.5: the default policy is Always when an expression is given."""
    plan = RetryPlan.parse({"limit": "2", "expression": "true"}, field="t")
    assert plan.policy == "Always" and plan.retries_phase("Error", "")
    assert RetryPlan.parse({"limit": "2"}, field="t").policy == "OnFailure"


@pytest.fixture
def executor(tmp_path: Path) -> LocalExecutor:
    settings = Settings(
        stack=StackSettings(home=tmp_path / "home"),
        workflows=WorkflowSettings(
            parallelism=2, path_map={"/outputs": "{pod_dir}/outputs"}, poll_interval=0.05
        ),
    )
    return LocalExecutor(settings)


def _run(executor: LocalExecutor, workdir: Path, code: str) -> dict:
    workdir.mkdir()
    return executor.run(executor.submit(MANIFEST, {"workdir": str(workdir), "code": code}))


def test_a_permanent_failure_is_tried_once_and_says_why(executor, tmp_path):
    status = _run(executor, tmp_path / "work", "65")

    assert status["phase"] == "Failed"
    assert (tmp_path / "work" / "tries.txt").read_text() == "try\n"  # one attempt, not four
    retry = next(n for n in status["nodes"] if n["type"] == "Retry")
    pods = [n for n in status["nodes"] if n["type"] == "Pod"]
    assert retry["phase"] == "Failed" and retry["message"] == EXPRESSION_FALSE
    assert [p["message"] for p in pods] == ["Error (exit code 65): no scene intersects the AOI"]


def test_any_other_failure_is_retried_to_the_limit(executor, tmp_path):
    status = _run(executor, tmp_path / "work", "1")

    assert status["phase"] == "Failed"
    assert (tmp_path / "work" / "tries.txt").read_text() == "try\n" * 4  # 1 + limit 3
    retry = next(n for n in status["nodes"] if n["type"] == "Retry")
    assert retry["message"].startswith("No more retries left")


def test_a_bad_expression_is_refused_at_submission(executor, tmp_path):
    import yaml

    manifest = yaml.safe_load(MANIFEST.read_text())
    manifest["spec"]["templates"][0]["retryStrategy"]["expression"] = "lastRetry.code != 1"
    with pytest.raises(Exception, match=r"retryStrategy\.expression.*unknown name"):
        executor.submit(manifest, {"workdir": str(tmp_path), "code": "1"})
