"""ONNX names -> C identifiers and file names.

ONNX tensor/node names are arbitrary strings ("/layer1/conv/Conv", "input.1", "x; system(...)").
Generated code must never paste them raw: every identifier goes through `Namer`, which maps each
distinct name to a distinct, valid, non-reserved C identifier (no injection, no collisions), and
is deterministic so that the same graph always yields the same sources.
"""

from __future__ import annotations

import re

C_KEYWORDS = frozenset(
    """alignas alignof and and_eq asm auto bitand bitor bool break case catch char char16_t char32_t
    class compl const constexpr const_cast continue decltype default delete do double dynamic_cast else
    enum explicit export extern false float for friend goto if inline int long mutable namespace new
    noexcept not not_eq nullptr operator or or_eq private protected public register reinterpret_cast
    return short signed sizeof static static_assert static_cast struct switch template this
    thread_local throw true try typedef typeid typename union unsigned using virtual void volatile
    wchar_t while xor xor_eq main""".split()
)
_MAX_LEN = 48


def c_ident(name: str, prefix: str = "n_") -> str:
    """A valid C identifier resembling `name` (may collide; use Namer for uniqueness)."""
    s = re.sub(r"[^0-9A-Za-z_]", "_", str(name))
    s = re.sub(r"_+", "_", s).strip("_")
    if not s or s[0].isdigit() or s in C_KEYWORDS or s.startswith("__") or s.lower().startswith("codax"):
        s = prefix + s
    return s[:_MAX_LEN]


class Namer:
    """Distinct identifiers for distinct names: collisions after sanitizing get a numeric suffix."""

    def __init__(self, reserved: tuple[str, ...] = ()) -> None:
        self._by_name: dict[str, str] = {}
        self._used: set[str] = set(reserved)

    def __call__(self, name: str) -> str:
        if name in self._by_name:
            return self._by_name[name]
        base = c_ident(name)
        ident, i = base, 1
        while ident in self._used:
            ident = f"{base}_{i}"
            i += 1
        self._used.add(ident)
        self._by_name[name] = ident
        return ident
