"""Plots of lab measurements, saved as PNG files (matplotlib, netlmm-lab's dependency, Agg).

:func:`save_handover_plot` draws the demo's handover: the UDP probe stream's echoes per 10 ms
(:attr:`netlmm_lab.tools.UdpStreamResult.histogram_10ms`) before, during and after the MS's
link moves, the nominal rate, the longest silence shaded, and the moments the demo saw (the
link moved, carrier back, the binding at the new DMPA) as vertical lines.

The bins and the marks are also written into the PNG itself (``tEXt`` chunks, read back by
:func:`read_png_text`), so a test checks that what is drawn is what was measured.

matplotlib is imported inside the function (the appliance never needs it); a figure is built on
its own Agg canvas, without pyplot's global state.
"""

from __future__ import annotations

import itertools
import json
import struct
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: Keys of the PNG text chunks :func:`save_handover_plot` writes.
TEXT_BINS = "netlmm:bins"
TEXT_INFO = "netlmm:handover"


class PlotUnavailable(RuntimeError):
    """matplotlib is not installed (``pip install -e ./lab`` brings it)."""


def longest_silence(bins: Sequence[int]) -> tuple[int, int]:
    """``(first index, length)`` of the longest run of empty bins between the first and the
    last non-empty one (leading and trailing silence is not an interruption); ``(0, 0)`` if
    there is none.

    Ties go to the earliest run. Bins of width ``w`` and a longest run of ``n`` bound the
    longest gap ``g`` between two successive arrivals: ``n * w < g < (n + 2) * w`` (``n > 0``).
    """
    filled = [i for i, count in enumerate(bins) if count]
    best = (0, 0)
    for before, after in itertools.pairwise(filled):
        length = after - before - 1
        if length > best[1]:
            best = (before + 1, length)
    return best


def save_handover_plot(
    path: Path,
    bins: Sequence[int],
    *,
    bin_ms: float = 10.0,
    interval_ms: float,
    interruption_ms: float,
    origin_s: float = 0.0,
    marks: Mapping[str, float] | None = None,
    title: str = "handover",
) -> Path:
    """Draw ``bins`` (echoes per ``bin_ms``, bin 0 starting at the stream's first probe) as a
    bar chart against time in ms relative to ``origin_s`` (seconds since the stream's start,
    e.g. when the link moved); ``marks`` are labelled moments, seconds since the stream's
    start. Returns ``path``. Raises :class:`PlotUnavailable` without matplotlib."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise PlotUnavailable(
            "matplotlib is not installed (pip install -e ./lab brings it)"
        ) from exc
    marks = dict(marks or {})
    origin_ms = origin_s * 1000.0
    starts = [i * bin_ms - origin_ms for i in range(len(bins))]
    expected = bin_ms / interval_ms if interval_ms > 0 else 0.0
    first, length = longest_silence(bins)

    figure = Figure(figsize=(10, 4.2), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot(1, 1, 1)
    axes.bar(starts, list(bins), width=bin_ms, align="edge", color="#3b75af", label="echoes")
    if expected:
        axes.axhline(
            expected, color="#555555", linestyle="--", linewidth=1,
            label=f"nominal ({expected:g} per {bin_ms:g} ms)",
        )  # fmt: skip
    if length:
        axes.axvspan(
            starts[first], starts[first] + length * bin_ms, color="#d62728", alpha=0.25,
            label=f"no echo for {length * bin_ms:g} ms (interruption {interruption_ms:.1f} ms)",
        )  # fmt: skip
    colors = ("#2ca02c", "#ff7f0e", "#9467bd", "#8c564b")
    for (label, seconds), color in zip(marks.items(), colors * 4, strict=False):
        axes.axvline(seconds * 1000.0 - origin_ms, color=color, linewidth=1.5, label=label)
    axes.set_xlabel("ms since the link moved" if origin_s else "ms since the first probe")
    axes.set_ylabel(f"UDP echoes per {bin_ms:g} ms")
    axes.set_title(title)
    top = max([*bins, expected, 1])
    axes.set_ylim(0, top * 1.7)  # room for the legend above the bars
    axes.legend(loc="upper right", fontsize="small", ncol=2)
    axes.grid(axis="y", alpha=0.3)
    figure.tight_layout()

    info = {
        "bin_ms": bin_ms,
        "interval_ms": interval_ms,
        "interruption_ms": interruption_ms,
        "origin_s": origin_s,
        "marks_s": marks,
        "silence": {"first_bin": first, "bins": length},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(
        str(path),
        format="png",
        metadata={TEXT_BINS: json.dumps(list(bins)), TEXT_INFO: json.dumps(info)},
    )
    return path


def read_png_text(path: Path) -> dict[str, str]:
    """The ``tEXt`` (and ``zTXt``) chunks of a PNG file, key -> text. Raises ``ValueError`` for
    a file that is not a PNG."""
    data = path.read_bytes()
    if not data.startswith(PNG_SIGNATURE):
        raise ValueError(f"{path}: not a PNG file")
    texts: dict[str, str] = {}
    pos = len(PNG_SIGNATURE)
    while pos + 8 <= len(data):
        length, kind = struct.unpack_from("!I4s", data, pos)
        body = data[pos + 8 : pos + 8 + length]
        if len(body) != length:
            raise ValueError(f"{path}: chunk {kind!r} at {pos} is truncated")
        if kind == b"tEXt" and b"\0" in body:
            key, _, value = body.partition(b"\0")
            texts[key.decode("latin-1")] = value.decode("latin-1")
        elif kind == b"zTXt" and b"\0" in body:
            key, _, rest = body.partition(b"\0")
            texts[key.decode("latin-1")] = zlib.decompress(rest[1:]).decode("latin-1")
        elif kind == b"IEND":
            break
        pos += 12 + length
    return texts


def available() -> bool:
    """Whether matplotlib can be imported (a dependency of netlmm-lab)."""
    import importlib.util

    return importlib.util.find_spec("matplotlib") is not None
