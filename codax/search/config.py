"""Search configuration: the bundled defaults, presets, YAML loading and validation.

A config is a plain nested dict (YAML-friendly). `load_config` merges the user's dict over the
defaults, so a config only names what it changes, and checks every key so a typo fails early with
the field's name instead of being silently ignored.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from codax.errors import ConfigError, did_you_mean
from codax.ir.yaml_io import load_yaml

# Supernet presets: stages of searchable blocks (width, depth, first stride), stem and input size.
PRESETS: dict[str, dict[str, Any]] = {
    # 8x8 inputs (scikit-learn digits): three small stages
    "small8": {
        "stem": {"width": 8, "stride": 1},
        "stages": [
            {"width": 8, "depth": 1, "stride": 1},
            {"width": 16, "depth": 2, "stride": 2},
            {"width": 24, "depth": 2, "stride": 2},
        ],
        "head": None,
    },
    # 32x32 inputs (CIFAR)
    "small32": {
        "stem": {"width": 16, "stride": 1},
        "stages": [
            {"width": 16, "depth": 1, "stride": 1},
            {"width": 24, "depth": 2, "stride": 2},
            {"width": 32, "depth": 3, "stride": 2},
            {"width": 64, "depth": 2, "stride": 2},
        ],
        "head": 256,
    },
    # 32x32 inputs (CIFAR) at the FBNet / Auto-NBA scale: 22 searchable blocks [1,4,4,4,4,4,1],
    # Auto-NBA's CIFAR strides (stem and first two stages at full resolution)
    "cifar22": {
        "stem": {"width": 16, "stride": 1},
        "stages": [
            {"width": 16, "depth": 1, "stride": 1},
            {"width": 24, "depth": 4, "stride": 1},
            {"width": 32, "depth": 4, "stride": 2},
            {"width": 64, "depth": 4, "stride": 2},
            {"width": 112, "depth": 4, "stride": 1},
            {"width": 184, "depth": 4, "stride": 2},
            {"width": 352, "depth": 1, "stride": 1},
        ],
        "head": 1504,
    },
    # ImageNet-size inputs (224x224): the FBNet / Auto-NBA layout [1,4,4,4,4,4,1]
    "imagenet": {
        "stem": {"width": 16, "stride": 2},
        "stages": [
            {"width": 16, "depth": 1, "stride": 1},
            {"width": 24, "depth": 4, "stride": 2},
            {"width": 32, "depth": 4, "stride": 2},
            {"width": 64, "depth": 4, "stride": 2},
            {"width": 112, "depth": 4, "stride": 1},
            {"width": 184, "depth": 4, "stride": 2},
            {"width": 352, "depth": 1, "stride": 1},
        ],
        "head": 1504,
    },
}

DEFAULTS: dict[str, Any] = {
    "seed": 0,
    "data": {
        "name": "digits",  # digits | cifar10 | cifar100 | imagefolder
        "root": None,  # folder for cifar* / imagefolder
        "image_size": None,  # imagefolder: resize to this square size (default 32)
        "test_fraction": 0.2,  # digits / imagefolder: held-out test split
        "val_fraction": 0.5,  # of the remaining data: the architecture (validation) split
        "limit": None,  # use at most this many training images (quick runs)
    },
    "network": {
        "preset": "small8",
        "stem": None,  # override the preset's stem / stages / head
        "stages": None,
        "head": None,
        "kernels": [3, 5],
        "expansions": [1, 3, 6],
        "skip": True,
        "width_mult": 1.0,
        "share_weights": True,  # supernet: the IR ops of a block share superkernels (supernet.SharedIR)
    },
    "bits": {"choices": [4, 6, 8], "first_last": 8, "search": True},
    "accelerator": {
        "base": "zc706-int8",  # library design giving target, device, clock, DRAM bandwidth
        "rows": [8, 16, 32],
        "cols": [8, 16, 32],
        "buffer_kb": {"W": [32, 128, 512], "I": [32, 128, 512], "O": [16, 64, 256]},
        "dataflow": ["weight-stationary", "output-stationary"],
        "double_buffer": [True, False],
        "banks": 16,
        "buffer_bandwidth": 128,
        "chunks": 1,  # >1: a pipeline of engines (DNA / Auto-NBA chunks), one per group of stages
        "fixed": None,  # {rows:, cols:, ...} single values: freeze the accelerator (network-only search)
    },
    "budget": {"dsp": None, "bram18": None, "area_mm2": None},  # None: the device's full budget (fpga)
    "search": {
        "epochs": 24,
        "warmup_epochs": 4,
        "batch_size": 64,
        "w_lr": 0.05,
        "w_momentum": 0.9,
        "w_weight_decay": 4e-5,
        "a_lr": 0.01,
        "tau0": 5.0,
        "tau_decay": 0.9,
        "op_sampling": "hard",  # hard: one sampled path per step (GDAS) | soft: all ops mixed (FBNet)
        "objective": "latency",  # latency | energy | edp | flops (network-only proxy)
        "lambda": 0.3,
        "target_fps": None,
        "lambda_step": 1.05,  # most lambda moves per architecture step (x or /), see lambda_update
        "target_band": 0.1,  # relative miss of the target FPS at which lambda moves by a full step
        "fit_target": True,  # derive: fit the argmax design's ops and widths to target_fps (refine.py)
        # derive: widths while spending slack (refine.py). supernet: a wider layer competes with op
        # changes on supernet `val` accuracy gained per cycle; searched: the search's argmax widths
        # stay; noise: raised first, by the quantisation-noise prior (4^-b per tensor) per cycle
        "spend_widths": "supernet",
        "derive_candidates": 4,  # derive: argmax designs of this many last epochs are fitted and ranked
        # derive: how the fitted candidates that meet the target are ranked. trained: each trained from
        # scratch on `train` with the retrain recipe for derive_train_epochs (null: retrain.epochs),
        # accuracy on `val`, over derive_train_seeds seeds; supernet: the supernet's `val` accuracy
        "derive_rank": "trained",
        "derive_train_epochs": None,
        "derive_train_seeds": 5,
        "penalty": 10.0,
        "cost": "analytic",  # analytic | surrogate
        "relaxed": True,
        "mapping_candidates": 3,
        "exact_every": 0,  # steps between exact-mapper evaluations of the derived design (0: per epoch)
        "max_steps_per_epoch": None,
        "threads": 1,  # CPU intra-op threads: these tensors are small, extra threads mostly contend
        # steps keep each unit's input only and recompute the unit in backward (activation
        # checkpointing): memory of one unit instead of the network's, one more forward per step
        "recompute": False,
    },
    "surrogate": {
        "oracle": "codax",  # codax | csv:<path> | <module>:<function>
        "samples": 3000,
        "hidden": 128,
        "epochs": 300,
        "lr": 0.003,
    },
    "retrain": {"epochs": 20, "lr": 0.05, "batch_size": 64, "quantize": True},
    "export": {"qdq": True, "calib_batches": 4, "opset": 17},
}


def _merge(base: dict, over: dict, where: str) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if k not in base:
            raise ConfigError(f"config: unknown key {where}{k}.{did_you_mean(k, list(base))}")
        if isinstance(base[k], dict) and isinstance(v, dict) and k not in ("buffer_kb", "fixed"):
            out[k] = _merge(base[k], v, f"{where}{k}.")
        else:
            out[k] = copy.deepcopy(v)
    return out


def load_config(config: dict | str | Path | None) -> dict:
    """The full config: defaults overlaid with the user's dict or YAML file, validated."""
    user = {} if config is None else load_yaml(config if not isinstance(config, Path) else str(config))
    if user is None:
        user = {}
    if not isinstance(user, dict):
        raise ConfigError(
            "config: a search config must be a mapping of sections (data, network, search, ...)"
        )
    cfg = _merge(DEFAULTS, user, "")
    _validate(cfg)
    return cfg


def network_layout(cfg: dict) -> dict:
    """The preset's stem / stages / head with the config's overrides applied."""
    net = cfg["network"]
    if net["preset"] not in PRESETS:
        raise ConfigError(
            f"config: network.preset {net['preset']!r} is unknown."
            + did_you_mean(net["preset"], list(PRESETS))
        )
    lay = copy.deepcopy(PRESETS[net["preset"]])
    for k in ("stem", "stages", "head"):
        if net[k] is not None:
            lay[k] = copy.deepcopy(net[k])
    wm = float(net["width_mult"])
    if wm != 1.0:
        lay["stem"]["width"] = max(4, int(round(lay["stem"]["width"] * wm)))
        for s in lay["stages"]:
            s["width"] = max(4, int(round(s["width"] * wm)))
    return lay


def _validate(cfg: dict) -> None:
    s = cfg["search"]
    if s["objective"] not in ("latency", "energy", "edp", "flops"):
        raise ConfigError(
            f"config: search.objective {s['objective']!r} must be latency, energy, edp or flops"
        )
    if s["op_sampling"] not in ("hard", "soft"):
        raise ConfigError(f"config: search.op_sampling {s['op_sampling']!r} must be 'hard' or 'soft'")
    if s["cost"] not in ("analytic", "surrogate"):
        raise ConfigError(f"config: search.cost {s['cost']!r} must be 'analytic' or 'surrogate'")
    if not float(s["target_band"]) > 0:
        raise ConfigError(
            f"config: search.target_band {s['target_band']!r} must be > 0 (the relative miss of the "
            "target FPS at which lambda moves by a full step, see cosearch.lambda_update)"
        )
    if not float(s["lambda_step"]) >= 1:
        raise ConfigError(
            f"config: search.lambda_step {s['lambda_step']!r} must be >= 1 (the most lambda moves per "
            "architecture step, see cosearch.lambda_update)"
        )
    if s["spend_widths"] not in ("supernet", "searched", "noise"):
        raise ConfigError(
            f"config: search.spend_widths {s['spend_widths']!r} must be 'supernet', 'searched' or 'noise'"
        )
    if s["derive_rank"] not in ("trained", "supernet"):
        raise ConfigError(f"config: search.derive_rank {s['derive_rank']!r} must be 'trained' or 'supernet'")
    if s["derive_train_epochs"] is not None and (
        not isinstance(s["derive_train_epochs"], int) or s["derive_train_epochs"] < 1
    ):
        raise ConfigError(
            "config: search.derive_train_epochs must be a positive integer or null, "
            f"got {s['derive_train_epochs']!r}"
        )
    for k in ("epochs", "batch_size", "mapping_candidates", "derive_train_seeds"):
        if not isinstance(s[k], int) or s[k] < 1:
            raise ConfigError(f"config: search.{k} must be a positive integer, got {s[k]!r}")
    if not 0 <= s["warmup_epochs"] <= s["epochs"]:
        raise ConfigError("config: search.warmup_epochs must be between 0 and search.epochs")
    if s["mapping_candidates"] > 3:
        raise ConfigError("config: search.mapping_candidates must be 1..3 (templates: O-, W-, I-reuse)")
    b = cfg["bits"]["choices"]
    if not b or any(not isinstance(x, int) or not 2 <= x <= 16 for x in b):
        raise ConfigError(f"config: bits.choices must be integers in 2..16, got {b!r}")
    net = cfg["network"]
    if any(k not in (3, 5, 7) for k in net["kernels"]) or not net["kernels"]:
        raise ConfigError(
            f"config: network.kernels must be a non-empty subset of 3, 5, 7; got {net['kernels']}"
        )
    if not net["expansions"] or any(not isinstance(e, int) or e < 1 for e in net["expansions"]):
        raise ConfigError(f"config: network.expansions must be positive integers, got {net['expansions']}")
    lay = network_layout(cfg)
    for i, st in enumerate(lay["stages"]):
        for k in ("width", "depth", "stride"):
            if not isinstance(st.get(k), int) or st[k] < 1:
                raise ConfigError(
                    f"config: network.stages[{i}].{k} must be a positive integer, got {st.get(k)!r}"
                )
    a = cfg["accelerator"]
    for k in ("rows", "cols", "dataflow", "double_buffer"):
        if not isinstance(a[k], list) or not a[k]:
            raise ConfigError(f"config: accelerator.{k} must be a non-empty list of options")
    for df in a["dataflow"]:
        if df not in ("weight-stationary", "output-stationary"):
            raise ConfigError(
                f"config: accelerator.dataflow option {df!r} must be weight-stationary or output-stationary"
            )
    if set(a["buffer_kb"]) != {"W", "I", "O"}:
        raise ConfigError("config: accelerator.buffer_kb needs option lists for W, I and O")
    if not isinstance(a["chunks"], int) or not 1 <= a["chunks"] <= len(lay["stages"]) + 2:
        raise ConfigError("config: accelerator.chunks must be an integer from 1 to the number of stages")
    if cfg["data"]["name"] not in ("digits", "cifar10", "cifar100", "imagefolder"):
        raise ConfigError(
            f"config: data.name {cfg['data']['name']!r} must be digits, cifar10, cifar100 or imagefolder"
        )
