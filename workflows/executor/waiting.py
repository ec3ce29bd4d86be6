"""Retry and suspend nodes: the two kinds of node that wait on a clock or on a person.

Neither sleeps: when a node must wait (a retry's backoff, a suspend's duration) it records
the moment it may continue, in the node so that a resumed executor keeps the same
schedule, and adds it to ``timers``, which the engine's wait loop uses as its deadline.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from geomlops.workflows.executor.expressions import ExpressionError, substitute, substitute_all
from geomlops.workflows.executor.model import Node, NodePhase, now
from geomlops.workflows.executor.nodes import Ctx, Execute, NodeBook
from geomlops.workflows.executor.retry_expression import EXPRESSION_FALSE, retry_scope
from geomlops.workflows.executor.scopes import Scopes, suspend_outputs
from geomlops.workflows.executor.timing import RetryPlan, parse_duration


class Waits:
    """Advances retry and suspend nodes; ``timers`` collects when a pass must come back."""

    def __init__(
        self, book: NodeBook, scopes: Scopes, execute: Execute, timers: list[float]
    ) -> None:
        self.book = book
        self.state = book.state
        self.scopes = scopes
        self.execute = execute
        self.timers = timers
        self.retry_plans: dict[str, RetryPlan] = {}

    def retry(self, node: Node, template: dict[str, Any], ctx: Ctx) -> Node:
        """Run attempts of ``template`` one after another until one counts as the result."""
        plan = self.retry_plans.get(node.id)
        if plan is None:
            try:
                strategy = substitute_all(template["retryStrategy"], self.scopes.base(node))
                plan = RetryPlan.parse(
                    strategy, field=f"template {template['name']!r} retryStrategy"
                )
            except ExpressionError as error:
                self.book.set(node, NodePhase.ERROR, error.message)
                return node
            self.retry_plans[node.id] = plan
        attempt = node.attempt or 0
        if node.attempt is None:
            node.attempt = 0
            self.book.journal.node(node)
        while True:
            child_ctx = replace(
                ctx,
                parent_id=node.id,
                display=f"{node.display_name}({attempt})",
                attempt=attempt,
            )
            child = self.execute(
                f"{node.name}({attempt})", template["name"], node.inputs, child_ctx
            )
            if not child.fulfilled:
                return node
            if child.phase == NodePhase.SUCCEEDED:
                node.outputs = child.outputs
                self.book.set(node, NodePhase.SUCCEEDED, child.message)
                return node
            stopping = self.state.shutdown and not ctx.in_exit
            exhausted = plan.limit is not None and attempt >= plan.limit
            if stopping or exhausted or not plan.retries_phase(child.phase, child.message):
                message = child.message
                if exhausted and plan.limit:
                    message = f"No more retries left ({plan.limit}): {child.message}"
                node.outputs = child.outputs
                self.book.set(node, child.phase, message)
                return node
            if not self._due(node, child, plan, attempt):
                return node
            if not self._expression_allows(node, child, plan, attempt):
                return node
            attempt += 1
            node.attempt = attempt
            node.next_attempt_at = None
            self.book.journal.node(node)

    def _expression_allows(self, node: Node, child: Node, plan: RetryPlan, attempt: int) -> bool:
        """Whether ``retryStrategy.expression`` lets another attempt run; ends the node if not.

        Asked after the backoff, as Argo's controller asks it (a permanent failure still
        waits out its backoff there); the node then takes the attempt's phase.
        """
        if plan.expression is None:
            return True
        scope = retry_scope(
            exit_code=(child.outputs or {}).get("exitCode"),
            phase=child.phase,
            seconds=(child.finished_at or now()) - (child.started_at or now()),
            message=child.message,
            attempt=attempt,
        )
        try:
            allowed = plan.expression.evaluate(scope)
        except ExpressionError as error:
            node.outputs = child.outputs
            self.book.set(node, NodePhase.ERROR, error.message)
            return False
        if not allowed:
            node.outputs = child.outputs
            node.next_attempt_at = None
            self.book.set(node, child.phase, EXPRESSION_FALSE)
        return allowed

    def _due(self, node: Node, child: Node, plan: RetryPlan, attempt: int) -> bool:
        """Whether the next attempt may start now; schedules it (or gives up) if not yet."""
        delay = plan.delay_before(attempt + 1)
        if node.next_attempt_at is None:
            started = node.started_at or now()
            if plan.max_duration is not None and now() + delay - started > plan.max_duration:
                node.outputs = child.outputs
                self.book.set(node, child.phase, f"Max duration limit exceeded: {child.message}")
                return False
            node.next_attempt_at = (child.finished_at or now()) + delay
            self.book.set(
                node, NodePhase.RUNNING, f"retrying after: {child.message}", kind="retrying"
            )
        if now() < node.next_attempt_at:
            self.timers.append(node.next_attempt_at)
            return False
        return True

    def suspend(self, node: Node, template: dict[str, Any], ctx: Ctx) -> Node:
        """Hold the node until it is resumed, or until its duration has passed."""
        if self.state.shutdown and not ctx.in_exit:
            self.book.set(node, NodePhase.FAILED, self.book.stop_message())
            return node
        if node.phase == NodePhase.PENDING:
            duration = (template.get("suspend") or {}).get("duration")
            if duration:
                try:
                    text = substitute(str(duration), self.scopes.base(node))
                    node.resume_at = now() + parse_duration(text, field="suspend.duration")
                except ExpressionError as error:
                    self.book.set(node, NodePhase.ERROR, error.message)
                    return node
            self.book.set(node, NodePhase.RUNNING, "waiting to be resumed", kind="suspended")
        if node.resume_at is not None:
            if now() >= node.resume_at:
                try:
                    outputs = suspend_outputs(template, {}, self.scopes.base(node))
                except ExpressionError as error:
                    self.book.set(node, NodePhase.ERROR, error.message)
                    return node
                node.outputs = {"parameters": outputs} if outputs else None
                self.book.set(
                    node, NodePhase.SUCCEEDED, "resumed after its duration", kind="resumed"
                )
            else:
                self.timers.append(node.resume_at)
        return node
