"""A small metrics registry: counters, gauges and histograms in Prometheus' text format.

Just what the daemon's ``/metrics`` needs, so no client library: metric families with fixed
label names, samples kept in memory, and :meth:`Registry.render` writing text exposition format
0.0.4 (``# HELP`` and ``# TYPE`` lines, escaped label values, histograms as cumulative
``_bucket{le=...}`` lines with ``_sum`` and ``_count``). Everything runs on the daemon's event
loop, so nothing here locks.
"""

from __future__ import annotations

import bisect
import math
import re
from collections.abc import Iterator, Sequence
from typing import TypeVar

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")

LabelKey = tuple[str, ...]
Sample = tuple[str, LabelKey, tuple[tuple[str, str], ...], float]


class Metric:
    """A metric family: a name, a help text, label names, and one sample per label set."""

    kind = "untyped"

    def __init__(self, name: str, help: str, labels: Sequence[str] = ()) -> None:
        if not _NAME.fullmatch(name):
            raise ValueError(f"invalid metric name {name!r}: use letters, digits, _ and :")
        for label in labels:
            if not _LABEL.fullmatch(label) or label.startswith("__"):
                raise ValueError(f"invalid label name {label!r} for metric {name}")
        if len(set(labels)) != len(labels):
            raise ValueError(f"metric {name} names a label twice: {list(labels)}")
        self.name = name
        self.help = help
        self.labels = tuple(labels)

    def _key(self, labels: dict[str, str]) -> LabelKey:
        if labels.keys() != set(self.labels):
            raise ValueError(
                f"metric {self.name} takes labels {list(self.labels)}, got {sorted(labels)}"
            )
        return tuple(str(labels[name]) for name in self.labels)

    def samples(self) -> Iterator[Sample]:
        """(sample name, label values, extra labels, value), in a stable order."""
        raise NotImplementedError

    def render(self) -> Iterator[str]:
        yield f"# HELP {self.name} {_escape_help(self.help)}"
        yield f"# TYPE {self.name} {self.kind}"
        for sample, key, extra, value in self.samples():
            pairs = [*zip(self.labels, key, strict=True), *extra]
            labels = ",".join(f'{k}="{_escape_label(v)}"' for k, v in pairs)
            yield (
                f"{sample}{{{labels}}} {_number(value)}" if labels else f"{sample} {_number(value)}"
            )


class Counter(Metric):
    """A count that only goes up (name it ``..._total``)."""

    kind = "counter"

    def __init__(self, name: str, help: str, labels: Sequence[str] = ()) -> None:
        super().__init__(name, help, labels)
        self._values: dict[LabelKey, float] = {} if labels else {(): 0.0}

    def inc(self, amount: float = 1.0, /, **labels: str) -> None:
        if amount < 0:
            raise ValueError(f"counter {self.name} cannot go down (inc by {amount})")
        key = self._key(labels)
        self._values[key] = self._values.get(key, 0.0) + amount

    def value(self, **labels: str) -> float:
        """The current count for ``labels`` (0 if never incremented)."""
        return self._values.get(self._key(labels), 0.0)

    def samples(self) -> Iterator[Sample]:
        for key in sorted(self._values):
            yield self.name, key, (), self._values[key]


class Gauge(Metric):
    """A value that is set (a timestamp, a size)."""

    kind = "gauge"

    def __init__(self, name: str, help: str, labels: Sequence[str] = ()) -> None:
        super().__init__(name, help, labels)
        self._values: dict[LabelKey, float] = {}

    def set(self, value: float, /, **labels: str) -> None:
        self._values[self._key(labels)] = value

    def value(self, **labels: str) -> float | None:
        """The value set for ``labels``; None if never set."""
        return self._values.get(self._key(labels))

    def samples(self) -> Iterator[Sample]:
        for key in sorted(self._values):
            yield self.name, key, (), self._values[key]


class Histogram(Metric):
    """Observations counted into buckets by upper bound, with their sum and count."""

    kind = "histogram"

    def __init__(
        self, name: str, help: str, labels: Sequence[str] = (), *, buckets: Sequence[float]
    ) -> None:
        if "le" in labels:
            raise ValueError(f"histogram {name} cannot have a label named 'le'")
        super().__init__(name, help, labels)
        bounds = sorted(set(buckets))
        if not bounds or not all(math.isfinite(b) for b in bounds):
            raise ValueError(f"histogram {name} needs finite bucket bounds (+Inf is implied)")
        self.buckets = tuple(bounds)
        # Per label set: the count in each bucket (not cumulative; the last one is +Inf), sum.
        self._counts: dict[LabelKey, list[int]] = {}
        self._sums: dict[LabelKey, float] = {}

    def observe(self, value: float, /, **labels: str) -> None:
        key = self._key(labels)
        counts = self._counts.setdefault(key, [0] * (len(self.buckets) + 1))
        counts[bisect.bisect_left(self.buckets, value)] += 1  # le: value <= bound
        self._sums[key] = self._sums.get(key, 0.0) + value

    def count(self, **labels: str) -> int:
        return sum(self._counts.get(self._key(labels), ()))

    def sum(self, **labels: str) -> float:
        return self._sums.get(self._key(labels), 0.0)

    def samples(self) -> Iterator[Sample]:
        for key in sorted(self._counts):
            cumulative = 0
            for bound, n in zip((*self.buckets, math.inf), self._counts[key], strict=True):
                cumulative += n
                yield f"{self.name}_bucket", key, (("le", _number(bound)),), cumulative
            yield f"{self.name}_sum", key, (), self._sums[key]
            yield f"{self.name}_count", key, (), cumulative


_M = TypeVar("_M", bound=Metric)


class Registry:
    """The metric families one ``/metrics`` page shows, in the order they were made."""

    def __init__(self) -> None:
        self._metrics: dict[str, Metric] = {}

    def _add(self, metric: _M) -> _M:
        if metric.name in self._metrics:
            raise ValueError(f"metric {metric.name} is already registered")
        self._metrics[metric.name] = metric
        return metric

    def counter(self, name: str, help: str, labels: Sequence[str] = ()) -> Counter:
        return self._add(Counter(name, help, labels))

    def gauge(self, name: str, help: str, labels: Sequence[str] = ()) -> Gauge:
        return self._add(Gauge(name, help, labels))

    def histogram(
        self, name: str, help: str, labels: Sequence[str] = (), *, buckets: Sequence[float]
    ) -> Histogram:
        return self._add(Histogram(name, help, labels, buckets=buckets))

    def render(self) -> str:
        """Every metric in Prometheus text exposition format 0.0.4 (ends with a newline)."""
        lines = [line for metric in self._metrics.values() for line in metric.render()]
        return "\n".join(lines) + "\n" if lines else ""


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == int(value) and abs(value) < 2**53:
        return str(int(value))
    return repr(float(value))
