"""The demo's handover plot (:mod:`netlmm_lab.plots`) without a lab: the longest silence in the
bins and its bound on the measured interruption, and the PNG carrying the bins it draws."""

from __future__ import annotations

import json
import random
import struct
from pathlib import Path

import pytest

from netlmm_lab import plots
from netlmm_lab.plots import longest_silence, read_png_text, save_handover_plot
from netlmm_lab.tools import HIST_BIN, summarize_stream
from tests.conftest import require


@pytest.mark.parametrize(
    ("bins", "expected"),
    [
        ([], (0, 0)),
        ([0, 0, 0], (0, 0)),
        ([2, 2, 2], (0, 0)),
        ([0, 0, 2, 2, 0, 0], (0, 0)),  # leading and trailing silence is not an interruption
        ([2, 0, 2], (1, 1)),
        ([2, 0, 0, 1, 0, 0, 0, 2, 0], (4, 3)),
        ([1, 0, 0, 1, 0, 0, 1], (1, 2)),  # a tie goes to the first run
    ],
)
def test_longest_silence(bins: list[int], expected: tuple[int, int]) -> None:
    assert longest_silence(bins) == expected


def _stream(rng: random.Random, outage: tuple[float, float]) -> tuple[list[int], float]:
    """A 5 ms probe stream with jitter and an outage; (bins, longest gap in ms) as the lab's
    udp-stream tool computes them."""
    interval, count = 0.005, 400
    echoes = []
    for seq in range(count):
        sent = seq * interval
        arrived = sent + rng.uniform(0.0002, 0.004)
        if not outage[0] <= arrived < outage[1]:
            echoes.append((seq, sent, arrived))
    echoes.sort(key=lambda e: e[2])
    result = summarize_stream(interval, count, 0, echoes, count * interval)
    return result.histogram_10ms, result.max_gap_ms


@pytest.mark.parametrize("seed", range(40))
def test_silence_bounds_the_gap(seed: int) -> None:
    """What the demo's test relies on: ``n`` empty bins in a row (width ``w``) and the longest
    gap ``g`` between echoes satisfy ``n * w < g < (n + 2) * w``."""
    rng = random.Random(seed)
    start = rng.uniform(0.3, 1.0)
    bins, gap_ms = _stream(rng, (start, start + rng.uniform(0.0, 0.4)))
    _, length = longest_silence(bins)
    width = HIST_BIN * 1000
    assert gap_ms < (length + 2) * width
    if length:
        assert length * width < gap_ms


def test_plot_carries_its_bins(tmp_path: Path) -> None:
    require(plots.available(), "matplotlib is not installed (pip install -e ./lab brings it)")
    bins = [2] * 50 + [0] * 7 + [1] + [2] * 60
    marks = {"link moves": 0.49, "carrier back on the MS": 0.52, "binding at DMPA 2": 0.56}
    path = save_handover_plot(
        tmp_path / "sub" / "handover.png",
        bins,
        interval_ms=5.0,
        interruption_ms=71.3,
        origin_s=0.49,
        marks=marks,
        title="test",
    )
    data = path.read_bytes()
    assert data.startswith(plots.PNG_SIGNATURE)
    width, height = struct.unpack_from("!II", data, 16)  # IHDR, the first chunk
    assert (width, height) == (1000, 420)
    texts = read_png_text(path)
    assert json.loads(texts[plots.TEXT_BINS]) == bins
    info = json.loads(texts[plots.TEXT_INFO])
    assert info["silence"] == {"first_bin": 50, "bins": 7}
    assert info["marks_s"] == marks
    assert info["interruption_ms"] == 71.3 and info["interval_ms"] == 5.0


def test_read_png_text_refuses_other_files(tmp_path: Path) -> None:
    path = tmp_path / "not.png"
    path.write_bytes(b"GIF89a" + bytes(20))
    with pytest.raises(ValueError, match="not a PNG"):
        read_png_text(path)
    truncated = tmp_path / "cut.png"
    truncated.write_bytes(plots.PNG_SIGNATURE + struct.pack("!I4s", 100, b"tEXt") + b"k\0v")
    with pytest.raises(ValueError, match="truncated"):
        read_png_text(truncated)
