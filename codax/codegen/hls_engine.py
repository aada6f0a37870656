"""The HLS reader on an accelerator's generated engine: the resources its sources instantiate
(codax.codegen.hls_resources, cached on disk per content), their idiom violations
(codax.codegen.hls_idioms) and the II of each pipelined loop (codax.codegen.hls_ii)."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import sys
import tempfile
from pathlib import Path

from codax.codegen import hls_idioms as HI
from codax.codegen import hls_ii as HII
from codax.codegen import hls_reader as R
from codax.codegen import hls_resources as HR
from codax.codegen import hls_types as HT
from codax.hw.resources import LUTRAM_MAX_BITS

MAC_FUNCTIONS = ("pe_array_step",)  # the PE array's step: the float MAC engine when float layers run


def device_dsp_kind(accel) -> str | None:
    """The DSP kind of the accelerator's FPGA; None for an ASIC target (no DSP figure)."""
    if accel.target == "fpga" and accel.device:
        from codax.hw import load_device

        return load_device(accel.device).dsp_kind
    return None


def engine_source_resources(accel) -> HR.SourceResources:
    """The resources of accelerator `accel`'s generated engine (engine.cpp and its headers), read from
    the sources (cached per content: the sources are a function of the accelerator). Raises
    HlsReadError when they cannot be read."""
    from codax.codegen.engine import engine_ips, engine_sources

    src = engine_sources(accel)
    tops = tuple((e.name, tuple(engine_ips(accel, i))) for i, e in enumerate(accel.engines))
    return _cached(src.key, tuple(sorted(src.files.items())), tops, device_dsp_kind(accel))


def engine_violations(accel) -> list[HI.Violation]:
    """The idiom violations of accelerator `accel`'s generated engine (every IP a top)."""
    from codax.codegen.engine import dram_beat_bytes, engine_sources

    src = engine_sources(accel)
    return HI.check(
        src.files,
        list(src.ips),
        8 * dram_beat_bytes(accel),
        float_mac=accel.float_ok,
        mac_functions=MAC_FUNCTIONS,
    )


def engine_loop_iis(accel) -> list[HII.LoopII]:
    """The II its memory ports allow each pipelined loop of accelerator `accel`'s generated engine
    (every IP a top, read in the synthesis view)."""
    from codax.codegen.engine import engine_sources

    src = engine_sources(accel)
    sources = R.parse(dict(src.files), ("engine.cpp",))
    return HII.loop_iis(sources, sources.unit("engine.cpp", R.SYNTHESIS_VIEW), list(src.ips))


@functools.lru_cache(maxsize=16)
def _cached(key: str, files: tuple, tops: tuple, dsp_kind: str | None) -> HR.SourceResources:
    """Read once per content, also across processes: under the build cache ($CODAX_CACHE), keyed by the
    sources' hash, the tops, the DSP kind and everything else the reading depends on (cache_key). The
    disk copy is best effort: an unreadable or unwritable cache only costs a re-read."""
    from codax.codegen.csim import cache_dir

    h = hashlib.sha256(repr((key, tops, dsp_kind, cache_key())).encode()).hexdigest()[:24]
    path = cache_dir() / "hls_resources" / f"{h}.json"
    try:
        return HR.SourceResources.from_dict(json.loads(path.read_text()))
    except (OSError, ValueError, KeyError, TypeError):
        pass  # not read yet (or a damaged copy): read the sources
    res = HR.read_resources(dict(files), {e: list(t) for e, t in tops}, dsp_kind)
    _store(path, res.to_dict())
    return res


def _store(path: Path, data: dict) -> None:
    staged = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, staged = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            json.dump(data, f)
        os.replace(staged, path)  # atomic: concurrent readers of the same sources are harmless
        staged = None
    except (OSError, TypeError, ValueError):
        pass  # no disk copy: the next process reads the sources again
    finally:
        if staged is not None:
            try:
                os.unlink(staged)
            except OSError:
                pass


@functools.cache
def cache_key() -> str:
    """What the reading depends on besides the sources: the reader's code, the LUTRAM threshold, the
    parse flags of both views, the ap_types headers and libclang's version."""
    from codax.codegen.csim import MAX_LEVELS, ap_types_dir

    h = hashlib.sha256()
    for module in (R, HT, HR, sys.modules[__name__]):
        h.update(Path(module.__file__).read_bytes())
    h.update(repr(LUTRAM_MAX_BITS).encode())
    for view in (R.SYNTHESIS_VIEW, R.SIMULATION_VIEW):
        h.update(repr(R.view_flags(view, MAX_LEVELS)).encode())
    ap = ap_types_dir()
    for f in sorted(ap.glob("*.h")):
        h.update(f.name.encode())
        h.update(f.read_bytes())
    h.update(R.clang_version().encode())
    h.update(repr(R._compiler_include()).encode())
    return h.hexdigest()[:16]
