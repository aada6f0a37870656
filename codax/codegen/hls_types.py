"""C types as hardware: the bits of a value of a clang type, the shape of arrays, the parts of a type
that are pointers, floats or FIFOs (codax.codegen.hls_reader's parse). Vitis HLS's widths: bool one bit,
ap_int<N> / ap_uint<N> / ap_fixed<N, I> N bits, a struct its fields packed without padding."""

from __future__ import annotations

import functools

try:
    import clang.cindex as ci
except ImportError:  # pragma: no cover - the dependency is declared in pyproject.toml
    ci = None

T = ci.TypeKind if ci else None

AP_TYPES = ("ap_int", "ap_uint", "ap_int_base", "ap_fixed", "ap_ufixed", "ap_fixed_base")


@functools.cache
def _builtin_bits() -> dict:
    return {
        T.BOOL: 1, T.CHAR_U: 8, T.UCHAR: 8, T.CHAR_S: 8, T.SCHAR: 8, T.SHORT: 16, T.USHORT: 16,
        T.INT: 32, T.UINT: 32, T.LONG: 64, T.ULONG: 64, T.LONGLONG: 64, T.ULONGLONG: 64,
        T.INT128: 128, T.UINT128: 128, T.FLOAT: 32, T.DOUBLE: 64, T.LONGDOUBLE: 128,
        T.POINTER: 64, T.LVALUEREFERENCE: 64, T.RVALUEREFERENCE: 64, T.ENUM: 32,
    }  # fmt: skip


def ap_width(t) -> int | None:
    """The width N of ap_int<N> / ap_uint<N> / ap_fixed<N, I> (its first template argument)."""
    d = t.get_canonical().get_declaration()
    if d.spelling in AP_TYPES and d.get_num_template_arguments() > 0:
        return int(d.get_template_argument_value(0))
    return None


@functools.cache
def _signed_kinds() -> frozenset:
    return frozenset((T.CHAR_S, T.SCHAR, T.SHORT, T.INT, T.LONG, T.LONGLONG, T.INT128, T.ENUM, T.FLOAT,
                      T.DOUBLE, T.LONGDOUBLE))  # fmt: skip


def is_signed(t) -> bool:
    """Whether values of type `t` are two's complement: the signed C integers, ap_int<N> / ap_fixed
    (ap_uint / ap_ufixed / bool / the unsigned C integers are not; ap_int_base<N, S> as its S says)."""
    t = t.get_canonical()
    if t.kind == T.RECORD:
        d = t.get_declaration()
        if d.spelling in ("ap_int", "ap_fixed"):
            return True
        if d.spelling in ("ap_int_base", "ap_fixed_base") and d.get_num_template_arguments() > 1:
            idx = 1 if d.spelling == "ap_int_base" else 2
            return bool(d.get_template_argument_value(idx))
        return False
    return t.kind in _signed_kinds()


def is_stream(t) -> bool:
    d = t.get_canonical().get_declaration()
    return d.spelling == "stream" and d.semantic_parent is not None and d.semantic_parent.spelling == "hls"


def stream_element(t):
    return t.get_canonical().get_declaration().get_template_argument_type(0)


def type_bits(t) -> int:
    """Bits of one value of type `t` in hardware: builtins at their C widths (bool one bit), ap types at
    their template width, a struct as the sum of its fields (packed, no padding), an array as its
    elements. A pointer or reference counts 64 bits (the checker reports those held in state)."""
    t = t.get_canonical()
    if t.kind == T.CONSTANTARRAY:
        return type_bits(t.element_type) * t.element_count
    if t.kind in _builtin_bits():
        return _builtin_bits()[t.kind]
    if t.kind == T.RECORD:
        w = ap_width(t)
        if w is not None:
            return w
        if is_stream(t):
            return 0  # a FIFO is not data of the struct that names it
        return sum(type_bits(f.type) for f in t.get_fields())
    return 0


def array_shape(t) -> tuple[tuple[int, ...], object]:
    """(dims, element type) of a (multi-dimensional) constant array type; ((), t) for a scalar."""
    t = t.get_canonical()
    dims = []
    while t.kind == T.CONSTANTARRAY:
        dims.append(t.element_count)
        t = t.element_type.get_canonical()
    return tuple(dims), t


def contains(t, pred, seen=None) -> list[str]:
    """Paths (".field", "[]") inside type `t` to the parts for which pred(type) holds."""
    seen = set() if seen is None else seen
    t = t.get_canonical()
    if pred(t):
        return [""]
    if t.kind == T.CONSTANTARRAY:
        return ["[]" + p for p in contains(t.element_type, pred, seen)]
    if t.kind == T.RECORD and ap_width(t) is None and not is_stream(t):
        key = t.spelling
        if key in seen:
            return []
        out = []
        for f in t.get_fields():
            out += ["." + f.spelling + p for p in contains(f.type, pred, seen | {key})]
        return out
    return []


def is_pointer(t) -> bool:
    return t.get_canonical().kind in (T.POINTER, T.LVALUEREFERENCE, T.RVALUEREFERENCE)


def is_float(t) -> bool:
    return t.get_canonical().kind in (T.FLOAT, T.DOUBLE, T.LONGDOUBLE, T.HALF, T.FLOAT128)
