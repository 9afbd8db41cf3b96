"""Rich console and progress bar on stderr, silenced by --quiet."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


def stderr_console(quiet: bool = False) -> Console:
    """A console on stderr; wide when stderr is not a terminal (logs, CI) so tables do not wrap."""
    console = Console(stderr=True, quiet=quiet)
    if not console.is_terminal:
        console = Console(stderr=True, quiet=quiet, width=160)
    return console


@contextmanager
def progress_bar(description: str, *, quiet: bool = False) -> Iterator[Callable[[int, int], None]]:
    """Yield a `(done, total)` callback driving a rich bar with elapsed and remaining time.

    The bar appears at the first update, so an error raised while loading prints no empty bar.
    """
    progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
                        console=stderr_console(quiet), transient=False, disable=quiet)
    task = progress.add_task(description, total=None)
    started = False

    def update(done: int, total: int) -> None:
        nonlocal started
        if not started:
            progress.start()
            started = True
        progress.update(task, completed=done, total=total)

    try:
        yield update
    finally:
        if started:
            progress.stop()
