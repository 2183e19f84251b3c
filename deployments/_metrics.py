"""`voice_orchestrator.metrics` specs as `ray.serve.metrics` objects, created once per replica process."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ray.serve.metrics import Counter, Gauge, Histogram

from voice_orchestrator.metrics import MetricSpec


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
