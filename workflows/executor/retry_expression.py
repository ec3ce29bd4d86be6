"""``retryStrategy.expression``: whether a failed attempt is tried again, as Argo decides it.

Argo evaluates the expression with expr-lang after each failed attempt, in a scope of
strings: ``lastRetry.exitCode`` ("-1" when unknown), ``lastRetry.status`` (the attempt's
phase), ``lastRetry.duration`` (seconds), ``lastRetry.message`` and ``retries`` (the last
attempt's number). False means no more attempts; the retry node then takes the attempt's
phase with the message ``retryStrategy.expression evaluated to false``.

Evaluated here without ``eval()``, for the subset a retry condition needs: string and
number literals, ``true``/``false``/``nil``, those names, the Argo functions ``asInt``,
``asFloat`` and ``string``, ``== != < > <= >=``, ``contains startsWith endsWith matches``,
``&& and || or ! not``, unary minus and parentheses. Types follow expr-lang: ``"3" == 3``
is false (a string is not a number), ordering a string against a number is an error,
``asInt("x")`` is an error. Anything else is rejected with the expression named, at
submission (:func:`parse_retry_expression`) rather than after a pod has failed.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from geomlops.workflows.executor.expressions import ExpressionError

RETRY_NAMES = (
    "lastRetry.exitCode",
    "lastRetry.status",
    "lastRetry.duration",
    "lastRetry.message",
    "retries",
)
"""The names Argo defines for a retry expression (all strings)."""

EXPRESSION_FALSE = "retryStrategy.expression evaluated to false"
"""The retry node's message when the expression stops the retries (Argo's words)."""

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<number>\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)
      | (?P<string>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
      | (?P<op>==|!=|<=|>=|&&|\|\||[<>!(),-])
      | (?P<word>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)
    )""",
    re.VERBOSE,
)
_COMPARATORS = frozenset({"==", "!=", "<", ">", "<=", ">="})
_STRING_OPERATORS = frozenset({"contains", "startsWith", "endsWith", "matches"})
_CONSTANTS: dict[str, Any] = {"true": True, "false": False, "nil": None}


def _as_int(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError(f"asInt: {value!r} is not a number")
    if isinstance(value, int | float):
        return int(value)
    try:
        return int(str(value).strip())
    except ValueError:
        raise ValueError(f"asInt: {value!r} is not an integer") from None


def _as_float(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError(f"asFloat: {value!r} is not a number")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"asFloat: {value!r} is not a number") from None


def _string(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "<nil>" if value is None else str(value)


_FUNCTIONS: dict[str, Callable[[Any], Any]] = {
    "asInt": _as_int,
    "asFloat": _as_float,
    "string": _string,
}

Node = tuple[Any, ...]
"""Parsed expression: ("lit", v) | ("name", n) | ("call", f, x) | ("not", x) | ("neg", x)
| ("and"|"or", a, b) | ("cmp", op, a, b)."""


@dataclass(frozen=True)
class RetryExpression:
    """A parsed retry expression, evaluated once per failed attempt."""

    text: str
    tree: Node

    def evaluate(self, scope: Mapping[str, str]) -> bool:
        """True when another attempt may run; errors name the expression."""
        try:
            value = _evaluate(self.tree, scope)
        except (ValueError, TypeError, re.error) as error:
            raise ExpressionError(f"retryStrategy.expression {self.text!r}: {error}") from None
        if not isinstance(value, bool):
            raise ExpressionError(
                f"retryStrategy.expression {self.text!r} gave {value!r}, not true/false"
            )
        return value


def retry_scope(
    *, exit_code: str | None, phase: str, seconds: float, message: str, attempt: int
) -> dict[str, str]:
    """The names Argo gives the expression, from the last attempt (strings, as in Argo)."""
    duration = repr(float(seconds))
    return {
        "lastRetry.exitCode": exit_code if exit_code is not None else "-1",
        "lastRetry.status": phase,
        "lastRetry.duration": duration[:-2] if duration.endswith(".0") else duration,
        "lastRetry.message": message,
        "retries": str(attempt),
    }


def parse_retry_expression(text: str) -> RetryExpression:
    """Parse ``text``; unknown names, functions and operators are rejected here."""
    return RetryExpression(text, _Parser(text).parse())


class _Parser:
    """Recursive descent, expr-lang's precedence: or → and → not → comparison → operand."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = self._tokenize(text)
        self.position = 0

    def fail(self, why: str) -> ExpressionError:
        return ExpressionError(
            f"retryStrategy.expression {self.text!r}: {why}",
            hint="supported: names " + ", ".join(RETRY_NAMES) + "; asInt, asFloat, string; "
            "== != < > <= >=, contains, startsWith, endsWith, matches, && || !",
        )

    def _tokenize(self, text: str) -> list[tuple[str, str]]:
        tokens: list[tuple[str, str]] = []
        position, end = 0, len(text.rstrip())
        while position < end:
            match = _TOKEN.match(text, position)
            if match is None or match.end() == position:
                raise self.fail(f"unexpected {text[position:].strip()!r}")
            kind = match.lastgroup or "op"
            tokens.append((kind, match.group(kind)))
            position = match.end()
        tokens.append(("end", ""))
        return tokens

    def peek(self) -> tuple[str, str]:
        return self.tokens[self.position]

    def take(self) -> tuple[str, str]:
        self.position += 1
        return self.tokens[self.position - 1]

    def at(self, *texts: str) -> bool:
        kind, text = self.peek()
        return kind in ("op", "word") and text in texts

    def parse(self) -> Node:
        if self.peek()[0] == "end":
            raise self.fail("it is empty")
        tree = self.parse_or()
        if self.peek()[0] != "end":
            raise self.fail(f"unexpected {self.peek()[1]!r}")
        return tree

    def parse_or(self) -> Node:
        left = self.parse_and()
        while self.at("||", "or"):
            self.take()
            left = ("or", left, self.parse_and())
        return left

    def parse_and(self) -> Node:
        left = self.parse_not()
        while self.at("&&", "and"):
            self.take()
            left = ("and", left, self.parse_not())
        return left

    def parse_not(self) -> Node:
        if self.at("!", "not"):
            self.take()
            return ("not", self.parse_not())
        return self.parse_comparison()

    def parse_comparison(self) -> Node:
        left = self.parse_operand()
        kind, text = self.peek()
        operator = kind == "op" and text in _COMPARATORS
        if operator or (kind == "word" and text in _STRING_OPERATORS):
            self.take()
            return ("cmp", text, left, self.parse_operand())
        return left

    def parse_operand(self) -> Node:
        kind, text = self.take()
        if (kind, text) == ("op", "("):
            inner = self.parse_or()
            if self.take() != ("op", ")"):
                raise self.fail("missing ')'")
            return inner
        if (kind, text) == ("op", "-"):
            return ("neg", self.parse_operand())
        if kind == "number":
            number = float(text)
            return ("lit", int(text) if re.fullmatch(r"\d+", text) else number)
        if kind == "string":
            return ("lit", re.sub(r"\\(.)", r"\1", text[1:-1]))
        if kind == "word":
            if text in _CONSTANTS:
                return ("lit", _CONSTANTS[text])
            if self.peek() == ("op", "("):
                return self.parse_call(text)
            if text not in RETRY_NAMES:
                raise self.fail(f"unknown name {text!r}")
            return ("name", text)
        raise self.fail("ends where a value was expected" if kind == "end" else f"{text!r}")

    def parse_call(self, name: str) -> Node:
        if name not in _FUNCTIONS:
            raise self.fail(f"unknown function {name!r}")
        self.take()  # (
        argument = self.parse_or()
        if self.take() != ("op", ")"):
            raise self.fail(f"{name}() takes one argument")
        return ("call", name, argument)


def _evaluate(tree: Node, scope: Mapping[str, str]) -> Any:
    kind = tree[0]
    if kind == "lit":
        return tree[1]
    if kind == "name":
        return scope[tree[1]]
    if kind == "call":
        return _FUNCTIONS[tree[1]](_evaluate(tree[2], scope))
    if kind == "neg":
        value = _evaluate(tree[1], scope)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TypeError(f"cannot negate {value!r}")
        return -value
    if kind == "not":
        return not _boolean(_evaluate(tree[1], scope), "!")
    if kind == "and":
        return _boolean(_evaluate(tree[1], scope), "&&") and _boolean(
            _evaluate(tree[2], scope), "&&"
        )
    if kind == "or":
        return _boolean(_evaluate(tree[1], scope), "||") or _boolean(
            _evaluate(tree[2], scope), "||"
        )
    return _compare(tree[1], _evaluate(tree[2], scope), _evaluate(tree[3], scope))


def _boolean(value: Any, operator: str) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{operator!r} needs true/false operands, got {value!r}")
    return value


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _compare(operator: str, left: Any, right: Any) -> bool:
    if operator in ("==", "!="):
        same = (
            left == right
            if (_number(left) and _number(right))
            else (type(left) is type(right) and left == right)
        )
        return same if operator == "==" else not same
    if operator in _STRING_OPERATORS:
        if not (isinstance(left, str) and isinstance(right, str)):
            raise TypeError(f"{operator!r} needs strings, got {left!r} and {right!r}")
        if operator == "matches":
            return re.search(right, left) is not None
        return {
            "contains": right in left,
            "startsWith": left.startswith(right),
            "endsWith": left.endswith(right),
        }[operator]
    strings = isinstance(left, str) and isinstance(right, str)
    if not ((_number(left) and _number(right)) or strings):
        raise TypeError(f"cannot compare {left!r} {operator} {right!r}")
    return {"<": left < right, ">": left > right, "<=": left <= right, ">=": left >= right}[
        operator
    ]
