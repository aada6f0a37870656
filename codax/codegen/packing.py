"""Bit-packed tensors as the engine stores them in DRAM: element i of a `bits`-bit tensor occupies bits
[i * bits, (i + 1) * bits) of the byte string, least significant bit first (codax_engine.h `rd`/`wr`).
At 8, 16 and 32 bits this is the ordinary little-endian layout; float32 tensors are their IEEE bits.
"""

from __future__ import annotations

import math

import numpy as np


def packed_bytes(n: int, bits: int) -> int:
    return math.ceil(n * bits / 8)


def pack(values: np.ndarray, bits: int) -> bytes:
    """Integers (any dtype, two's complement) or float32 (bits=32) -> packed bytes."""
    v = np.ascontiguousarray(values).reshape(-1)
    if v.dtype.kind == "f":
        if bits != 32:
            raise ValueError(f"float tensors are stored at 32 bits, not {bits}")
        return v.astype("<f4").tobytes()
    if bits in (8, 16, 32):
        return v.astype(np.int64).astype(f"<u{bits // 8}", casting="unsafe").tobytes()
    u = (v.astype(np.int64) & ((1 << bits) - 1)).astype(np.uint64)
    bit_planes = ((u[:, None] >> np.arange(bits, dtype=np.uint64)) & 1).astype(np.uint8).reshape(-1)
    return np.packbits(bit_planes, bitorder="little").tobytes()


def pack_tensor(values, bits: int, is_float: bool) -> bytes:
    """A tensor in the engine's storage: float32 for float layers, else integers packed at `bits`."""
    v = np.asarray(values)
    return pack(v.astype(np.float32) if is_float else v.astype(np.int64), bits)


def unpack(data: bytes | np.ndarray, n: int, bits: int, signed: bool, dtype=None) -> np.ndarray:
    """Packed bytes -> n integers (as `dtype`, default int64), or float32 when dtype is float32."""
    raw = np.frombuffer(bytes(data), np.uint8) if not isinstance(data, np.ndarray) else data.view(np.uint8)
    if dtype is not None and np.dtype(dtype).kind == "f":
        return raw[: 4 * n].view("<f4").astype(dtype)
    if bits in (8, 16, 32):
        u = raw[: n * bits // 8].view(f"<u{bits // 8}").astype(np.int64)
    else:
        planes = np.unpackbits(raw, bitorder="little")[: n * bits].reshape(n, bits).astype(np.int64)
        u = (planes << np.arange(bits, dtype=np.int64)).sum(axis=1)
    if signed:
        u = np.where(u >= (1 << (bits - 1)), u - (1 << bits), u)
    return u.astype(dtype or np.int64)
