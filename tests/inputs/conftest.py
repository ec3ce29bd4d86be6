"""Prints the bad-input corpus's counts at the end of any run that executed its cases."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from corpus import summary


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    line = summary()
    if line:
        terminalreporter.write_sep("=", "bad-input corpus")
        terminalreporter.write_line(line)


# The package cases build on the registration corpus's base package and its helpers, the
# catalog cases on the catalog tests' model items.
for _folder in ("registration", "catalog"):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / _folder))
