"""The engine's requantizer (codax_engine.h `requant`) works in integers only, yet must equal its float32
definition (codax/codegen/golden.py) bit for bit: float32(acc) * M (+ (float32(res) - float32(zr)) * MR),
rint half to even, clamped to +-2^30, plus the zero point, clamped to [lo, hi]. The header is compiled
once with g++ (the ap_types headers of hls4ml, -ffp-contract=off as C-simulation builds it) into a small
library that evaluates arrays of cases; NumPy's float32 arithmetic, the golden model's, is the
reference. Multipliers are drawn as float32 bit patterns: normal over the whole exponent range,
subnormal, zero, negative, and the finite extremes whose products overflow to infinity."""

import ctypes

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from codax.codegen.csim import compile_cached
from codax.codegen.engine import ENGINE_HEADER, INCLUDE_DIR, PROGRAM_HEADER, REQUANT_HEADER
from codax.codegen.hls_idioms import check as check_idioms
from codax.codegen.program import program_header

HARNESS = r"""
#include "codax_engine.h"
extern "C" void requant_cases(long n, const int32_t *acc, const uint32_t *m, const uint8_t *has_res,
                              const int64_t *res, const int32_t *zr, const uint32_t *mr, const int32_t *zy,
                              const int64_t *lo, const int64_t *hi, int64_t *out) {
  for (long i = 0; i < n; ++i)
    out[i] = codax::requant(acc[i], m[i], has_res[i] != 0, res[i], zr[i], mr[i], zy[i], lo[i], hi[i]);
}
extern "C" void clamp_bounds(long n, const uint32_t *bits, int64_t *out) {
  for (long i = 0; i < n; ++i) out[i] = codax::f32_bits_to_int(bits[i]);
}
"""
INT64_MIN = np.iinfo(np.int64).min
F32_MAX_BITS = 0x7F7FFFFF


@pytest.fixture(scope="module")
def lib():
    sources = {
        f"include/{ENGINE_HEADER}": (INCLUDE_DIR / ENGINE_HEADER).read_text(),
        f"include/{REQUANT_HEADER}": (INCLUDE_DIR / REQUANT_HEADER).read_text(),
        f"include/{PROGRAM_HEADER}": program_header(),
        "requant_harness.cpp": HARNESS,
    }
    so = ctypes.CDLL(str(compile_cached(sources, kind="shared")))
    so.requant_cases.restype = None
    so.clamp_bounds.restype = None
    return so


def _ptr(a: np.ndarray):
    return a.ctypes.data_as(ctypes.c_void_p)


def engine_requant(lib, cases: dict) -> np.ndarray:
    """The compiled requant over arrays of cases (each a column of `cases`)."""
    cols = {
        "acc": np.int32, "m": np.uint32, "has_res": np.uint8, "res": np.int64, "zr": np.int32,
        "mr": np.uint32, "zy": np.int32, "lo": np.int64, "hi": np.int64,
    }  # fmt: skip
    arrs = [np.ascontiguousarray(np.asarray(cases[k]).astype(t, casting="unsafe")) for k, t in cols.items()]
    out = np.empty(len(arrs[0]), np.int64)
    lib.requant_cases(ctypes.c_long(len(out)), *map(_ptr, arrs), _ptr(out))
    return out


def reference_requant(cases: dict) -> np.ndarray:
    """golden.py's integer epilogue in NumPy float32. A NaN (inf - inf) converts to INT64_MIN, as the
    cast does on x86 (where the golden model runs), and the zero point then wraps it."""
    acc = np.asarray(cases["acc"], np.int32)
    m = np.asarray(cases["m"], np.uint32).view(np.float32)
    mr = np.asarray(cases["mr"], np.uint32).view(np.float32)
    has_res = np.asarray(cases["has_res"], bool)
    res, zr = np.asarray(cases["res"], np.int64), np.asarray(cases["zr"], np.int64)
    with np.errstate(all="ignore"):
        v = acc.astype(np.float32) * m
        v_res = v + (res.astype(np.float32) - zr.astype(np.float32)) * mr
        v = np.where(has_res, v_res, v)
        r = np.clip(np.rint(v), np.float32(-(2.0**30)), np.float32(2.0**30))
        r = np.where(np.isnan(r), INT64_MIN, np.nan_to_num(r).astype(np.int64))
        q = r + np.asarray(cases["zy"], np.int64)  # wraps, as int64 arithmetic does
    return np.clip(q, np.asarray(cases["lo"], np.int64), np.asarray(cases["hi"], np.int64))


def check(lib, cases: dict) -> None:
    got, want = engine_requant(lib, cases), reference_requant(cases)
    bad = np.flatnonzero(got != want)
    if len(bad):
        i = bad[0]
        case = {k: np.asarray(v)[i].item() for k, v in cases.items()}
        m, mr = (np.uint32(case[k]).view(np.float32) for k in ("m", "mr"))
        pytest.fail(
            f"{len(bad)} of {len(got)} cases differ; first: {case} (m = {m!r}, mr = {mr!r}): "
            f"engine {got[i]}, float32 definition {want[i]}"
        )


def f32_bits(*values: float) -> list[int]:
    return [int(b) for b in np.array(values, np.float32).view(np.uint32)]


# ---- hypothesis: random cases ------------------------------------------------------------------------
def float32_bits(exponents: st.SearchStrategy) -> st.SearchStrategy:
    mantissa = st.one_of(st.integers(0, (1 << 23) - 1), st.sampled_from([0, 1, (1 << 23) - 1, 1 << 22]))
    return st.builds(lambda s, e, f: (s << 31) | (e << 23) | f, st.integers(0, 1), exponents, mantissa)


MULTIPLIER = st.one_of(
    float32_bits(st.integers(100, 134)),  # the scales of real networks: 2^-27 .. 2^7
    float32_bits(st.integers(1, 254)),  # every normal binade, up to products overflowing to infinity
    float32_bits(st.just(0)),  # subnormal and zero
    st.sampled_from([0, 1 << 31, 1, F32_MAX_BITS, *f32_bits(1.0, -1.0, 0.5, np.nextafter(1, 0, dtype="f4"))]),
)
INT32 = st.integers(-(2**31), 2**31 - 1)
SMALL = st.integers(-300, 300)
CASE = st.fixed_dictionaries(
    {
        "acc": st.one_of(INT32, SMALL, st.sampled_from([-(2**31), 2**31 - 1, 2**24 + 1, -(2**24) - 3])),
        "m": MULTIPLIER,
        "has_res": st.booleans(),
        "res": st.one_of(SMALL, st.integers(-(2**31), 2**32 - 1)),
        "zr": st.one_of(SMALL, INT32),
        "mr": MULTIPLIER,
        "zy": st.one_of(SMALL, INT32),
        "bounds": st.one_of(
            st.tuples(st.integers(-(2**33), 2**33), st.integers(-(2**33), 2**33)).map(sorted),
            st.sampled_from([(-128, 127), (0, 255), (-(2**31), 2**31), (-(2**40), 2**40)]),
        ),
    }
)


def columns(rows: list[dict]) -> dict:
    cols = {k: [r[k] for r in rows] for k in rows[0] if k != "bounds"}
    cols["lo"] = [r["bounds"][0] for r in rows]
    cols["hi"] = [r["bounds"][1] for r in rows]
    return cols


@settings(max_examples=300, deadline=None)
@given(st.lists(CASE, min_size=1, max_size=64))
def test_requant_matches_float32_definition(lib, rows):
    check(lib, columns(rows))


def test_requant_random_bit_patterns(lib):
    """A million uniformly random cases: every finite float32 multiplier pattern, full-range operands."""
    rng = np.random.default_rng(7)
    n = 1 << 20

    def finite_bits():
        b = rng.integers(0, 1 << 32, n, dtype=np.uint64).astype(np.uint32)
        return np.where(((b >> 23) & 0xFF) == 0xFF, b & 0x807FFFFF, b)  # inf / NaN -> subnormal

    def scale_bits():  # the multipliers of real networks: |M| in 2^-20 .. 2^4
        return f32_bits_of(rng.uniform(-1, 1, n) * np.exp2(rng.uniform(-20, 4, n)))

    lo = rng.integers(-(2**31), 2**31, n)
    hi = lo + rng.integers(0, 2**32, n)
    for m, mr in (
        (finite_bits(), finite_bits()),
        (scale_bits(), scale_bits()),
        (scale_bits(), finite_bits()),
    ):
        check(
            lib,
            {
                "acc": rng.integers(-(2**31), 2**31, n), "m": m, "has_res": rng.integers(0, 2, n),
                "res": rng.integers(-(2**31), 2**32, n), "zr": rng.integers(-(2**31), 2**31, n), "mr": mr,
                "zy": rng.integers(-(2**31), 2**31, n), "lo": lo, "hi": hi,
            },
        )  # fmt: skip


def f32_bits_of(x: np.ndarray) -> np.ndarray:
    return np.asarray(x, np.float32).view(np.uint32)


# ---- targeted edge cases -----------------------------------------------------------------------------
WIDE = (-(2**40), 2**40)


def edge(acc, m, res=None, zr=0, mr=0.0, zy=0, bounds=WIDE) -> dict:
    """One case; m / mr are floats (rounded to float32) or raw(bit pattern)."""
    bits = lambda v: v[1] if isinstance(v, tuple) else f32_bits(v)[0]  # noqa: E731
    return {
        "acc": acc, "m": bits(m), "has_res": res is not None, "res": res or 0, "zr": zr, "mr": bits(mr),
        "zy": zy, "bounds": bounds,
    }  # fmt: skip


def raw(b: int) -> tuple:
    return ("bits", b)


EDGE_CASES = [
    # ties at exactly .5: half to even, both signs
    *(edge(a, 0.5) for a in (1, 3, 5, -1, -3, -5, 2**25 + 1, -(2**25) - 1)),
    *(edge(a, 0.25) for a in (2, 6, 10, -2, -6)),
    edge(1, 0.25, res=1, mr=0.25),  # 0.25 + 0.25 = 0.5 -> 0
    edge(3, 0.25, res=3, mr=0.25),  # 1.5 -> 2
    edge(5, 0.5, res=0, mr=1.0),  # 2.5 -> 2
    edge(-5, 0.5, res=-1, zr=1, mr=0.25),  # -2.5 - 0.5 = -3
    # products near 2^30 and the +-2^30 clamp
    *(
        edge(a, m)
        for a in (2**30 - 1, 2**30, 2**30 + 1, -(2**30) - 1)
        for m in (1.0, np.nextafter(1, 2, dtype="f4"))
    ),
    edge(2**31 - 1, np.nextafter(0.5, 0, dtype="f4")),  # float32(acc) rounds up to 2^31
    edge(2**31 - 1, 0.5, res=-(2**31), mr=0.25),
    edge(-(2**31), 0.5),
    edge(-(2**31), -0.5, zy=-(2**31), bounds=(-(2**31), 2**31 - 1)),
    edge(2**31 - 1, 1.0, zy=2**31 - 1),
    # all mantissa bits set; the finite extremes (overflow to infinity, inf - inf is NaN)
    edge(12345, raw(0x3FFFFFFF)),
    edge(-12345, raw(0x007FFFFF)),  # the largest subnormal: the product underflows to 0
    edge(2**31 - 1, raw(0x007FFFFF)),
    edge(2**31 - 1, raw(1)),  # the smallest subnormal
    edge(3, raw(F32_MAX_BITS)),
    edge(-3, raw(F32_MAX_BITS), zy=17),
    edge(3, raw(F32_MAX_BITS), res=5, mr=raw(F32_MAX_BITS | 1 << 31), zy=9),  # inf - inf
    edge(3, raw(F32_MAX_BITS), res=5, mr=raw(F32_MAX_BITS | 1 << 31), zy=-9),  # NaN wraps to the top
    edge(3, raw(F32_MAX_BITS), res=5, mr=raw(F32_MAX_BITS)),  # inf + inf
    edge(0, raw(F32_MAX_BITS), res=5, mr=0.5),  # 0 * FLT_MAX
    edge(7, -0.0, res=0, mr=3.0),
    edge(7, raw(0x7F800000)),  # non-finite multipliers get the float definition's results too
    edge(0, raw(0xFF800000), zy=3),  # 0 * -inf is NaN
    edge(-7, raw(0x7FC00001), zy=-3),
    # float32 adds that round: ties to even at 2^24, cancellation, far-apart exponents (sticky bits)
    edge(2**24, 1.0, res=1, mr=1.0),  # 2^24 + 1 -> 2^24
    edge(2**24 + 2, 1.0, res=1, mr=1.0),  # 2^24 + 3 -> 2^24 + 4
    edge(2**24, 1.0, res=1, mr=np.nextafter(1, 2, dtype="f4")),  # just above the tie: up
    edge(2**24, 1.0, res=-1, mr=np.nextafter(1, 2, dtype="f4")),  # just below 2^24 - 1
    edge(2**25, 1.0, res=-1, mr=np.float32(2.0**-40)),  # subtracting a sticky remainder
    edge(2**26 + 4, 1.0, res=-(2**24), mr=np.float32(2.0**-22)),  # a tie reached by subtraction
    edge(2**24 - 1, 1.0, res=-(2**24) + 1, mr=1.0),  # exact cancellation to 0
    edge(1, 2.0**-130, res=1, mr=-(2.0**-131)),  # subnormal sum
    edge(1000, 0.0005, res=-3, zr=-128, mr=0.0078125, zy=-128, bounds=(-128, 127)),
    # residuals beyond 24 bits: float32(res) - float32(zr) rounds each operand first
    edge(0, 1.0, res=2**31 + 3, zr=1, mr=1.0, bounds=(-(2**33), 2**33)),
    edge(0, 1.0, res=2**25 + 1, zr=2**25 - 1, mr=0.5),
    edge(0, 1.0, res=-(2**31), zr=2**31 - 1, mr=2.0**-8),
]


def test_requant_edge_cases(lib):
    check(lib, columns(EDGE_CASES))


# ---- the clamp bounds: float32 bit patterns in the descriptor, read as integers --------------------------
def test_clamp_bounds_truncate_like_a_cast(lib):
    rng = np.random.default_rng(3)
    bits = rng.integers(0, 1 << 32, 1 << 18, dtype=np.uint64).astype(np.uint32)
    x = bits.view(np.float32)
    finite = np.isfinite(x) & (np.abs(x) < 2.0**62)
    bits = np.concatenate(
        [bits[finite], f32_bits_of([127.0, -128.0, 255.0, 0.0, -0.0, 2.0**31, -(2.0**31), 0.999, -1.5])]
    )
    out = np.empty(len(bits), np.int64)
    lib.clamp_bounds(ctypes.c_long(len(bits)), _ptr(bits), _ptr(out))
    np.testing.assert_array_equal(out, np.trunc(bits.view(np.float32)).astype(np.int64))


def test_clamp_bounds_saturate_beyond_any_output(lib):
    special = f32_bits_of([np.inf, -np.inf, 2.0**62, -(2.0**70), 3e38])
    out = np.empty(len(special), np.int64)
    lib.clamp_bounds(ctypes.c_long(len(special)), _ptr(special), _ptr(out))
    assert out.tolist() == [2**62, -(2**62), 2**62, -(2**62), 2**62]


# ---- as hardware: no floating point in the integer epilogue ---------------------------------------------
IP_UNIT = """
#include "codax_engine.h"
int64_t top_requant(int32_t acc, uint32_t m, bool has_res, int64_t res, int zr, uint32_t mr, int zy,
                    int64_t lo, int64_t hi) {
#pragma HLS PIPELINE II = 1
  return codax::requant(acc, m, has_res, res, zr, mr, zy, lo, hi);
}
int64_t top_int_engine(const codax::Ctx &c, int64_t acc, int ch, int64_t raddr) {
  return codax::epilogue<false>(c, acc, ch, raddr);
}
int64_t top_float_engine(const codax::Ctx &c, int64_t acc, int ch, int64_t raddr) {
  return codax::epilogue<true>(c, acc, ch, raddr);
}
"""


def test_integer_epilogue_has_no_floating_point():
    """The idiom checker (codax.codegen.hls_idioms) on tops that call the requantizer and the epilogue:
    requant, pipelined, is integer and has no run-time loop; the epilogue of an engine without float
    layers reaches no floating point; an engine with them does build the float32 epilogue."""
    files = {
        "top.cpp": IP_UNIT,
        f"include/{ENGINE_HEADER}": (INCLUDE_DIR / ENGINE_HEADER).read_text(),
        f"include/{REQUANT_HEADER}": (INCLUDE_DIR / REQUANT_HEADER).read_text(),
        f"include/{PROGRAM_HEADER}": program_header(),
    }
    tops = ["top_requant", "top_int_engine", "top_float_engine"]
    found = check_idioms(files, tops, 128, unit="top.cpp")
    floats = {
        top: [v for v in found if v.top == top and v.rule == "floating-point-outside-mac"] for top in tops
    }
    assert floats["top_requant"] == [] and floats["top_int_engine"] == []
    assert "epilogue" in {v.function for v in floats["top_float_engine"]}  # and its f32 / bits32
    assert [v for v in found if v.top == "top_requant"] == []
