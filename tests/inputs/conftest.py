"""Prints the bad-input corpus's counts at the end of any run that executed its cases."""

from __future__ import annotations

import pytest
from corpus import summary


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    line = summary()
    if line:
        terminalreporter.write_sep("=", "bad-input corpus")
        terminalreporter.write_line(line)
