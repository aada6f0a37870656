"""The runtime schedule: an ordered list of accelerator calls and host ops (filled by codegen)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class ScheduleEntry:
    kind: str  # "accel" | "host"
    node: str  # layer or host-op name
    engine: str | None = None
    predicted_cycles: float | None = None
    attrs: dict = field(default_factory=dict)


@dataclass
class Schedule:
    entries: list[ScheduleEntry] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"entries": [e.__dict__ for e in self.entries]}
