"""The expression languages the executor evaluates: templating, `when`, `depends`, durations."""

from __future__ import annotations

import pytest

from geomlops.workflows.executor.expressions import (
    ExpressionError,
    dependencies_as_depends,
    depends_tasks,
    evaluate_depends,
    evaluate_when,
    item_scope,
    parse_depends,
    substitute,
    substitute_all,
)
from geomlops.workflows.executor.paths import PathMapper, expand_k8s_vars
from geomlops.workflows.executor.timing import RetryPlan, parse_duration


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("heads == heads", True),
        ("heads == tails", False),
        ("heads != tails", True),
        ("'a b' == \"a b\"", True),
        ("7 > 5", True),
        ("7 > 50", False),
        ("7.0 == 7", True),
        ("-1 < 0", True),
        ("'7' == 7", False),  # a string is never equal to a number (govaluate)
        ("abc < abd", True),
        ("true && !false", True),
        ("(1 == 2 || 2 == 2) && 3 >= 3", True),
        ("1 == 2 || 2 == 2 && 1 == 2", False),  # && binds tighter than ||
        ("!(1 == 1)", False),
        ("tile-3.tif =~ 'tif$'", None),  # '-' is not part of a bare word: an error
        ("'tile-3.tif' =~ 'tif$'", True),
        ("'tile-3.tif' !~ '^x'", True),
        ("", True),
        ("   ", True),
    ],
)
def test_when(expression, expected):
    if expected is None:
        with pytest.raises(ExpressionError):
            evaluate_when(expression)
    else:
        assert evaluate_when(expression) is expected


@pytest.mark.parametrize(
    "expression",
    ["5", "heads", "1 == ", "(1 == 1", "1 == 1)", "1 + 1 == 2", "a == b c", "1 < 'a'", "1 && true"],
)
def test_when_rejects_what_it_cannot_evaluate(expression):
    with pytest.raises(ExpressionError, match="when"):
        evaluate_when(expression)


def test_substitution_resolves_or_fails_loudly():
    scope = {"inputs.parameters.x": "1", "item": "a"}
    assert substitute("x={{inputs.parameters.x}} {{ item }}", scope) == "x=1 a"
    assert substitute("no tags", {}) == "no tags"
    assert substitute_all({"a": ["{{item}}", 3]}, scope) == {"a": ["a", 3]}
    with pytest.raises(ExpressionError, match=r"unable to resolve \{\{tasks.a.outputs.result\}\}"):
        substitute("{{tasks.a.outputs.result}}", scope)


def test_item_scope_for_scalars_and_maps():
    assert item_scope("x") == {"item": "x"}
    assert item_scope(3) == {"item": "3"}
    assert item_scope({"name": "t1", "size": 2, "ok": True}) == {
        "item": '{"name":"t1","size":2,"ok":true}',
        "item.name": "t1",
        "item.size": "2",
        "item.ok": "true",
    }


def test_depends_parsing_and_evaluation():
    tree = parse_depends("(a && b.Failed) || !c-d.Skipped")
    assert depends_tasks(tree) == {"a", "b", "c-d"}
    phases = {"a": "Succeeded", "b": "Failed", "c-d": "Skipped"}

    def result_of(task, result):
        return phases[task] == result

    assert evaluate_depends(tree, result_of) is True
    phases["b"] = "Succeeded"
    assert evaluate_depends(tree, result_of) is False
    phases["a"] = "Skipped"  # a bare name accepts Skipped
    phases["b"] = "Failed"
    assert evaluate_depends(tree, result_of) is True
    for bad in ("a.Completed", "a &&", "(a", "a b", "a & b"):
        with pytest.raises(ExpressionError):
            parse_depends(bad)


def test_legacy_dependencies_honour_continue_on():
    text = dependencies_as_depends(["a", "b"], {"b": {"failed": True}})
    assert text == (
        "(a.Succeeded || a.Skipped || a.Daemoned) && "
        "(b.Succeeded || b.Skipped || b.Daemoned || b.Failed)"
    )


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30", 30.0), (5, 5.0), ("1.5", 1.5), ("500ms", 0.5), ("2m", 120.0), ("1h30m", 5400.0)],
)
def test_durations(text, seconds):
    assert parse_duration(text, field="x") == seconds


@pytest.mark.parametrize("text", ["", "1d", "fast", "1m-", "m1"])
def test_bad_durations_name_the_field(text):
    with pytest.raises(ExpressionError, match=r"backoff\.duration"):
        parse_duration(text, field="backoff.duration")


def test_retry_plan():
    plan = RetryPlan.parse(
        {"limit": "3", "backoff": {"duration": "1", "factor": "2", "cap": "3"}}, field="t"
    )
    assert (plan.limit, plan.policy) == (3, "OnFailure")
    assert [plan.delay_before(n) for n in (1, 2, 3)] == [1.0, 2.0, 3.0]
    assert plan.retries_phase("Failed", "") and not plan.retries_phase("Error", "")
    always = RetryPlan.parse({"retryPolicy": "Always"}, field="t")
    assert always.limit is None and always.retries_phase("Error", "")
    with pytest.raises(ExpressionError, match=r"t\.limit"):
        RetryPlan.parse({"limit": "many"}, field="t")
    with pytest.raises(ExpressionError, match="retryPolicy"):
        RetryPlan.parse({"retryPolicy": "Sometimes"}, field="t")


def test_path_mapping_only_at_path_boundaries(tmp_path):
    mapper = PathMapper(
        {"/outputs": "{pod_dir}/out", "/opt/pkg/": str(tmp_path)},
        pod_dir=tmp_path / "pod",
        run_dir=tmp_path,
    )
    assert mapper.map("/outputs/a.txt") == f"{tmp_path}/pod/out/a.txt"
    assert mapper.map("--dir=/outputs") == f"--dir={tmp_path}/pod/out"
    assert mapper.map("cd /opt/pkg && ls") == f"cd {tmp_path} && ls"
    assert (
        mapper.map("/outputs2/x /data/outputs x/outputs") == "/outputs2/x /data/outputs x/outputs"
    )
    mapper.make_dirs()
    assert (tmp_path / "pod" / "out").is_dir()


def test_kubernetes_variable_expansion():
    env = {"A": "1"}
    assert expand_k8s_vars("$(A)-$(B)-$$(A)-$HOME", env) == "1-$(B)-$(A)-$HOME"
