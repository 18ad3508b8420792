"""Plain-text tables for the command line: left-aligned columns, two spaces apart."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["print_table"]


def print_table(rows: Sequence[Sequence[str]]) -> None:
    """Print `rows` (the first is the header) with every column as wide as its widest cell."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
