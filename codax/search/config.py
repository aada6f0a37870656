"""Search configuration: typed sections (dataclasses), presets, YAML loading and validation.

`load_config` builds a `SearchConfig` from the user's dict or YAML file: a config names only what it
changes (every field has its default), and every key is checked as it is read -- an unknown or
misspelled key, a value of the wrong type or outside its options is a ConfigError that names the
field (`search.epochz`, `data.name`), so a typo fails at load instead of being silently ignored.
`SearchConfig.to_dict()` gives the YAML form back (config.yaml, checkpoints).
"""

from __future__ import annotations

import copy
import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

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


def _key(f: dataclasses.Field) -> str:
    """The config key of a field (`search.lambda` is the field `lambda_`: a Python keyword)."""
    return f.metadata.get("key", f.name)


@dataclass
class DataConfig:
    name: Literal["digits", "cifar10", "cifar100", "imagefolder"] = "digits"
    root: str | None = None  # folder for cifar* / imagefolder
    image_size: int | None = None  # imagefolder: square size the images are cropped to (default 32)
    test_fraction: float = 0.2  # digits / imagefolder: held-out test split
    val_fraction: float = 0.5  # of the remaining data: the architecture (validation) split
    limit: int | None = None  # use at most this many training images (quick runs)
    workers: int = 0  # DataLoader worker processes for cifar* / imagefolder (0: in the main process)
    augment: bool = True  # cifar*: padded random crop + flip; imagefolder: random resized crop + flip
    stats_images: int = 512  # cifar* / imagefolder: training images the normalisation is estimated on


@dataclass
class Stem:
    width: int
    stride: int


@dataclass
class Stage:
    width: int
    depth: int
    stride: int


@dataclass
class Layout:
    """The supernet's layout: stem, stages of searchable blocks, optional 1x1 head width."""

    stem: Stem
    stages: list[Stage]
    head: int | None = None


@dataclass
class NetworkConfig:
    preset: str = "small8"
    stem: Stem | None = None  # override the preset's stem / stages / head
    stages: list[Stage] | None = None
    head: int | None = None
    kernels: list[int] = field(default_factory=lambda: [3, 5])
    expansions: list[int] = field(default_factory=lambda: [1, 3, 6])
    skip: bool = True
    width_mult: float = 1.0
    share_weights: bool = True  # supernet: the IR ops of a block share superkernels (supernet.SharedIR)


@dataclass
class BitsConfig:
    choices: list[int] = field(default_factory=lambda: [4, 6, 8])
    first_last: int = 8
    search: bool = True


@dataclass
class BufferOptions:
    """Buffer size options in KB, per operand."""

    W: list[float] = field(default_factory=lambda: [32, 128, 512])
    I: list[float] = field(default_factory=lambda: [32, 128, 512])
    O: list[float] = field(default_factory=lambda: [16, 64, 256])


@dataclass
class FixedBuffers:
    W: float
    I: float
    O: float


Dataflow = Literal["weight-stationary", "output-stationary"]


@dataclass
class FixedAccelerator:
    """A frozen accelerator (network-only search): one value per accelerator choice."""

    rows: int
    cols: int
    buffer_kb: FixedBuffers
    dataflow: Dataflow
    double_buffer: bool


@dataclass
class AcceleratorConfig:
    base: str = "zc706-int8"  # library design giving target, device, clock, DRAM bandwidth
    rows: list[int] = field(default_factory=lambda: [8, 16, 32])
    cols: list[int] = field(default_factory=lambda: [8, 16, 32])
    buffer_kb: BufferOptions = field(default_factory=BufferOptions)
    dataflow: list[Dataflow] = field(default_factory=lambda: ["weight-stationary", "output-stationary"])
    double_buffer: list[bool] = field(default_factory=lambda: [True, False])
    banks: int = 16
    buffer_bandwidth: float = 128
    chunks: int = 1  # >1: a pipeline of engines (DNA / Auto-NBA chunks), one per group of stages
    fixed: FixedAccelerator | None = None  # freeze the accelerator (network-only search)


@dataclass
class BudgetConfig:
    """None: the device's full budget (fpga)."""

    dsp: float | None = None
    bram18: float | None = None
    area_mm2: float | None = None


@dataclass
class SearchSettings:
    # Auto-NBA's schedule scaled to the epochs: weights alone for the first quarter (30 of 120), and
    # the Gumbel temperature from 5 down to 5 * 0.975^120 (0.24) at the end (0.88^24 = 0.975^120)
    epochs: int = 24
    warmup_epochs: int = 6
    batch_size: int = 64
    w_lr: float = 0.05
    w_momentum: float = 0.9
    w_weight_decay: float = 4e-5
    a_lr: float = 0.01
    tau0: float = 5.0
    tau_decay: float = 0.88
    # pair: one sampled op per block in the weight step, a sampled pair in the architecture step, the
    # task loss and the hardware term through the same gates (sampling.py) | soft: all ops mixed (FBNet)
    op_sampling: Literal["pair", "soft"] = "pair"
    objective: Literal["latency", "energy", "edp", "flops"] = "latency"  # flops: network-only proxy
    lambda_: float = field(default=0.3, metadata={"key": "lambda"})
    target_fps: float | None = None
    lambda_step: float = 1.05  # most lambda moves per architecture step (x or /), see lambda_update
    target_band: float = 0.1  # relative miss of the target FPS at which lambda moves by a full step
    fit_target: bool = True  # derive: fit the argmax design's ops and widths to target_fps (refine.py)
    # derive: widths while spending slack (refine.py). supernet: a wider layer competes with op
    # changes on supernet `val` accuracy gained per cycle; searched: the search's argmax widths
    # stay; noise: raised first, by the quantisation-noise prior (4^-b per tensor) per cycle
    spend_widths: Literal["supernet", "searched", "noise"] = "supernet"
    derive_candidates: int = 4  # derive: argmax designs of this many last epochs are fitted and ranked
    # derive: how the fitted candidates that meet the target are ranked. trained: each trained from
    # scratch on `train` with the retrain recipe for derive_train_epochs (null: retrain.epochs),
    # accuracy on `val`, over derive_train_seeds seeds; supernet: the supernet's `val` accuracy
    derive_rank: Literal["trained", "supernet"] = "trained"
    derive_train_epochs: int | None = None
    derive_train_seeds: int = 5
    penalty: float = 10.0
    cost: Literal["analytic", "surrogate"] = "analytic"
    # analytic cost tables: mapper: each layer under the exact mapper's mapping on each accelerator
    # point (mappertable.py; the cost of what is derived) | templates: fixed tilings (hwcost.py)
    relaxed_cost: Literal["mapper", "templates"] = "mapper"
    relaxed: bool = True
    mapping_candidates: int = 3  # templates: the mapping logits choose among this many per layer
    # the accelerator distribution (acceldist.py): an exact expectation over a space of at most this
    # many fitting points, else this many points drawn per architecture step (>= 1 with one engine,
    # >= 2 with accelerator.chunks > 1)
    accel_exact: int = 32
    accel_samples: int = 2
    exact_every: int = 0  # steps between exact-mapper evaluations of the derived design (0: per epoch)
    max_steps_per_epoch: int | None = None
    threads: int | None = 1  # CPU intra-op threads: these tensors are small, extra threads mostly contend
    # true: steps keep each unit's input only and recompute the unit in backward (activation
    # checkpointing): memory of one unit instead of the network's, one more forward per step (the
    # cifar22 weight step at batch 64: 1.7 GB and 4.9 s against 3.5 GB and 3.1 s on one CPU thread).
    # auto: only in a step whose activations kept for backward are estimated above 512 MB
    # (supernet.RECOMPUTE_AUTO_BYTES): the 22-block 32x32 search at batch 64 recomputes (within its
    # 3 GB), the default digits search (8x8) does not (no extra forward). false: never
    recompute: Literal["auto", True, False] = "auto"


@dataclass
class SurrogateConfig:
    oracle: str = "codax"  # codax | csv:<path> | <module>:<function>
    samples: int = 3000
    hidden: int = 128
    epochs: int = 300
    lr: float = 0.003


@dataclass
class RetrainConfig:
    epochs: int = 20
    lr: float = 0.05
    batch_size: int = 64
    quantize: bool = True


@dataclass
class ExportConfig:
    qdq: bool = True
    calib_batches: int = 4
    opset: int = 17


@dataclass
class SearchConfig:
    """The whole search configuration; every section has its defaults (the bundled digits run)."""

    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    network: NetworkConfig = field(default_factory=NetworkConfig)
    bits: BitsConfig = field(default_factory=BitsConfig)
    accelerator: AcceleratorConfig = field(default_factory=AcceleratorConfig)
    budget: BudgetConfig = field(default_factory=BudgetConfig)
    search: SearchSettings = field(default_factory=SearchSettings)
    surrogate: SurrogateConfig = field(default_factory=SurrogateConfig)
    retrain: RetrainConfig = field(default_factory=RetrainConfig)
    export: ExportConfig = field(default_factory=ExportConfig)

    def to_dict(self) -> dict:
        """The YAML form (keys as a config file spells them)."""
        return _to_dict(self)


def _to_dict(v: Any) -> Any:
    if dataclasses.is_dataclass(v):
        return {_key(f): _to_dict(getattr(v, f.name)) for f in dataclasses.fields(v)}
    if isinstance(v, list):
        return [_to_dict(x) for x in v]
    return copy.deepcopy(v)


def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) is Literal:
        opts = [repr(a) for a in typing.get_args(tp)]
        return ", ".join(opts[:-1]) + " or " + opts[-1] if len(opts) > 1 else opts[0]
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return " or ".join("null" if a is type(None) else _type_name(a) for a in typing.get_args(tp))
    if typing.get_origin(tp) is list:
        return f"a list of {_type_name(typing.get_args(tp)[0])}"
    if dataclasses.is_dataclass(tp):
        return "a mapping of " + ", ".join(_key(f) for f in dataclasses.fields(tp))
    names = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}
    return names.get(tp, getattr(tp, "__name__", str(tp)))


def _coerce(tp: Any, v: Any, where: str) -> Any:
    """`v` checked against the field type `tp` (ConfigError naming `where` when it does not fit)."""
    origin = typing.get_origin(tp)
    bad = ConfigError(f"config: {where} must be {_type_name(tp)}, got {v!r}")
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if v is None and type(None) in args:
            return None
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(a, v, where)
            except ConfigError:
                if len(args) == 2:  # X | None: the error of X names what is wrong
                    raise
        raise bad
    if origin is Literal:
        if v not in typing.get_args(tp):
            raise bad
        return v
    if origin is list:
        if not isinstance(v, (list, tuple)):
            raise bad
        (item,) = typing.get_args(tp)
        return [_coerce(item, x, f"{where}[{i}]") for i, x in enumerate(v)]
    if dataclasses.is_dataclass(tp):
        return _build(tp, v, f"{where}.")
    if tp is bool:
        if not isinstance(v, bool):
            raise bad
        return v
    if tp is int:
        if isinstance(v, bool) or not isinstance(v, int):
            raise bad
        return v
    if tp is float:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise bad
        return v
    if tp is str:
        if not isinstance(v, str):
            raise bad
        return v
    return copy.deepcopy(v)  # Any


def _build(cls: type, raw: Any, where: str = "") -> Any:
    """A `cls` from a mapping: unknown keys and missing required ones are errors naming them."""
    fs = dataclasses.fields(cls)
    keys = [_key(f) for f in fs]
    if not isinstance(raw, dict):
        raise ConfigError(
            f"config: {where.rstrip('.') or 'the config'} must be a mapping of {', '.join(keys)}"
        )
    for k in raw:
        if k not in keys:
            raise ConfigError(f"config: unknown key {where}{k}.{did_you_mean(str(k), keys)}")
    hints = typing.get_type_hints(cls)
    kw = {}
    for f in fs:
        k = _key(f)
        if k in raw:
            kw[f.name] = _coerce(hints[f.name], raw[k], where + k)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"config: {where}{k} is required ({_type_name(hints[f.name])})")
    return cls(**kw)


DEFAULTS: dict[str, Any] = SearchConfig().to_dict()


def load_config(config: SearchConfig | dict | str | Path | None) -> SearchConfig:
    """The full config: the user's dict or YAML file over the defaults, typed and validated."""
    if isinstance(config, SearchConfig):
        cfg = copy.deepcopy(config)
    else:
        user = {} if config is None else load_yaml(config if not isinstance(config, Path) else str(config))
        if user is None:
            user = {}
        if not isinstance(user, dict):
            raise ConfigError(
                "config: a search config must be a mapping of sections (data, network, search, ...)"
            )
        cfg = _build(SearchConfig, user)
    _validate(cfg)
    return cfg


def network_layout(cfg: SearchConfig) -> Layout:
    """The preset's stem / stages / head with the config's overrides applied."""
    net = cfg.network
    if net.preset not in PRESETS:
        raise ConfigError(
            f"config: network.preset {net.preset!r} is unknown." + did_you_mean(net.preset, list(PRESETS))
        )
    lay = _build(Layout, PRESETS[net.preset], "network.")
    if net.stem is not None:
        lay.stem = copy.deepcopy(net.stem)
    if net.stages is not None:
        lay.stages = copy.deepcopy(net.stages)
    if net.head is not None:
        lay.head = net.head
    wm = float(net.width_mult)
    if wm != 1.0:
        lay.stem.width = max(4, int(round(lay.stem.width * wm)))
        for s in lay.stages:
            s.width = max(4, int(round(s.width * wm)))
    return lay


def _positive(where: str, v: int | None, allow_none: bool = False) -> None:
    if (v is None and allow_none) or (v is not None and v >= 1):
        return
    raise ConfigError(
        f"config: {where} must be a positive integer{' or null' if allow_none else ''}, got {v!r}"
    )


def _validate(cfg: SearchConfig) -> None:
    """Ranges and relations the types do not say."""
    s = cfg.search
    if not s.target_band > 0:
        raise ConfigError(
            f"config: search.target_band {s.target_band!r} must be > 0 (the relative miss of the "
            "target FPS at which lambda moves by a full step, see cosearch.lambda_update)"
        )
    if not s.lambda_step >= 1:
        raise ConfigError(
            f"config: search.lambda_step {s.lambda_step!r} must be >= 1 (the most lambda moves per "
            "architecture step, see cosearch.lambda_update)"
        )
    _positive("search.derive_train_epochs", s.derive_train_epochs, allow_none=True)
    for k in ("epochs", "batch_size", "mapping_candidates", "derive_train_seeds", "derive_candidates"):
        _positive(f"search.{k}", getattr(s, k))
    if s.accel_exact < 0:
        raise ConfigError(f"config: search.accel_exact must be >= 0, got {s.accel_exact}")
    _positive("search.accel_samples", s.accel_samples)
    # one engine: the local expectations of one draw are unbiased alone (acceldist.py); several
    # engines draw whole points jointly and take the score function with a leave-one-out baseline
    # (acceldist.score_loss), which needs a second draw. A fixed accelerator draws nothing.
    if s.accel_samples < 2 and cfg.accelerator.chunks > 1 and cfg.accelerator.fixed is None:
        raise ConfigError(
            f"config: search.accel_samples must be >= 2 with accelerator.chunks > 1 (the engines' "
            f"points are drawn jointly and the leave-one-out baseline of their gradient needs two "
            f"draws), got {s.accel_samples} with {cfg.accelerator.chunks} engines; set "
            f"search.accel_samples: 2 or accelerator.chunks: 1"
        )
    if not (isinstance(s.recompute, bool) or s.recompute == "auto"):  # a Literal lets 1 == True in
        raise ConfigError(f"config: search.recompute must be true, false or 'auto', got {s.recompute!r}")
    _positive("search.max_steps_per_epoch", s.max_steps_per_epoch, allow_none=True)
    _positive("search.threads", s.threads, allow_none=True)
    if not 0 <= s.warmup_epochs <= s.epochs:
        raise ConfigError("config: search.warmup_epochs must be between 0 and search.epochs")
    if s.mapping_candidates > 3:
        raise ConfigError("config: search.mapping_candidates must be 1..3 (templates: O-, W-, I-reuse)")
    if s.exact_every < 0:
        raise ConfigError(f"config: search.exact_every must be >= 0 (0: once per epoch), got {s.exact_every}")
    b = cfg.bits.choices
    if not b or any(not 2 <= x <= 16 for x in b):
        raise ConfigError(f"config: bits.choices must be integers in 2..16, got {b!r}")
    net = cfg.network
    if any(k not in (3, 5, 7) for k in net.kernels) or not net.kernels:
        raise ConfigError(f"config: network.kernels must be a non-empty subset of 3, 5, 7; got {net.kernels}")
    if not net.expansions or any(e < 1 for e in net.expansions):
        raise ConfigError(f"config: network.expansions must be positive integers, got {net.expansions}")
    lay = network_layout(cfg)
    for i, st in enumerate(lay.stages):
        for k in ("width", "depth", "stride"):
            _positive(f"network.stages[{i}].{k}", getattr(st, k))
    a = cfg.accelerator
    for k in ("rows", "cols", "dataflow", "double_buffer"):
        if not getattr(a, k):
            raise ConfigError(f"config: accelerator.{k} must be a non-empty list of options")
    for op in "WIO":
        if not getattr(a.buffer_kb, op):
            raise ConfigError(f"config: accelerator.buffer_kb.{op} must be a non-empty list of sizes in KB")
    if not 1 <= a.chunks <= len(lay.stages) + 2:
        raise ConfigError("config: accelerator.chunks must be an integer from 1 to the number of stages")
    d = cfg.data
    if not 0 <= d.test_fraction < 1 or not 0 < d.val_fraction < 1:
        raise ConfigError("config: data.test_fraction must be in [0, 1) and data.val_fraction in (0, 1)")
    _positive("data.limit", d.limit, allow_none=True)
    _positive("data.image_size", d.image_size, allow_none=True)
    _positive("data.stats_images", d.stats_images)
    if d.workers < 0:
        raise ConfigError(f"config: data.workers must be >= 0, got {d.workers}")
