"""What a caller may impose on the mapper's search, as a typed object.

`map_layer(constraints=...)` takes a `Constraints` or a plain dict of the same fields; a dict key
that is not a field is a ConfigError naming it (a misspelt constraint must never be ignored).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from codax.errors import ConfigError, did_you_mean

SpatialOption = dict[str, tuple[str, int]]  # array axis -> (dim, factor)


@dataclass(frozen=True)
class Constraints:
    """Restrictions on the mapping space.

    spatial        the spatial option(s) to search instead of the dataflow's own
    double_buffer  False forbids double buffering at every level
    max_points     cap on the exhaustive space (a larger space raises MemoryError)
    divisors_only  perfect factorisations only: no partial tiles (what ZigZag and Timeloop accept)
    resident       the whole layer stays on chip: no temporal loop at the DRAM level, every operand
                   crosses the DRAM boundary once
    """

    spatial: SpatialOption | tuple[SpatialOption, ...] | None = None
    double_buffer: bool = True
    max_points: int | None = None
    divisors_only: bool = False
    resident: bool = False

    def __post_init__(self) -> None:
        for name in ("double_buffer", "divisors_only", "resident"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(
                    f"mapper constraint {name!r} must be true or false, got {getattr(self, name)!r}"
                )
        mp = self.max_points
        if mp is not None and (isinstance(mp, bool) or not isinstance(mp, int) or mp < 1):
            raise ConfigError(f"mapper constraint 'max_points' must be a positive int, got {mp!r}")
        sp = self.spatial
        if sp is not None and not isinstance(sp, dict):
            if not isinstance(sp, (list, tuple)) or not all(isinstance(o, dict) for o in sp):
                raise ConfigError(
                    "mapper constraint 'spatial' must be one option {axis: (dim, factor)} or a list of them, "
                    f"got {sp!r}"
                )
            object.__setattr__(self, "spatial", tuple(sp))

    @classmethod
    def of(cls, value: Constraints | dict | None) -> Constraints:
        """A Constraints from itself, a dict of its fields or None (no constraint)."""
        if value is None:
            return cls()
        if isinstance(value, cls):
            return value
        if not isinstance(value, dict):
            raise ConfigError(
                f"mapper constraints must be a Constraints or a dict, got {type(value).__name__}"
            )
        known = [f.name for f in fields(cls)]
        for key in value:
            if key not in known:
                raise ConfigError(f"unknown mapper constraint {key!r}.{did_you_mean(str(key), known)}")
        return cls(**value)

    def spatial_options(self) -> list[SpatialOption] | None:
        """The imposed spatial options as a list, or None when the dataflow's own are searched."""
        if self.spatial is None:
            return None
        opts = [self.spatial] if isinstance(self.spatial, dict) else list(self.spatial)
        return [dict(o) for o in opts]
