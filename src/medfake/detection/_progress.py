"""A rich progress bar as a context manager yielding `advance(info="")`. When the output is not a terminal (a
run under nohup writing to a log file) it prints a plain line every 5 % instead, so the log shows progress."""

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
    plain = not p.console.is_terminal
    every = max(1, total // 20)
    state = {"done": initial, "info": ""}

    def advance(n: int = 1, info: str | None = None):
        if info is None:
            p.update(task, advance=n)
        else:
            p.update(task, advance=n, info=info)
            state["info"] = info
        before, state["done"] = state["done"], state["done"] + n
        if plain and (state["done"] // every > before // every or state["done"] >= total):
            t = p.tasks[0].elapsed or 0.0
            p.console.log(f"{desc} {state['done']}/{total} {state['info']} {t / 60:.1f} min")

    with p:
        yield advance
