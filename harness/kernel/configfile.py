"""YAML -> pydantic with errors a person can act on.

Every failure becomes one ConfigError whose text names the file, the key
path and what was expected: `cohorts/x.yaml: budgets.latency_p90_ms: expected
a number, got 'fast'`. Unknown keys are errors (models forbid extras).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Type, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

M = TypeVar("M", bound=BaseModel)


class ConfigError(ValueError):
    """A configuration problem, already phrased for the user (one line).

    The one configuration error of the project, on both sides: the agent
    file, a driver's section of it, cohorts, candidates, options. It is a
    ValueError because the driver contract says a driver refuses bad
    configuration with one (agents.registry.load_driver)."""


class Strict(BaseModel):
    """A configuration model: unknown keys are errors, values are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class YamlFloat(float):
    """A float that remembers how it was written, so `version: 1.20` stays
    "1.20" where a field wants text (YAML would read it as 1.2)."""

    text: str = ""


class _Loader(yaml.SafeLoader):
    pass


def _float(loader: yaml.SafeLoader, node: yaml.Node) -> YamlFloat:
    value = YamlFloat(yaml.SafeLoader.construct_yaml_float(loader, node))
    value.text = node.value
    return value


_Loader.add_constructor("tag:yaml.org,2002:float", _float)


_EXPECT = {
    "float_parsing": "a number", "float_type": "a number", "int_parsing": "an integer",
    "int_type": "an integer", "int_from_float": "an integer", "bool_parsing": "true or false",
    "bool_type": "true or false", "string_type": "a string", "list_type": "a list",
    "dict_type": "a mapping", "model_type": "a mapping", "model_attributes_type": "a mapping",
    "missing": "a value (required key is missing)", "extra_forbidden": "",
    "greater_than_equal": None, "less_than_equal": None, "greater_than": None, "less_than": None,
    "literal_error": None,
}


def _loc(loc: tuple) -> str:
    parts: list[str] = []
    for p in loc:
        if isinstance(p, int):
            parts.append(f"[{p}]")
        elif p in ("str", "function-after", "function-before", "function-plain", "constrained-str"):
            continue
        elif "[" in str(p) or str(p)[:1].isupper():  # union branch labels: 'DeviceProfile', 'list[str]'
            continue
        else:
            parts.append(("." if parts else "") + str(p))
    return "".join(parts) or "(top level)"


def _allowed_keys(model: Any, loc: tuple) -> list[str]:
    """Field names (aliases where set) of the sub-model an unknown key sits in."""
    import typing

    cur = model
    for part in loc[:-1]:
        if isinstance(part, int) or cur is None:
            continue
        fields = getattr(cur, "model_fields", None)
        if not fields:
            return []
        f = fields.get(part) or next((v for v in fields.values() if v.alias == part), None)
        if f is None:
            # inside a dict value or union branch: look for a model among the type's arguments
            continue
        cur = _model_in(f.annotation)
    fields = getattr(cur, "model_fields", None) or {}
    return [v.alias or k for k, v in fields.items()]


def _model_in(tp: Any) -> Any:
    import typing

    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return tp
    for arg in typing.get_args(tp):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def describe_validation_error(source: str, err: ValidationError, model: Any = None) -> str:
    errors = err.errors(include_url=False)
    # Prefer the most specific error (deepest location) of a union's branches.
    first = max(errors, key=lambda e: len(e.get("loc", ())))
    loc = _loc(tuple(first.get("loc", ())))
    kind = first.get("type", "")
    expected = _EXPECT.get(kind, "")
    if kind == "extra_forbidden":
        allowed = _allowed_keys(model, tuple(first.get("loc", ()))) if model is not None else []
        text = f"{source}: {loc}: unknown key" + (f" (expected one of: {', '.join(allowed)})" if allowed else "")
    elif not expected:
        expected = first.get("msg", "invalid value")
        expected = expected[0].lower() + expected[1:] if expected else expected
        text = f"{source}: {loc}: {expected}"
    else:
        text = f"{source}: {loc}: expected {expected}"
    if kind not in ("missing", "extra_forbidden") and "input" in first:
        value = first["input"]
        if not isinstance(value, (dict, list)):
            text += f", got {value!r}"
    # Errors of the other branches of the same union entry are not separate problems.
    chosen = _loc(tuple(first.get("loc", ())))
    more = len({_loc(tuple(e.get("loc", ()))) for e in errors
                if e is not first and not chosen.startswith(_loc(tuple(e.get("loc", ()))))})
    if more > 0:
        text += f" (and {more} more problem{'s' if more > 1 else ''})"
    return text


def read_yaml(path: Path) -> Any:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read ({exc})") from None
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{path}: {where}invalid YAML ({problem})") from None


def validate(source: str, data: Any, model: Type[M], context: dict | None = None) -> M:
    if data is None:
        raise ConfigError(f"{source}: the file is empty (expected a mapping)")
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level, got {type(data).__name__}")
    try:
        return model.model_validate(data, context=context)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(source, exc, model)) from None


def validate_section(name: str, data: Any, model: Type[M]) -> M:
    """One named section of a file (a driver's part of agent.yaml) -> model,
    or a ConfigError line such as `sim: devices[0].latency.p50_ms: expected a
    number, got 'fast'`. An absent section is an empty one."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{name}: expected a mapping, got {type(data).__name__}")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        # pydantic prefixes the messages of a model's own checks with "Value error, ".
        text = describe_validation_error(name, exc, model).replace(": value error, ", ": ")
        raise ConfigError(text.replace(f"{name}: (top level): ", f"{name}: ", 1)) from None


def load_yaml(path: Path, model: Type[M], context: dict | None = None) -> M:
    return validate(str(path), read_yaml(path), model, context)
