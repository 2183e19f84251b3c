"""`voice_orchestrator.metrics` specs as `ray.serve.metrics` objects, created once per replica process."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any

from ray.serve.metrics import Counter, Gauge, Histogram

from voice_orchestrator.metrics import Meter, MetricSpec


class ServeMeter:
    """A `Meter` that records into Ray's metrics pipeline (scraped at each node's metrics export port)."""

    def __init__(self) -> None:
        self._metrics: dict[str, Any] = {}

    def _metric(self, spec: MetricSpec) -> Any:
        metric = self._metrics.get(spec.name)
        if metric is None:
            # Ray annotates tag_keys as Tuple[str] (a 1-tuple) but takes any tuple of names.
            tag_keys: Any = spec.tag_keys
            if spec.kind == "counter":
                metric = Counter(spec.name, description=spec.description, tag_keys=tag_keys)
            elif spec.kind == "gauge":
                metric = Gauge(spec.name, description=spec.description, tag_keys=tag_keys)
            else:
                metric = Histogram(
                    spec.name,
                    description=spec.description,
                    boundaries=list(spec.buckets),
                    tag_keys=tag_keys,
                )
            self._metrics[spec.name] = metric
        return metric

    def record(self, spec: MetricSpec, value: float, tags: Mapping[str, str] | None = None) -> None:
        metric = self._metric(spec)
        tag_values = dict(tags or {})
        if spec.kind == "counter":
            metric.inc(value, tags=tag_values)
        elif spec.kind == "gauge":
            metric.set(value, tags=tag_values)
        else:
            metric.observe(value, tags=tag_values)


def keep_gauges_fresh(
    meter: Meter, readings: Callable[[], list[tuple[MetricSpec, float]]], interval_s: float = 5.0
) -> threading.Event:
    """Re-record gauges every `interval_s`: Ray stops exporting a gauge that was not set lately, so a value
    set once (a limit) or only on change (in flight, during a quiet hour) would vanish from Prometheus.
    Returns the event that stops the daemon thread."""
    stop = threading.Event()

    def refresh() -> None:
        while not stop.wait(interval_s):
            for spec, value in readings():
                meter.record(spec, value)

    threading.Thread(target=refresh, name="gauge-refresher", daemon=True).start()
    return stop
