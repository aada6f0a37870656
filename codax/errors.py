"""Errors a user can cause. Each message names the offending node or field and what would fix it.

The CLI prints these without a traceback; anything else escaping is a bug in codax.
"""

from __future__ import annotations


class CodaxError(Exception):
    """Base class of every error a user can cause."""


class ConfigError(CodaxError):
    """A YAML file or a Python-side configuration is malformed or has an invalid field."""


class UnknownNameError(CodaxError):
    """A device, accelerator, dimension or level name that codax does not know."""


class MappingError(CodaxError):
    """A mapping is illegal for its layer or accelerator (coverage, capacity, dataflow)."""


class CapacityError(MappingError):
    """A tile does not fit the buffer it is assigned to."""


class InfeasibleError(CodaxError):
    """No legal design or mapping exists under the given budget."""


class ModelError(CodaxError):
    """An input model (ONNX, PyTorch) cannot be imported or compiled as it is."""


class UnsupportedError(CodaxError):
    """An operator, attribute or bitwidth that the accelerator cannot execute."""


def did_you_mean(name: str, known: list[str] | tuple[str, ...]) -> str:
    """A hint naming the closest known names, for 'unknown X' messages."""
    import difflib

    close = difflib.get_close_matches(name, list(known), n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    return f"{hint} Known: {', '.join(sorted(known))}."
