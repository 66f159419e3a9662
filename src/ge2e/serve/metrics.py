"""Prometheus text-format metrics (exposition format 0.0.4) without a client-library dependency."""

from __future__ import annotations

import bisect
import threading
from collections import defaultdict
from collections.abc import Iterable

# seconds; spans a cached identify (ms) to a long enrollment on a busy CPU (s)
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

Labels = tuple[tuple[str, str], ...]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _format(labels: Labels) -> str:
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in labels) + "}" if labels else ""


class _Histogram:
    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.buckets = buckets
        self.counts = [0] * (len(buckets) + 1)  # the last slot is +Inf
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.total += value


class Metrics:
    """Thread-safe counters and histograms rendered by :meth:`render`; gauges are passed in at render time."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counters: dict[str, dict[Labels, float]] = defaultdict(dict)
        self._histograms: dict[str, dict[Labels, _Histogram]] = defaultdict(dict)
        self._help: dict[str, tuple[str, str]] = {}

    def _describe(self, name: str, kind: str, help_text: str) -> None:
        self._help.setdefault(name, (kind, help_text))

    def inc(self, name: str, help_text: str, amount: float = 1.0, **labels: str) -> None:
        key = tuple(sorted(labels.items()))
        with self._lock:
            self._describe(name, "counter", help_text)
            self._counters[name][key] = self._counters[name].get(key, 0.0) + amount

    def observe(self, name: str, help_text: str, value: float, **labels: str) -> None:
        key = tuple(sorted(labels.items()))
        with self._lock:
            self._describe(name, "histogram", help_text)
            series = self._histograms[name]
            if key not in series:
                series[key] = _Histogram(LATENCY_BUCKETS)
            series[key].observe(value)

    def render(self, gauges: Iterable[tuple[str, str, float, Labels]] = ()) -> str:
        """The exposition text; ``gauges`` are ``(name, help, value, labels)`` sampled by the caller."""
        lines: list[str] = []
        with self._lock:
            for name, series in sorted(self._counters.items()):
                lines += [f"# HELP {name} {self._help[name][1]}", f"# TYPE {name} counter"]
                lines += [f"{name}{_format(k)} {v:g}" for k, v in sorted(series.items())]
            for name, hists in sorted(self._histograms.items()):
                lines += [f"# HELP {name} {self._help[name][1]}", f"# TYPE {name} histogram"]
                for key, h in sorted(hists.items()):
                    cumulative = 0
                    for bound, count in zip((*h.buckets, float("inf")), h.counts, strict=True):
                        cumulative += count
                        le = "+Inf" if bound == float("inf") else f"{bound:g}"
                        lines.append(f"{name}_bucket{_format((*key, ('le', le)))} {cumulative}")
                    lines.append(f"{name}_sum{_format(key)} {h.total:.6f}")
                    lines.append(f"{name}_count{_format(key)} {cumulative}")
        described: set[str] = set()
        for name, help_text, value, labels in gauges:
            if name not in described:
                lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge"]
                described.add(name)
            lines.append(f"{name}{_format(labels)} {value:g}")
        return "\n".join(lines) + "\n"
