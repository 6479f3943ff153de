"""Command modules: each defines `register(app)` and adds its typer commands.

Modules here are imported when the CLI starts, so they import only typer at
module level; everything heavy is imported inside the command functions.
"""

from __future__ import annotations

import importlib
import pkgutil


def register_all(app) -> None:
    for mod in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if mod.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{mod.name}")
        module.register(app)
