"""The core engine's sources read as hardware for accelerators beyond the two the other tests fix: every
library accelerator the core serves and random ones (arrays, buffer sizes, widths, DRAM ports drawn
from a seeded generator), each with no idiom violation over its four IPs (beat-wide m_axi ports, no
pointer in static state, no run-time trip inside a pipelined or unrolled region other than the loop's
own, no floating point, no C-simulation code reachable, DRAM accessed in bursts) and every pipelined
loop at II 1; the library's others are refused with a reason naming them."""

from pathlib import Path

import numpy as np
import pytest
import yaml

from codax.codegen import core_hw
from codax.codegen.core import core_shape, full_engine
from codax.errors import UnsupportedError
from codax.hw import library
from codax.hw.library import list_accelerators, load_accelerator
from codax.ir import load_accelerator_yaml

LIBRARY = Path(library.__file__).parent / "accelerators"
BASE = yaml.safe_load((LIBRARY / "zc706-int8.yaml").read_text())


# ROWS <= COLS: the store assembles a COLS-lane output vector from accumulator vectors; ROWS > COLS: it
# writes one COLS-lane part of an accumulator vector a STORE
ARRAYS = ((8, 16), (16, 16), (8, 32), (32, 32), (32, 16), (16, 8), (64, 16))


def _random_accelerators(n: int, seed: int = 0) -> list:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        d = yaml.safe_load(yaml.safe_dump(BASE))
        rows, cols = ARRAYS[i % len(ARRAYS)]
        widths = [[8], [8, 4], [8, 6, 4]][int(rng.integers(3))]
        d["name"] = f"random-{i}"
        d["pe_array"].update(rows=rows, cols=cols)
        d["precision"].update(weight=widths, act=widths)
        d["dram"]["bandwidth"] = int(rng.choice([16, 32]))
        d["levels"][0]["sizes"] = {
            "W": int(rng.choice([32, 64, 128])) * 1024,
            "I": int(rng.choice([32, 64, 128])) * 1024,
            "O": int(rng.choice([16, 32, 64])) * 1024,
        }
        out.append(load_accelerator_yaml(yaml.safe_dump(d)))
    return out


def _served(accel) -> bool:
    try:
        return full_engine(core_shape(accel))
    except UnsupportedError as e:
        assert accel.name in str(e)  # a refusal names the accelerator
        return False


def test_library_accelerators_are_served_or_refused_by_name():
    served = [n for n in list_accelerators() if _served(load_accelerator(n))]
    assert {"zc706-int8", "zcu102-int8"} <= set(served)


RANDOM = _random_accelerators(len(ARRAYS))


def test_random_accelerators_are_mostly_served():
    # a small array under deep buffers needs fields wider than a 128-bit instruction holds: refused, naming
    # the accelerator and the fields (VTA sizes its buffers to its instruction fields the same way)
    assert sum(_served(a) for a in RANDOM) >= len(RANDOM) // 2
    assert any(_served(a) and a.engine().pe_array.rows > a.engine().pe_array.cols for a in RANDOM)


@pytest.mark.parametrize("accel", RANDOM, ids=lambda a: a.name)
def test_random_accelerators_read_as_hardware(accel):
    if not _served(accel):
        with pytest.raises(UnsupportedError, match=f"{accel.name}: the (gemm|load|store) instruction needs"):
            core_shape(accel)
        return
    shape = core_shape(accel)
    assert core_hw.violations(shape) == []
    iis = core_hw.ip_loop_iis(shape)
    assert set(iis) == {"fetch", "load", "gemm", "store"} and set(iis.values()) == {1}
