"""A problem found in a file a user wrote (a Serve config, a smoke requests file): where it is
(file:line:column and field path) and what to do."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

PathT = tuple[str | int, ...]


def format_path(path: Sequence[str | int]) -> str:
    """``("applications", 0, "deployments", 1, "num_replicas")`` -> ``applications[0].deployments[1].num_replicas``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


@dataclass(frozen=True)
class Problem:
    file: str
    #: 1-based; None when the problem has no place in the file (it is unreadable, or empty)
    line: int | None
    #: 1-based; None when only the line is known
    column: int | None
    #: the field, as :func:`format_path` writes it; empty when the problem is not about one field
    path: str
    message: str
    hint: str | None = None
    #: "error" (exit 2) or "warning" (Ray accepts it, but not as the writer likely meant)
    severity: str = "error"

    def as_dict(self) -> dict[str, Any]:
        return {"file": self.file, "line": self.line, "column": self.column, "path": self.path,
                "message": self.message, "hint": self.hint, "severity": self.severity}

    @property
    def where(self) -> str:
        if self.line is None:
            return self.file
        if self.column is None:
            return f"{self.file}:{self.line}"
        return f"{self.file}:{self.line}:{self.column}"

    def render(self) -> str:
        """``file:line:column: path: message`` and the fix on the next line. The severity is not in it:
        a caller prints a warning after ``WARN  `` (the tool's one prefix for warnings), an error as is."""
        text = f"{self.where}: {self.path}: {self.message}" if self.path else f"{self.where}: {self.message}"
        return text + (f"\n    fix: {self.hint}" if self.hint else "")
