"""The `harness` console script: `harness run` goes to this user's resident
process when one can take it (harness/resident/: the controller already
imported, the local agent kept warm), every other command and every run it
cannot take to the typer application in harness/cli_app.py. Nothing heavy is
imported here: this module is what every `harness` command loads first.

`from harness.cli import app` (and the commands' names) still works: they
are looked up in harness.cli_app on first use."""

from __future__ import annotations

import sys


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "run":
        from harness.resident import client

        if client.wanted(sys.argv[1:]):
            code = client.run(sys.argv)
            if code is not None:
                sys.exit(code)
    run_app()


def run_app() -> None:
    """The typer application on sys.argv, in this process."""
    from harness.cli_app import application

    application()(prog_name="harness")


def __getattr__(name: str):
    if name.startswith("__"):  # the import system asks for __path__ and the like: not the app's
        raise AttributeError(name)
    import harness.cli_app

    try:
        return getattr(harness.cli_app, name)
    except AttributeError:
        raise AttributeError(f"module 'harness.cli' has no attribute {name!r}") from None


if __name__ == "__main__":
    main()
