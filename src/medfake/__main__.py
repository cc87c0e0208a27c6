"""`python -m medfake ...` runs the `medfake` command (where the console script is not installed, e.g. with
PYTHONPATH=src on a machine without the project's virtual environment)."""

from .cli import main

if __name__ == "__main__":
    main()
