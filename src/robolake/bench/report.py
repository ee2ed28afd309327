"""Reports of a results document: Markdown tables, PNG plots, saving, and comparing two runs.

Plots (matplotlib, Agg backend, no display needed):
  throughput.png   per-second rate vs concurrency, one line per path x operation;
  latency_cdf.png  latency CDF (log x) of every series at its highest concurrency.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from robolake.bench import results
from robolake.config import Settings
from robolake.errors import ConfigError

UNIT_LABEL = {
    "objects": "objects/s",
    "episodes": "episodes/s",
    "samples": "samples/s",
    "keys": "keys/s",
    "ranges": "ranges/s",
    "streams": "streams/s",
    "ops": "ops/s",
}


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None or value == "":
        return ""
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def series_table(series: Iterable[dict[str, Any]], *, ttfb: bool = False) -> list[str]:
    """One Markdown row per series: rate, MiB/s, latency percentiles (and TTFB), errors."""
    head = "| path | op | concurrency | rate | MiB/s | p50 ms | p90 ms | p99 ms |"
    rule = "|---|---|---:|---:|---:|---:|---:|---:|"
    if ttfb:
        head += " TTFB p50 ms | TTFB p99 ms |"
        rule += "---:|---:|"
    lines = [head + " errors |", rule + "---:|"]
    for s in series:
        lat, t = s.get("latency_ms") or {}, s.get("ttfb_ms") or {}
        unit = UNIT_LABEL.get(s.get("unit", "objects"), s.get("unit", "") + "/s")
        row = (
            f"| {s['path']} | {s['op']} | {s['concurrency']} | {_fmt(s['per_s'])} {unit} | "
            f"{_fmt(s.get('mib_per_s'), 1)} | {_fmt(lat.get('p50'), 2)} | {_fmt(lat.get('p90'), 2)} | "
            f"{_fmt(lat.get('p99'), 2)} |"
        )
        if ttfb:
            row += f" {_fmt(t.get('p50'), 2)} | {_fmt(t.get('p99'), 2)} |"
        lines.append(row + f" {s.get('errors', 0)} |")
    return lines


def header(doc: dict[str, Any], title: str) -> list[str]:
    m, v = doc["machine"], doc["versions"]
    return [
        f"# {title}",
        "",
        f"Run `{doc['run_id']}`, {doc['started']}. Machine: {m['cpus']} CPUs, {m['memory_gib']} GiB, "
        f"load {m['loadavg_1m']} at start. Versions: " + ", ".join(f"{k} {val}" for k, val in sorted(v.items())) + ".",
        "",
    ]


# ---- plots ---------------------------------------------------------------------------------------


def plots(doc: dict[str, Any], title: str) -> dict[str, bytes]:
    """throughput.png and latency_cdf.png for the document's series (PNG bytes).

    Series are drawn in panels: by their `panel` field when they have one (streaming: one panel
    per object size), else by unit (objects/s, episodes/s ...). A line is one `label` (default
    "path op") across concurrency levels.
    """
    import importlib

    import matplotlib

    matplotlib.use("Agg")
    figures = _Figures(doc, title, importlib.import_module("matplotlib.pyplot"))
    if not figures.names:  # nothing measured per concurrency (e.g. only the cold and large parts)
        return {}
    return {"throughput.png": figures.throughput(), "latency_cdf.png": figures.latency_cdf()}


Panels = dict[str, dict[str, list[dict[str, Any]]]]  # panel -> line label -> its series, one per level


class _Figures:
    """The two figures of one document: a panel per `panel` (or unit), a colour per line label."""

    def __init__(self, doc: dict[str, Any], title: str, plt: Any) -> None:
        self.title, self.plt = title, plt  # pyplot typed loosely: its stubs are partial
        self.by_bytes = doc.get("plot_metric") == "mib_per_s"  # streaming: MiB/s says more than objects/s
        self.panels: Panels = {}
        for s in doc["series"]:
            panel = s.get("panel") or s.get("unit", "objects")
            self.panels.setdefault(panel, {}).setdefault(s.get("label") or f"{s['path']} {s['op']}", []).append(s)
        self.names = list(self.panels)
        colors = plt.get_cmap("tab10").colors
        labels = dict.fromkeys(label for lines in self.panels.values() for label in lines)
        self.styles = {label: colors[i % len(colors)] for i, label in enumerate(labels)}

    def grid(self, kind: str) -> tuple[Any, list[Any]]:
        cols = min(len(self.names), 2 if len(self.names) > 2 else len(self.names))
        rows = (len(self.names) + cols - 1) // cols
        fig, axes = self.plt.subplots(rows, cols, figsize=(6.5 * cols, 4.2 * rows), squeeze=False)
        flat = list(axes.flat)
        for extra in flat[len(self.names) :]:
            extra.set_visible(False)
        fig.suptitle(f"{self.title}: {kind}")
        return fig, flat

    def metric(self, row: dict[str, Any]) -> str:
        return str(row.get("plot_metric") or ("mib_per_s" if self.by_bytes else "per_s"))

    def finish(self, fig: Any) -> bytes:
        fig.tight_layout()
        png = _png(fig)
        self.plt.close(fig)
        return png

    def throughput(self) -> bytes:
        fig, axes = self.grid("throughput vs concurrency")
        for ax, name in zip(axes, self.names, strict=False):
            first = next(iter(self.panels[name].values()))[0]
            unit = first.get("unit", "objects")
            ylabel = "MiB/s" if self.metric(first) == "mib_per_s" else UNIT_LABEL.get(unit, unit + "/s")
            if all(len(rows) == 1 for rows in self.panels[name].values()):
                self.bars(ax, name, ylabel)  # one point per line (warp-check, the accelerator benchmark)
            else:
                self.lines(ax, name, ylabel, titled=name != unit or self.by_bytes)
        return self.finish(fig)

    def bars(self, ax: Any, name: str, ylabel: str) -> None:
        """One bar per line: bars say more than single dots."""
        lines = self.panels[name]
        labels = list(lines)
        values = [lines[label][0][self.metric(lines[label][0])] for label in labels]
        ax.bar(range(len(labels)), values, color=[self.styles[label] for label in labels])
        ax.set_xticks(range(len(labels)), labels, fontsize=8)
        for i, v in enumerate(values):
            ax.annotate(f"{v:,.0f}", (i, v), ha="center", va="bottom", fontsize=8)
        levels = {rows[0]["concurrency"] for rows in lines.values()}
        first = next(iter(lines.values()))[0]
        ax.set_xlabel(f"concurrency {first['concurrency']}" if len(levels) == 1 else "")
        ax.set_ylabel(ylabel)
        ax.set_title(name)
        ax.grid(True, axis="y", alpha=0.3)

    def lines(self, ax: Any, name: str, ylabel: str, *, titled: bool) -> None:
        """Rate against concurrency (log 2), one line per label; a log y axis when rates differ 20-fold."""
        drawn: list[float] = []
        for label, rows in self.panels[name].items():
            rows = sorted(rows, key=lambda r: r["concurrency"])
            values = [r[self.metric(r)] for r in rows]
            drawn += values
            ax.plot([r["concurrency"] for r in rows], values, marker="o", label=label, color=self.styles[label])
        ax.set_xscale("log", base=2)
        ax.set_xlabel("concurrency")
        positive = [v for v in drawn if v > 0]
        if positive and max(positive) / min(positive) > 20:  # e.g. batch GET next to single GETs
            ax.set_yscale("log")
            ylabel += " (log scale)"
        else:
            ax.set_ylim(bottom=0)
        ax.set_ylabel(ylabel)
        if titled:
            ax.set_title(name)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)

    def latency_cdf(self) -> bytes:
        fig, axes = self.grid("latency CDF at the highest concurrency")
        for ax, name in zip(axes, self.names, strict=False):
            drawn = sum(self.cdf_line(ax, label, rows) for label, rows in self.panels[name].items())
            ax.set_xscale("log")
            ax.set_xlabel("latency (ms, log scale)")
            ax.set_ylabel("fraction of requests")
            ax.set_ylim(0, 1.01)
            ax.set_title(name)
            ax.grid(True, which="both", alpha=0.3)
            if drawn:
                ax.legend(fontsize=8, loc="lower right")
        return self.finish(fig)

    def cdf_line(self, ax: Any, label: str, rows: list[dict[str, Any]]) -> bool:
        """The CDF of the line's highest level (warp's: its three percentiles); False if it has none."""
        top = max(rows, key=lambda r: r["concurrency"])
        points = top.get("latency_cdf_ms") or []
        if points:
            ax.plot(
                [p[0] for p in points],
                [p[1] for p in points],
                label=f"{label} (c={top['concurrency']})",
                color=self.styles[label],
            )
            return True
        lat = top.get("latency_ms")
        if not lat:
            return False
        pts = [(lat[k], q) for k, q in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99)) if k in lat]
        ax.plot(
            [p[0] for p in pts],
            [p[1] for p in pts],
            marker="s",
            linestyle="--",
            color=self.styles[label],
            label=f"{label} (c={top['concurrency']}, percentiles)",
        )
        return True


def _png(fig: Any) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    return buffer.getvalue()


# ---- saving and loading --------------------------------------------------------------------------


def save(settings: Settings, doc: dict[str, Any], markdown: str, title: str, out_dir: Path) -> list[str]:
    """results.json, report.md and the plots, locally and in umi-experiments/benchmarks/<run-id>/."""
    files = {"results.json": results.as_json(doc), "report.md": markdown.encode(), **plots(doc, title)}
    where = results.save(settings, doc["run_id"], out_dir, files)
    doc["written_to"] = where
    return where


def load(ref: str, settings: Settings | None = None, out_dir: Path = Path("benchmarks")) -> dict[str, Any]:
    """A results document from a path (run dir or results.json), a local run id, or the results bucket."""
    candidates = [Path(ref), Path(ref) / "results.json", out_dir / ref / "results.json"]
    for path in candidates:
        if path.is_file():
            try:
                doc: dict[str, Any] = json.loads(path.read_text())
            except json.JSONDecodeError as exc:
                raise ConfigError(f"{path} is not a results document (bad JSON: {exc})") from exc
            return _checked(doc, str(path))
    if settings is not None:
        body = results.fetch(settings, ref)
        if body is not None:
            where = f"s3://{results.RESULTS_BUCKET}/{results.results_key(ref.strip('/'), 'results.json')}"
            try:
                return _checked(json.loads(body), where)
            except json.JSONDecodeError:
                pass
    raise ConfigError(
        f"no benchmark run {ref!r}: not a file, not ./{out_dir}/{ref}/results.json and not in "
        f"s3://{results.RESULTS_BUCKET}/benchmarks/; list runs with: ls {out_dir}/"
    )


def _checked(doc: Any, where: str) -> dict[str, Any]:
    if not isinstance(doc, dict) or "series" not in doc or "benchmark" not in doc:
        raise ConfigError(
            f"{where} is not a robolake results document with series (was it written by an older "
            "version? re-run the benchmark)"
        )
    return doc


def compare(a: dict[str, Any], b: dict[str, Any]) -> str:
    """Markdown: for every series in both runs, rate and p50/p99 of A and B and the ratio B/A."""

    def key(s: dict[str, Any]) -> tuple[str, str, int]:
        return (s["path"], s["op"], int(s["concurrency"]))

    index_b = {key(s): s for s in b["series"]}
    lines = [
        f"# Compare {a['benchmark']} runs",
        "",
        f"A: `{a['run_id']}` ({a['started']}, load {a['machine'].get('loadavg_1m')}); "
        f"B: `{b['run_id']}` ({b['started']}, load {b['machine'].get('loadavg_1m')}). Ratio = B / A.",
        "",
        "| path | op | concurrency | rate A | rate B | B/A | p50 A ms | p50 B ms | p99 A ms | p99 B ms |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    matched = 0
    for s in a["series"]:
        other = index_b.get(key(s))
        if other is None:
            continue
        matched += 1
        la, lb = s.get("latency_ms") or {}, other.get("latency_ms") or {}
        r = f"{other['per_s'] / s['per_s']:.2f}x" if s["per_s"] else "n/a"
        lines.append(
            f"| {s['path']} | {s['op']} | {s['concurrency']} | {_fmt(s['per_s'])} | {_fmt(other['per_s'])} "
            f"| {r} | {_fmt(la.get('p50'), 2)} | {_fmt(lb.get('p50'), 2)} | {_fmt(la.get('p99'), 2)} | "
            f"{_fmt(lb.get('p99'), 2)} |"
        )
    if a["benchmark"] != b["benchmark"]:
        lines += ["", f"Note: A is {a['benchmark']} and B is {b['benchmark']}; only series present in both are shown."]
    if not matched:
        lines += ["", "No series in common (same path, operation and concurrency): nothing to compare."]
    only_a = {key(s) for s in a["series"]} - set(index_b)
    if only_a and matched:
        lines += ["", f"{len(only_a)} series only in A, {len(set(index_b) - {key(s) for s in a['series']})} only in B."]
    return "\n".join(lines) + "\n"
