"""Durations as Argo writes them, and the retry/backoff decision built on them."""

from __future__ import annotations

import re
from dataclasses import dataclass

from geomlops.workflows.executor.expressions import ExpressionError
from geomlops.workflows.executor.retry_expression import RetryExpression, parse_retry_expression

_GO_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_GO_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")


def parse_duration(text: str | int | float, *, field: str) -> float:
    """Seconds from an Argo duration: a bare number of seconds or a Go duration ("1m30s")."""
    if isinstance(text, int | float) and not isinstance(text, bool):
        return float(text)
    value = str(text).strip()
    if re.fullmatch(r"\d+(?:\.\d+)?", value):
        return float(value)
    position, total = 0, 0.0
    for match in _GO_PART.finditer(value):
        if match.start() != position:
            break
        total += float(match.group(1)) * _GO_UNITS[match.group(2)]
        position = match.end()
    if position != len(value) or not value:
        raise ExpressionError(
            f"{field}: {text!r} is not a duration",
            hint='use seconds ("30") or a Go duration ("500ms", "2m", "1h30m")',
        )
    return total


def parse_int(value: str | int, *, field: str) -> int:
    """An int-or-string field (Argo's IntOrString, which the JSON schema types as string)."""
    if isinstance(value, bool):
        raise ExpressionError(f"{field}: {value!r} is not an integer")
    try:
        return int(str(value).strip())
    except ValueError:
        raise ExpressionError(f"{field}: {value!r} is not an integer") from None


RETRY_POLICIES = ("Always", "OnFailure", "OnError", "OnTransientError")


@dataclass(frozen=True)
class RetryPlan:
    """A template's ``retryStrategy`` with its strings already substituted and parsed."""

    limit: int | None
    policy: str
    backoff_duration: float
    backoff_factor: float
    backoff_cap: float | None
    max_duration: float | None
    expression: RetryExpression | None = None
    """``retryStrategy.expression``: checked once the backoff has passed, as Argo does."""

    @classmethod
    def parse(cls, strategy: dict, *, field: str) -> RetryPlan:
        """Read ``strategy`` (already substituted); errors name ``field``."""
        limit = strategy.get("limit")
        text = strategy.get("expression") or ""
        # Argo >= 3.5: with an expression and no policy, only the expression decides.
        policy = strategy.get("retryPolicy") or ("Always" if text else "OnFailure")
        if policy not in RETRY_POLICIES:
            raise ExpressionError(
                f"{field}.retryPolicy: {policy!r} is not one of {', '.join(RETRY_POLICIES)}"
            )
        backoff = strategy.get("backoff") or {}
        factor = backoff.get("factor")
        return cls(
            limit=None if limit is None else parse_int(limit, field=f"{field}.limit"),
            policy=policy,
            backoff_duration=parse_duration(backoff["duration"], field=f"{field}.backoff.duration")
            if backoff.get("duration") is not None
            else 0.0,
            backoff_factor=float(parse_int(factor, field=f"{field}.backoff.factor"))
            if factor is not None
            else 1.0,
            backoff_cap=parse_duration(backoff["cap"], field=f"{field}.backoff.cap")
            if backoff.get("cap") is not None
            else None,
            max_duration=parse_duration(
                backoff["maxDuration"], field=f"{field}.backoff.maxDuration"
            )
            if backoff.get("maxDuration") is not None
            else None,
            expression=parse_retry_expression(text) if text else None,
        )

    def retries_phase(self, phase: str, message: str) -> bool:
        """Whether an attempt that ended in ``phase`` is one this policy retries."""
        if self.policy == "Always":
            return phase in ("Failed", "Error")
        if self.policy == "OnFailure":
            return phase == "Failed"
        if self.policy == "OnError":
            return phase == "Error"
        # OnTransientError: locally, only an executor error that says it was transient.
        return phase == "Error" and "transient" in message.lower()

    def delay_before(self, attempt: int) -> float:
        """Seconds to wait before attempt number ``attempt`` (1 = the first retry)."""
        if self.backoff_duration <= 0:
            return 0.0
        delay = self.backoff_duration * self.backoff_factor ** (attempt - 1)
        return min(delay, self.backoff_cap) if self.backoff_cap is not None else delay
