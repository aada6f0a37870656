"""YAML reading/writing shared by the IR objects: safe loading, key checks, readable errors."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from codax.errors import ConfigError, did_you_mean


def load_yaml(source: str | os.PathLike | dict) -> Any:
    """Parse YAML from a path, a YAML string, or pass a dict through. Only `yaml.safe_load` is used."""
    if isinstance(source, dict):
        return source
    text: str
    where: str
    p = Path(source)
    if isinstance(source, os.PathLike) or (isinstance(source, str) and "\n" not in source and p.suffix):
        if not p.exists():
            raise ConfigError(f"{p}: no such file")
        text, where = p.read_text(), str(p)
    else:
        text, where = str(source), "<string>"
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"{where}: malformed YAML{at}: {problem}") from None


def dump_yaml(obj: Any, path: str | os.PathLike | None = None) -> str:
    text = yaml.safe_dump(obj, sort_keys=False, default_flow_style=None, width=120)
    if path is not None:
        Path(path).write_text(text)
    return text


def check_keys(d: dict, allowed: set[str], where: str, required: set[str] = frozenset()) -> None:
    """Reject unknown and missing keys with a message that names them."""
    if not isinstance(d, dict):
        raise ConfigError(f"{where}: expected a mapping of fields, got {type(d).__name__}")
    for k in d:
        if k not in allowed:
            raise ConfigError(f"{where}: unknown field {k!r}.{did_you_mean(str(k), sorted(allowed))}")
    missing = sorted(required - set(d))
    if missing:
        raise ConfigError(f"{where}: missing required field(s) {', '.join(missing)}")


def positive_int(v: Any, where: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise ConfigError(f"{where} must be a positive integer, got {v!r}")
    return v


def positive_number(v: Any, where: str, allow_zero: bool = False) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0 or (v == 0 and not allow_zero):
        bound = "non-negative" if allow_zero else "positive"
        raise ConfigError(f"{where} must be a {bound} number, got {v!r}")
    return float(v)
