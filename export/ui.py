"""Status lines, warnings and progress bars of `edgeecg export`, all on stderr.

Stdout is kept for the final tables so they can be piped; everything that
narrates the export (steps, warnings, progress) goes through this one console.
"""

from __future__ import annotations

from typing import Iterable, Iterator, TypeVar

from rich.console import Console
from rich.panel import Panel
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

T = TypeVar("T")

console = Console(stderr=True, highlight=False, soft_wrap=True)  # log lines are never hard-wrapped
tables = Console(highlight=False)  # result tables, on stdout


def step(message: str) -> None:
    """One line saying what export is doing now."""
    console.print(f"[bold cyan]export[/] {message}")


def note(message: str) -> None:
    console.print(f"[dim]notice:[/] {message}")


def warn(message: str) -> None:
    console.print(f"[bold yellow]warning:[/] {message}")


def loud_warning(title: str, message: str) -> None:
    """A boxed warning for results the user must not miss (accuracy targets missed)."""
    console.print(Panel(message, title=f"[bold red]{title}[/]", border_style="red"))


def track(items: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
    """Iterate with a rich progress bar (transient, so the log stays short)."""
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        yield from progress.track(items, total=total, description=description)
