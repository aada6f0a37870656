"""Ranking candidates by accuracies measured over several seeds: the one-standard-error rule."""

from __future__ import annotations


def standard_error(xs: list[float]) -> float:
    """Standard error of the mean of xs."""
    n = len(xs)
    m = sum(xs) / n
    return (sum((x - m) ** 2 for x in xs) / max(1, n - 1) / n) ** 0.5


def not_worse(a: list[float], b: list[float]) -> bool:
    """Accuracies `a` not significantly below `b` (paired by seed): mean(b - a) <= its standard error."""
    diff = [y - x for x, y in zip(a, b)]
    return sum(diff) / len(diff) <= standard_error(diff)


def one_se_pick(cands: list, accs, fps):
    """The one-standard-error rule (Breiman et al. 1984; Hastie et al., ESL 7.10) with throughput as
    the parsimony: among the candidates whose accuracies (`accs(c)`, paired by seed) are not
    significantly below the most accurate one's (not_worse), the fastest (`fps(c)`), then the more
    accurate. Accuracy differences inside the noise decide nothing; the throughput, exact and
    deterministic, is the objective the evidence can still separate."""
    mean = lambda c: sum(accs(c)) / len(accs(c))  # noqa: E731
    top = max(cands, key=mean)
    return max((c for c in cands if not_worse(accs(c), accs(top))), key=lambda c: (fps(c), mean(c)))
