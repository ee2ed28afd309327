"""Counters and latency histograms, rendered as Prometheus text and as JSON.

Kept dependency-free and lock-free: everything is updated from the accelerator's one event loop.
"""

from __future__ import annotations

import bisect
import dataclasses
from collections import defaultdict
from typing import Any

# Seconds; fine-grained below 10 ms where cache hits live.
LATENCY_BUCKETS_S = (0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclasses.dataclass
class Histogram:
    buckets: tuple[float, ...] = LATENCY_BUCKETS_S
    counts: list[int] = dataclasses.field(default_factory=list)
    total: float = 0.0
    n: int = 0

    def __post_init__(self) -> None:
        self.counts = [0] * (len(self.buckets) + 1)

    def observe(self, value_s: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value_s)] += 1
        self.total += value_s
        self.n += 1

    def quantile(self, q: float) -> float | None:
        """Upper bound of the bucket holding quantile q (what Prometheus' histogram_quantile approximates)."""
        if self.n == 0:
            return None
        rank = q * self.n
        seen = 0
        for i, count in enumerate(self.counts):
            seen += count
            if seen >= rank:
                return self.buckets[i] if i < len(self.buckets) else float("inf")
        return float("inf")


class Metrics:
    """Everything the accelerator counts."""

    def __init__(self) -> None:
        self.counters: dict[str, int] = defaultdict(int)
        self.node_errors: dict[str, int] = defaultdict(int)
        self.client_latency: dict[str, Histogram] = defaultdict(Histogram)
        self.upstream_latency: dict[str, Histogram] = defaultdict(Histogram)

    def inc(self, name: str, by: int = 1) -> None:
        self.counters[name] += by

    def render_prometheus(self, gauges: dict[str, float], tier_stats: dict[str, dict[str, int]]) -> str:
        lines: list[str] = []

        def metric(name: str, kind: str, help_text: str) -> None:
            lines.append(f"# HELP robolake_accelerator_{name} {help_text}")
            lines.append(f"# TYPE robolake_accelerator_{name} {kind}")

        metric("cache_requests_total", "counter", "Cache lookups by tier and result.")
        for tier, stats in tier_stats.items():
            for result, field in (("hit", "hits"), ("miss", "misses")):
                lines.append(
                    f'robolake_accelerator_cache_requests_total{{tier="{tier}",result="{result}"}} {stats[field]}'
                )
        metric("cache_evictions_total", "counter", "Objects evicted by tier.")
        for tier, stats in tier_stats.items():
            lines.append(f'robolake_accelerator_cache_evictions_total{{tier="{tier}"}} {stats["evictions"]}')
        metric("cache_bytes_served_total", "counter", "Bytes answered from each tier.")
        for tier, stats in tier_stats.items():
            lines.append(f'robolake_accelerator_cache_bytes_served_total{{tier="{tier}"}} {stats["bytes_served"]}')
        metric("events_total", "counter", "Requests, prefetches, invalidations and other events by kind.")
        for name, value in sorted(self.counters.items()):
            lines.append(f'robolake_accelerator_events_total{{kind="{name}"}} {value}')
        metric("upstream_errors_total", "counter", "Connection failures per MinIO node.")
        for node, value in sorted(self.node_errors.items()):
            lines.append(f'robolake_accelerator_upstream_errors_total{{node="{node}"}} {value}')
        for gauge, level in sorted(gauges.items()):
            metric(gauge, "gauge", gauge.replace("_", " ") + ".")
            lines.append(f"robolake_accelerator_{gauge} {level}")
        for family, hists in (("client_latency_seconds", self.client_latency),
                              ("upstream_latency_seconds", self.upstream_latency)):
            metric(family, "histogram", f"{family.split('_')[0].title()} request latency by operation.")
            for op, hist in sorted(hists.items()):
                cumulative = 0
                bound: float
                for bound, count in zip((*hist.buckets, float("inf")), hist.counts, strict=True):
                    cumulative += count
                    le = "+Inf" if bound == float("inf") else repr(bound)
                    lines.append(f'robolake_accelerator_{family}_bucket{{op="{op}",le="{le}"}} {cumulative}')
                lines.append(f'robolake_accelerator_{family}_sum{{op="{op}"}} {hist.total}')
                lines.append(f'robolake_accelerator_{family}_count{{op="{op}"}} {hist.n}')
        return "\n".join(lines) + "\n"

    def latency_summary(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for family, hists in (("client", self.client_latency), ("upstream", self.upstream_latency)):
            for op, hist in hists.items():
                out[f"{family}.{op}"] = {
                    "count": hist.n,
                    "mean_ms": round(1000 * hist.total / hist.n, 3) if hist.n else None,
                    "p50_ms_le": _ms(hist.quantile(0.5)),
                    "p99_ms_le": _ms(hist.quantile(0.99)),
                }
        return out


def _ms(value: float | None) -> float | None:
    if value is None or value == float("inf"):
        return value
    return round(value * 1000, 3)
