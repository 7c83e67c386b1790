"""One shared rich progress display; plugins report long loops through :func:`steps`."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

console = Console(stderr=True)
doing = "starting up"  # what the run is busy with, for the Ctrl-C message


@contextmanager
def steps(description: str, total: int) -> Iterator[callable]:
    """Yields ``advance(n=1)``; shows a bar when attached to a terminal, stays quiet in tests."""
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,
    ) as progress:
        task = progress.add_task(description, total=total)
        yield lambda n=1: progress.advance(task, n)
