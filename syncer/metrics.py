"""syncer's metrics registry: counters, gauges and histograms kept by ``prometheus_client``.

A thin layer over the Prometheus client library, so the code that counts stays small: metric
families with fixed label names, incremented with the labels as keyword arguments
(``runs.inc(job_id="moco", outcome="failed")``), read back for tests and summaries
(:meth:`Counter.value`), and exposed as Prometheus text format 0.0.4 (:meth:`Registry.render`) or
OpenMetrics 1.0 (:meth:`Registry.render_openmetrics`). Names and labels are checked when a
family is made, with messages that name the mistake. A registry made with ``process=True`` also
carries the client library's process and Python metrics (CPU, memory, open files, GC).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any, TypeVar

import prometheus_client
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest
from prometheus_client.openmetrics.exposition import CONTENT_TYPE_LATEST as OPENMETRICS_TYPE
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

__all__ = ["CONTENT_TYPE", "OPENMETRICS_TYPE", "Counter", "Gauge", "Histogram", "Registry"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Counters would each get a second "_created" series; nothing of syncer's needs them.
prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]

_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


class Metric:
    """A metric family: a name, a help text, label names, one series per label set."""

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
        self._registry: CollectorRegistry | None = None
        self._metric: Any = None

    def _attach(self, registry: CollectorRegistry) -> None:
        raise NotImplementedError

    def _series(self, labels: dict[str, str]) -> Any:
        """The client library's child for ``labels`` (created on first use)."""
        self._check(labels)
        if not self.labels:
            return self._metric
        return self._metric.labels(**{k: str(v) for k, v in labels.items()})

    def _check(self, labels: dict[str, str]) -> None:
        if labels.keys() != set(self.labels):
            raise ValueError(
                f"metric {self.name} takes labels {list(self.labels)}, got {sorted(labels)}"
            )

    def _sample(self, sample: str, labels: dict[str, str]) -> float | None:
        self._check(labels)
        assert self._registry is not None
        return self._registry.get_sample_value(sample, {k: str(v) for k, v in labels.items()})


class Counter(Metric):
    """A count that only goes up (name it ``..._total``)."""

    def _attach(self, registry: CollectorRegistry) -> None:
        self._registry = registry
        self._metric = prometheus_client.Counter(
            self.name, self.help, self.labels, registry=registry
        )

    def inc(self, amount: float = 1.0, /, **labels: str) -> None:
        if amount < 0:
            raise ValueError(f"counter {self.name} cannot go down (inc by {amount})")
        self._series(labels).inc(amount)

    def value(self, **labels: str) -> float:
        """The current count for ``labels`` (0 if never incremented)."""
        name = self.name if self.name.endswith("_total") else f"{self.name}_total"
        return self._sample(name, labels) or 0.0


class Gauge(Metric):
    """A value that is set (a timestamp, a size)."""

    def _attach(self, registry: CollectorRegistry) -> None:
        self._registry = registry
        self._metric = prometheus_client.Gauge(self.name, self.help, self.labels, registry=registry)

    def set(self, value: float, /, **labels: str) -> None:
        self._series(labels).set(value)

    def value(self, **labels: str) -> float | None:
        """The value set for ``labels``; None if never set."""
        return self._sample(self.name, labels)


class Histogram(Metric):
    """Observations counted into buckets by upper bound, with their sum and count."""

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

    def _attach(self, registry: CollectorRegistry) -> None:
        self._registry = registry
        self._metric = prometheus_client.Histogram(
            self.name,
            self.help,
            self.labels,
            registry=registry,
            buckets=(*self.buckets, math.inf),
        )

    def observe(self, value: float, /, **labels: str) -> None:
        self._series(labels).observe(value)

    def count(self, **labels: str) -> int:
        return int(self._sample(f"{self.name}_count", labels) or 0)

    def sum(self, **labels: str) -> float:
        return self._sample(f"{self.name}_sum", labels) or 0.0


_M = TypeVar("_M", bound=Metric)


class Registry:
    """The metric families one ``/metrics`` page shows, in the order they were made."""

    def __init__(self, *, process: bool = False) -> None:
        self.collector = CollectorRegistry(auto_describe=True)
        self._names: set[str] = set()
        if process:
            prometheus_client.ProcessCollector(registry=self.collector)
            prometheus_client.PlatformCollector(registry=self.collector)
            prometheus_client.GCCollector(registry=self.collector)

    def _add(self, metric: _M) -> _M:
        if metric.name in self._names:
            raise ValueError(f"metric {metric.name} is already registered")
        metric._attach(self.collector)
        self._names.add(metric.name)
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
        return generate_latest(self.collector).decode()

    def render_openmetrics(self) -> str:
        """Every metric in OpenMetrics 1.0 text (ends with ``# EOF``)."""
        text: bytes = generate_openmetrics(self.collector)  # type: ignore[no-untyped-call]
        return text.decode()

    def exposition(self, accept: str | None) -> tuple[bytes, str]:
        """The body and content type for a scraper that sent ``Accept: accept``."""
        if accept and "application/openmetrics-text" in accept:
            return self.render_openmetrics().encode(), OPENMETRICS_TYPE
        return self.render().encode(), CONTENT_TYPE
