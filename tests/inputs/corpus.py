"""The bad-input corpus's one judgement: was a case refused clearly, or not?

Every case hands a callable to :func:`expect_refusal` (or an HTTP answer to
:func:`expect_http_refusal`). The outcome is one of

- ``clear``: refused with the platform's own error (or a 4xx with a JSON ``description``)
  whose text names every fragment the case expects (what is wrong and where);
- ``unclear``: refused, but the message does not say what or where;
- ``crash``: any other exception (a traceback for the user) or a 5xx;
- ``accepted``: no error at all.

Only ``clear`` passes. Outcomes are tallied per test id and printed at the end of the run by
``conftest.py`` in the form the issue asks for: tried / clear errors / crashes / wrongly
accepted.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import pytest

from geomlops.errors import GeomlopsError, ValidationFailed

OUTCOMES: dict[str, str] = {}
"""test id -> outcome, for the summary."""


def _text(error: BaseException) -> str:
    parts = [str(error)]
    if isinstance(error, ValidationFailed):
        parts += error.problems
    return "\n".join(parts)


def _judge(nodeid: str, outcome: str, detail: str) -> None:
    OUTCOMES[nodeid] = outcome
    if outcome != "clear":
        pytest.fail(f"{outcome}: {detail}", pytrace=False)


def expect_refusal(
    request: pytest.FixtureRequest,
    action: Callable[[], Any],
    names: Iterable[str],
    errors: tuple[type[BaseException], ...] = (GeomlopsError,),
) -> str:
    """Run ``action``; it must raise one of ``errors`` naming every one of ``names``."""
    nodeid = request.node.nodeid
    try:
        result = action()
    except errors as error:
        text = _text(error)
        missing = [n for n in names if n.lower() not in text.lower()]
        if missing:
            _judge(nodeid, "unclear", f"message lacks {missing}: {text}")
        OUTCOMES[nodeid] = "clear"
        return text
    except Exception as error:  # anything else is a crash: a traceback for the user
        _judge(nodeid, "crash", f"{type(error).__name__}: {error}")
        raise AssertionError("unreachable") from error
    _judge(nodeid, "accepted", f"no error; got {result!r:.200}")
    raise AssertionError("unreachable")


def expect_http_refusal(
    request: pytest.FixtureRequest, status: int, body: Any, names: Iterable[str]
) -> str:
    """An HTTP answer must be a 4xx whose JSON ``description`` (and problems) name ``names``."""
    nodeid = request.node.nodeid
    if status >= 500:
        _judge(nodeid, "crash", f"{status}: {body!r:.300}")
    if status < 400:
        _judge(nodeid, "accepted", f"{status}: {body!r:.300}")
    if not isinstance(body, dict) or not body.get("description"):
        _judge(nodeid, "unclear", f"{status} without a description: {body!r:.300}")
    text = "\n".join([str(body.get("description")), *map(str, body.get("problems") or [])])
    missing = [n for n in names if n.lower() not in text.lower()]
    if missing:
        _judge(nodeid, "unclear", f"{status}: description lacks {missing}: {text}")
    OUTCOMES[nodeid] = "clear"
    return text


def summary() -> str | None:
    """``tried / clear errors / unclear / crashes / wrongly accepted``, or None if none ran."""
    if not OUTCOMES:
        return None
    counts = {k: sum(1 for v in OUTCOMES.values() if v == k) for k in
              ("clear", "unclear", "crash", "accepted")}  # fmt: skip
    return (
        f"bad-input corpus: {len(OUTCOMES)} tried / {counts['clear']} clear errors / "
        f"{counts['unclear']} unclear / {counts['crash']} crashes / "
        f"{counts['accepted']} wrongly accepted"
    )


class CliRefused(GeomlopsError):
    """The CLI exited 1 or 2 with a message: a refusal, judged by its output."""


def run_cli(args: list[str]) -> Any:
    """Run ``geomlops ARGS`` in-process; raise CliRefused with its output when it refuses.

    An exception the CLI did not turn into a message (a traceback) propagates as itself,
    so :func:`expect_refusal` counts it as a crash.
    """
    from typer.testing import CliRunner

    from geomlops.cli.main import app

    result = CliRunner().invoke(app, args)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    if result.exit_code in (1, 2):
        raise CliRefused(result.output)
    return result.output
