"""The three small languages an Argo manifest embeds, evaluated without ``eval()``.

* ``{{name}}`` templating: a tag is replaced by a value from a flat scope. An unknown tag is
  an error, never left in place, because a literal ``{{tasks.a.outputs.result}}`` reaching a
  command line would run the wrong thing quietly.
* ``when``: Argo evaluates the *substituted* string with govaluate after turning every bare
  word into a string literal, so ``heads == heads`` is true without quotes. Supported here:
  ``== != < > <= >= =~ !~ && || !``, parentheses, numbers, quoted strings, ``true``/``false``
  and bare words. Anything else (arithmetic, ternaries, ``in``) is rejected with the
  expression named rather than guessed at.
* ``depends``: task names with an optional ``.Result`` joined by ``&& || !`` and parentheses.
  A bare name means ``(T.Succeeded || T.Skipped || T.Daemoned)``, as in Argo.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from geomlops.errors import GeomlopsError


class ExpressionError(GeomlopsError):
    """A template tag, ``when`` or ``depends`` expression cannot be parsed or evaluated."""


# --- {{ }} templating -------------------------------------------------------------------

TAG = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)


def tags_in(text: str) -> Iterator[str]:
    """The trimmed names of every ``{{…}}`` tag in ``text`` (Argo trims spaces in tags)."""
    for match in TAG.finditer(text):
        yield match.group(1).strip()


def substitute(text: str, scope: Mapping[str, str]) -> str:
    """Replace every tag in ``text`` from ``scope``; an unresolvable tag raises."""
    if "{{" not in text:
        return text

    def replace(match: re.Match[str]) -> str:
        name = match.group(1).strip()
        try:
            return scope[name]
        except KeyError:
            raise ExpressionError(f"unable to resolve {{{{{name}}}}}") from None

    return TAG.sub(replace, text)


def substitute_all(value: Any, scope: Mapping[str, str]) -> Any:
    """:func:`substitute` applied to every string inside nested lists and dicts."""
    if isinstance(value, str):
        return substitute(value, scope)
    if isinstance(value, list):
        return [substitute_all(item, scope) for item in value]
    if isinstance(value, dict):
        return {key: substitute_all(item, scope) for key, item in value.items()}
    return value


def item_scope(item: Any) -> dict[str, str]:
    """The ``{{item}}`` / ``{{item.key}}`` tags one ``withItems``/``withParam`` item defines."""
    scope = {"item": as_parameter(item)}
    if isinstance(item, dict):
        for key, value in item.items():
            scope[f"item.{key}"] = as_parameter(value)
    return scope


def as_parameter(value: Any) -> str:
    """A value as Argo renders it into a parameter: strings as-is, the rest as JSON."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return json.dumps(value, separators=(",", ":"))


# --- when -------------------------------------------------------------------------------

_WHEN_TOKEN = re.compile(
    r"""\s*(?:
        (?P<number>\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)
      | (?P<string>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
      | (?P<op>==|!=|<=|>=|=~|!~|&&|\|\||[<>!()-])
      | (?P<word>[A-Za-z_][A-Za-z0-9_.]*)
    )""",
    re.VERBOSE,
)


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # number, string, op, word, end
    text: str


def _tokenize_when(expression: str) -> list[_Token]:
    tokens: list[_Token] = []
    position = 0
    stripped_end = len(expression.rstrip())
    while position < stripped_end:
        match = _WHEN_TOKEN.match(expression, position)
        if match is None or match.end() == position:
            raise ExpressionError(
                f"invalid 'when' expression {expression!r}: unexpected {expression[position:]!r}",
                hint="wrap values with spaces or symbols in quotes, e.g. '{{inputs.parameters.x}}'",
            )
        kind = match.lastgroup or "op"
        tokens.append(_Token(kind, match.group(kind)))
        position = match.end()
    tokens.append(_Token("end", ""))
    return tokens


class _WhenParser:
    """Recursive descent: or → and → not → comparison → operand (govaluate's precedence)."""

    _COMPARATORS = ("==", "!=", "<", ">", "<=", ">=", "=~", "!~")

    def __init__(self, expression: str) -> None:
        self.expression = expression
        self.tokens = _tokenize_when(expression)
        self.position = 0

    def fail(self, why: str) -> ExpressionError:
        return ExpressionError(f"invalid 'when' expression {self.expression!r}: {why}")

    def peek(self) -> _Token:
        return self.tokens[self.position]

    def take(self) -> _Token:
        token = self.tokens[self.position]
        self.position += 1
        return token

    def parse(self) -> Any:
        value = self.parse_or()
        if self.peek().kind != "end":
            raise self.fail(f"unexpected {self.peek().text!r}")
        return value

    def parse_or(self) -> Any:
        left = self.parse_and()
        while self.peek().text == "||" and self.peek().kind == "op":
            self.take()
            right = self.parse_and()
            left = self.boolean(left, "||") or self.boolean(right, "||")
        return left

    def parse_and(self) -> Any:
        left = self.parse_not()
        while self.peek().text == "&&" and self.peek().kind == "op":
            self.take()
            right = self.parse_not()
            left = self.boolean(left, "&&") and self.boolean(right, "&&")
        return left

    def parse_not(self) -> Any:
        if self.peek().kind == "op" and self.peek().text == "!":
            self.take()
            return not self.boolean(self.parse_not(), "!")
        return self.parse_comparison()

    def parse_comparison(self) -> Any:
        left = self.parse_operand()
        token = self.peek()
        if token.kind == "op" and token.text in self._COMPARATORS:
            self.take()
            right = self.parse_operand()
            return self.compare(left, token.text, right)
        return left

    def parse_operand(self) -> Any:
        token = self.take()
        if token.kind == "op" and token.text == "(":
            value = self.parse_or()
            if self.take().text != ")":
                raise self.fail("missing ')'")
            return value
        if token.kind == "op" and token.text == "-" and self.peek().kind == "number":
            return -float(self.take().text)
        if token.kind == "number":
            return float(token.text)
        if token.kind == "string":
            return _unquote(token.text)
        if token.kind == "word":
            if token.text in ("true", "false"):
                return token.text == "true"
            return token.text  # govaluate variables become strings in Argo
        if token.kind == "end":
            raise self.fail("ends where a value was expected")
        raise self.fail(f"operator {token.text!r} is not supported here")

    def boolean(self, value: Any, operator: str) -> bool:
        if not isinstance(value, bool):
            raise self.fail(f"{operator!r} needs true/false operands, got {value!r}")
        return value

    def compare(self, left: Any, operator: str, right: Any) -> bool:
        if operator == "==":
            return type(left) is type(right) and left == right
        if operator == "!=":
            return not (type(left) is type(right) and left == right)
        if operator in ("=~", "!~"):
            if not (isinstance(left, str) and isinstance(right, str)):
                raise self.fail(f"{operator!r} needs a string and a pattern")
            found = re.search(right, left) is not None
            return found if operator == "=~" else not found
        comparable = (isinstance(left, float) and isinstance(right, float)) or (
            isinstance(left, str) and isinstance(right, str)
        )
        if not comparable:
            raise self.fail(f"cannot compare {left!r} {operator} {right!r}")
        return {
            "<": left < right,
            ">": left > right,
            "<=": left <= right,
            ">=": left >= right,
        }[operator]


def _unquote(literal: str) -> str:
    body = literal[1:-1]
    return re.sub(r"\\(.)", r"\1", body)


def evaluate_when(expression: str) -> bool:
    """Evaluate an already substituted ``when`` expression; an empty one is true."""
    if not expression.strip():
        return True
    value = _WhenParser(expression).parse()
    if not isinstance(value, bool):
        raise ExpressionError(f"'when' expression {expression!r} gave {value!r}, not true/false")
    return value


# --- depends ----------------------------------------------------------------------------

TASK_RESULTS = (
    "Succeeded",
    "Failed",
    "Errored",
    "Skipped",
    "Omitted",
    "Daemoned",
    "AnySucceeded",
    "AllFailed",
)
"""The results Argo accepts after a task name in ``depends`` (v3.7 and v4.1 alike)."""

_DEPENDS_TOKEN = re.compile(
    r"\s*(?:(?P<op>&&|\|\||[!()])|(?P<ref>[A-Za-z0-9][-A-Za-z0-9]*(?:\.[A-Za-z]+)?))"
)

DependsNode = tuple[Any, ...]
"""Parsed ``depends``: ("ref", task, result|None) | ("not", x) | ("and"|"or", a, b)."""


def parse_depends(expression: str) -> DependsNode:
    """Parse a ``depends`` expression; unknown results are rejected as Argo rejects them."""
    tokens: list[tuple[str, str]] = []
    position = 0
    stripped_end = len(expression.rstrip())
    while position < stripped_end:
        match = _DEPENDS_TOKEN.match(expression, position)
        if match is None:
            raise ExpressionError(
                f"invalid depends {expression!r}: unexpected {expression[position:]!r}"
            )
        kind = match.lastgroup or "op"
        tokens.append((kind, match.group(kind)))
        position = match.end()
    tokens.append(("end", ""))
    index = 0

    def peek() -> tuple[str, str]:
        return tokens[index]

    def take() -> tuple[str, str]:
        nonlocal index
        index += 1
        return tokens[index - 1]

    def parse_or() -> DependsNode:
        left = parse_and()
        while peek() == ("op", "||"):
            take()
            left = ("or", left, parse_and())
        return left

    def parse_and() -> DependsNode:
        left = parse_unary()
        while peek() == ("op", "&&"):
            take()
            left = ("and", left, parse_unary())
        return left

    def parse_unary() -> DependsNode:
        kind, text = take()
        if (kind, text) == ("op", "!"):
            return ("not", parse_unary())
        if (kind, text) == ("op", "("):
            inner = parse_or()
            if take() != ("op", ")"):
                raise ExpressionError(f"invalid depends {expression!r}: missing ')'")
            return inner
        if kind == "ref":
            task, _, result = text.partition(".")
            if result and result not in TASK_RESULTS:
                raise ExpressionError(
                    f"invalid depends {expression!r}: task result '{result}' for task "
                    f"'{task}' is not one of {', '.join(TASK_RESULTS)}"
                )
            return ("ref", task, result or None)
        raise ExpressionError(f"invalid depends {expression!r}: unexpected {text or 'end'!r}")

    tree = parse_or()
    if peek()[0] != "end":
        raise ExpressionError(f"invalid depends {expression!r}: unexpected {peek()[1]!r}")
    return tree


def depends_tasks(tree: DependsNode) -> set[str]:
    """The task names a parsed ``depends`` refers to."""
    if tree[0] == "ref":
        return {tree[1]}
    return set().union(*(depends_tasks(child) for child in tree[1:]))


def depends_results(tree: DependsNode) -> set[tuple[str, str | None]]:
    """Every ``(task, result)`` pair a parsed ``depends`` mentions (result None = bare)."""
    if tree[0] == "ref":
        return {(tree[1], tree[2])}
    return set().union(*(depends_results(child) for child in tree[1:]))


def evaluate_depends(tree: DependsNode, result_of: Callable[[str, str], bool]) -> bool:
    """Evaluate a parsed ``depends``; ``result_of(task, result)`` answers one reference."""
    kind = tree[0]
    if kind == "ref":
        _, task, result = tree
        if result is None:
            return any(result_of(task, name) for name in ("Succeeded", "Skipped", "Daemoned"))
        return result_of(task, result)
    if kind == "not":
        return not evaluate_depends(tree[1], result_of)
    if kind == "and":
        return evaluate_depends(tree[1], result_of) and evaluate_depends(tree[2], result_of)
    return evaluate_depends(tree[1], result_of) or evaluate_depends(tree[2], result_of)


def dependencies_as_depends(names: list[str], continue_on: Mapping[str, Mapping[str, Any]]) -> str:
    """Argo's rewrite of legacy ``dependencies`` into ``depends``, honouring ``continueOn``."""
    clauses = []
    for name in names:
        results = [f"{name}.Succeeded", f"{name}.Skipped", f"{name}.Daemoned"]
        allowed = continue_on.get(name) or {}
        if allowed.get("error"):
            results.append(f"{name}.Errored")
        if allowed.get("failed"):
            results.append(f"{name}.Failed")
        clauses.append("(" + " || ".join(results) + ")")
    return " && ".join(clauses)
