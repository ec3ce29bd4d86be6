"""Progress of a run as events, and a rich renderer for the terminal.

The engine only calls a listener with :class:`ProgressEvent` values; how (and whether) they
are shown is the caller's choice, so the core stays free of terminal concerns.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.console import Console

from geomlops.workflows.executor.model import NodeType


@dataclass(frozen=True)
class ProgressEvent:
    """One change of a node (or of the run, with ``kind == "run"``)."""

    run: str
    kind: str
    """started, succeeded, failed, error, skipped, omitted, suspended, resumed, retrying,
    restarted, pending, running — or "run" for the run's own phase."""
    node_name: str | None
    display_name: str
    node_type: str | None
    phase: str
    message: str = ""
    attempt: int | None = None


_STYLES = {
    "started": ("▶", "cyan", "running"),
    "succeeded": ("✔", "green", "done"),
    "failed": ("✘", "red", "failed"),
    "error": ("✘", "red", "error"),
    "skipped": ("↷", "yellow", "skipped"),
    "omitted": ("↷", "yellow", "omitted"),
    "suspended": ("⏸", "magenta", "suspended, waiting to be resumed"),
    "resumed": ("⏵", "magenta", "resumed"),
    "retrying": ("↻", "yellow", "will retry"),
    "restarted": ("↻", "yellow", "re-run after an interrupted executor"),
}
_SHOWN_TYPES = {NodeType.POD, NodeType.SUSPEND, NodeType.RETRY, NodeType.SKIPPED}


class RichProgress:
    """Prints one line per step that starts, ends, is retried, skipped or suspended."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)

    def __call__(self, event: ProgressEvent) -> None:
        if event.kind == "run":
            style = {"Succeeded": "green", "Running": "cyan"}.get(event.phase, "red")
            text = f"[bold {style}]{event.run}: {event.phase}[/]"
            if event.message:
                text += f" — {event.message}"
            self.console.print(text, highlight=False)
            return
        if event.node_type not in _SHOWN_TYPES or event.kind not in _STYLES:
            return
        if event.node_type == NodeType.RETRY and event.kind not in ("retrying", "failed", "error"):
            return  # the attempts themselves are shown
        symbol, style, word = _STYLES[event.kind]
        text = f"[{style}]{symbol}[/] {event.display_name} [dim]{word}[/]"
        if event.message and event.kind not in ("started", "succeeded"):
            text += f" [dim]— {event.message}[/]"
        self.console.print(text, highlight=False)
