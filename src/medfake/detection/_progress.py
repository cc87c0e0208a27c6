"""A rich progress bar as a context manager yielding `advance(info="")`."""

from __future__ import annotations

from contextlib import contextmanager


@contextmanager
def progress_bar(total: int, desc: str, initial: int = 0, enabled: bool = True):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    if not enabled:
        yield lambda n=1, info="": None
        return
    p = Progress(TextColumn(desc), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
                 TimeElapsedColumn(), TimeRemainingColumn(), transient=True)
    task = p.add_task(desc, total=total, completed=initial, info="")

    def advance(n: int = 1, info: str | None = None):
        if info is None:
            p.update(task, advance=n)
        else:
            p.update(task, advance=n, info=info)

    with p:
        yield advance
