from __future__ import annotations

import typer

app = typer.Typer(help="medfake: synthesize, manipulate and detect deepfake medical images.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
train_app = typer.Typer(help="Train generators and detectors.", no_args_is_help=True)
app.add_typer(train_app, name="train")


def fail(message: str, code: int = 2):
    from rich.console import Console

    Console(stderr=True).print(f"[bold red]error:[/] {message}")
    raise typer.Exit(code)
