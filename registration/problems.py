"""One finding of package validation, and the error that carries all of them.

Validation collects every problem before it reports, so a contributor fixes a package in one
round instead of one error per run. Each problem names the file, where in it (a field path
or a line), what is wrong and how to fix it; ``register`` and CI reuse the same list.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from geomlops.errors import ValidationFailed


@dataclass(frozen=True)
class Problem:
    """A broken rule of the package contract (``model_packages/README.md``)."""

    file: str
    location: str
    message: str
    hint: str = ""

    def __str__(self) -> str:
        where = f"{self.file}: {self.location}" if self.location else self.file
        hint = f" (hint: {self.hint})" if self.hint else ""
        return f"{where}: {self.message}{hint}"

    def as_dict(self) -> dict[str, str]:
        """The problem as JSON-ready data (``--json`` output)."""
        return asdict(self)


def validation_error(package: Path, problems: Sequence[Problem]) -> ValidationFailed:
    """The error raised for a package with problems: every problem listed, exit 1."""
    return ValidationFailed(
        f"model package {package} has {len(problems)} problem(s)",
        problems=[str(p) for p in problems],
        hint="fix every problem listed, then run `geomlops package validate` again; the "
        "contract is model_packages/README.md",
    )
