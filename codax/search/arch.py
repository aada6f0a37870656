"""Architecture parameters (op, bit, mapping and accelerator logits) and their sampling."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from codax.search.space import SUBS, AccelSpace, NetworkSpace


class ArchParams(nn.Module):
    """All logits the architecture step trains. Invalid ops of a unit are masked to -inf."""

    def __init__(
        self,
        net: NetworkSpace,
        space: AccelSpace,
        n_bits: int,
        chunks: int,
        m_count: int,
        fixed_bits: list[int | None],
        search_bits: bool = True,
    ):
        super().__init__()
        U, O = len(net.units), net.max_ops
        mask = torch.full((U, O), float("-inf"))
        for u, unit in enumerate(net.units):
            mask[u, : len(unit.ops)] = 0.0
        self.register_buffer("op_mask", mask)
        self.alpha = nn.Parameter(torch.zeros(U, O))
        self.beta_w = nn.Parameter(torch.zeros(U, n_bits))
        self.beta_a = nn.Parameter(torch.zeros(U, n_bits))
        bmask = torch.zeros(U, n_bits)
        for u, fb in enumerate(fixed_bits):  # first/last layers at a fixed width
            if fb is not None:
                bmask[u] = float("-inf")
                bmask[u, fb] = 0.0
            elif not search_bits:
                bmask[u] = float("-inf")
                bmask[u, n_bits - 1] = 0.0
        self.register_buffer("bit_mask", bmask)
        if m_count > 1:  # a choice among mapping templates
            self.map_logits = nn.Parameter(torch.zeros(U, len(SUBS), m_count))
        else:  # one mapping per layer and point (the mapper's): nothing to choose, no parameter
            self.register_buffer("map_logits", torch.zeros(U, len(SUBS), 1))
        self.accel = nn.ParameterList(
            nn.Parameter(torch.zeros(k)) for _ in range(chunks) for k in space.sizes
        )
        self.n_cat = len(space.sizes)
        self.chunks = chunks

    def accel_logits(self, e: int) -> list[torch.Tensor]:
        return list(self.accel[e * self.n_cat : (e + 1) * self.n_cat])

    # --- probabilities ------------------------------------------------------------------------------
    def op_probs(self, tau: float | None = None) -> torch.Tensor:
        """softmax(logits / tau) of the ops (masked): the distribution the paths are sampled from
        at tau = 1 (sampling.PathSampler draws them, from its own generator)."""
        return F.softmax((self.alpha + self.op_mask) / (tau or 1.0), -1)

    def bit_probs(self, which: str, tau: float | None = None) -> torch.Tensor:
        logits = (self.beta_w if which == "w" else self.beta_a) + self.bit_mask
        return F.softmax(logits / (tau or 1.0), -1)

    def map_probs(self) -> torch.Tensor:
        return F.softmax(self.map_logits, -1)

    def accel_probs(self) -> list[list[torch.Tensor]]:
        return [[F.softmax(lg, -1) for lg in self.accel_logits(e)] for e in range(self.chunks)]

    def argmax_ops(self) -> list[int]:
        return (self.alpha + self.op_mask).argmax(-1).tolist()

    def argmax_bits(self, choices: list[int]) -> list[tuple[int, int]]:
        w = (self.beta_w + self.bit_mask).argmax(-1).tolist()
        a = (self.beta_a + self.bit_mask).argmax(-1).tolist()
        return [(choices[i], choices[j]) for i, j in zip(w, a)]

    def onehot(self, kind: str) -> torch.Tensor:
        if kind == "op":
            lg = self.alpha + self.op_mask
        elif kind == "w":
            lg = self.beta_w + self.bit_mask
        else:
            lg = self.beta_a + self.bit_mask
        return F.one_hot(lg.argmax(-1), lg.shape[-1]).float()
