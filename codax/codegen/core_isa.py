"""The core's instruction words, as TVM VTA's (hardware/xilinx/src/vta.h): every instruction is one
128-bit word, a common head -- the opcode and the four dependence flags (pop the token the previous /
next stage pushed, push one to the previous / next stage) -- then the fields of its kind, each as
wide as the accelerator's buffers need (the module that owns a kind sizes its fields from the core's
shape). One table per kind gives both sides: the Python encoder the layer compiler uses and the C++
struct and decoder the IPs use, so the two cannot disagree on a bit.
"""

from __future__ import annotations

from dataclasses import dataclass

from codax.errors import UnsupportedError

INSN_BITS = 128
OPCODES = {"load": 0, "gemm": 1, "store": 2, "finish": 3}
OPCODE_BITS = 3
DEP_FLAGS = ("pop_prev", "pop_next", "push_prev", "push_next")


@dataclass(frozen=True)
class Field:
    name: str
    bits: int


HEAD = (Field("opcode", OPCODE_BITS), *(Field(f, 1) for f in DEP_FLAGS))


def bits_for(largest: int) -> int:
    """The width of an unsigned field that holds 0 .. largest."""
    return max(1, int(largest).bit_length())


@dataclass(frozen=True)
class InsnFormat:
    """One kind of instruction: the head, then `fields`, least significant bit first."""

    kind: str
    fields: tuple[Field, ...]

    def __post_init__(self):
        if self.kind not in OPCODES:
            raise ValueError(f"instruction kind {self.kind!r}: kinds are {sorted(OPCODES)}")
        if self.bits > INSN_BITS:
            widths = ", ".join(f"{f.name} {f.bits}" for f in self.fields)
            raise UnsupportedError(
                f"the {self.kind} instruction needs {self.bits} bits ({widths}); instructions are "
                f"{INSN_BITS} bits: shrink the buffers' depths or the loop bounds its fields hold"
            )

    @property
    def all_fields(self) -> tuple[Field, ...]:
        return HEAD + self.fields

    @property
    def bits(self) -> int:
        return sum(f.bits for f in self.all_fields)

    def layout(self) -> list[tuple[Field, int]]:
        """(field, lowest bit) of every field, the head first."""
        out, lo = [], 0
        for f in self.all_fields:
            out.append((f, lo))
            lo += f.bits
        return out

    def encode(self, **values: int) -> int:
        """The 128-bit word; fields left out are 0. A value out of its field's range, or a field the
        kind lacks, is an error naming it."""
        names = {f.name for f in self.all_fields}
        unknown = sorted(set(values) - names - {"opcode"})
        if unknown:
            raise ValueError(f"{self.kind} instruction: no field {unknown[0]!r}; fields are {sorted(names)}")
        values = {**values, "opcode": OPCODES[self.kind]}
        word = 0
        for f, lo in self.layout():
            v = int(values.get(f.name, 0))
            if not 0 <= v < 1 << f.bits:
                raise UnsupportedError(
                    f"{self.kind} instruction field {f.name} = {v} does not fit its {f.bits} bits"
                )
            word |= v << lo
        return word

    def decode(self, word: int) -> dict[str, int]:
        return {f.name: (word >> lo) & ((1 << f.bits) - 1) for f, lo in self.layout()}

    def cpp(self) -> str:
        """The C++ struct of this kind and its decoder from an insn_t (bit slices only)."""
        name = self.kind.capitalize() + "Insn"
        lines = [f"struct {name} {{"]
        lines += [f"  ap_uint<{f.bits}> {f.name};" for f in self.all_fields]
        lines += [
            "};",
            "",
            f"inline {name} decode_{self.kind}(insn_t w) {{",
            "#pragma HLS INLINE",
            f"  {name} i;",
        ]
        lines += [f"  i.{f.name} = w.range({lo + f.bits - 1}, {lo});" for f, lo in self.layout()]
        lines += ["  return i;", "}", ""]
        return "\n".join(lines)


def isa_header() -> str:
    """The definitions every kind's C++ shares: the word type and the opcodes."""
    ops = "\n".join(f"const int OP_{k.upper()} = {v};" for k, v in OPCODES.items())
    return f"typedef ap_uint<{INSN_BITS}> insn_t;\n{ops}\n"


def program_bytes(words: list[int]) -> bytes:
    """Instruction words as DRAM holds them: 16 bytes each, little-endian."""
    return b"".join(w.to_bytes(INSN_BITS // 8, "little") for w in words)
