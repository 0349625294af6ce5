"""Memory in use against what there is: the GPU's VRAM (NVML), or the machine's RAM when
there is no GPU, with a sparkline of the run's recent allocation."""

from __future__ import annotations

from collections.abc import Sequence

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Sparkline, Static

from .text_update import show_text


def bar(fraction: float, width: int) -> str:
    fraction = min(max(fraction, 0.0), 1.0)
    filled = round(fraction * width)
    return "█" * filled + "░" * (width - filled)


class VramGauge(Vertical):
    DEFAULT_CSS = """
    VramGauge {
        height: auto;
        #vram-text { height: auto; }
        Sparkline { height: 2; margin: 0 0 1 0; }
    }
    """

    def compose(self) -> ComposeResult:
        yield Static("VRAM –", id="vram-text")
        yield Sparkline([], id="vram-spark")

    def show(
        self,
        *,
        alloc_mb: float | None,
        peak_mb: float | None,
        total_mb: float | None,
        rss_mb: float | None,
        history: Sequence[float],
        gpu_name: str | None = None,
        util_pct: float | None = None,
        ram: tuple[float, float] | None = None,  # (used, total) GiB of the machine, for no GPU
    ) -> None:
        lines = []
        if total_mb:
            used = alloc_mb or 0.0
            lines.append(f"VRAM {bar(used / total_mb, 16)}")
            lines.append(
                f"{used / 1024:.1f}/{total_mb / 1024:.0f} GiB" + (f" peak {peak_mb / 1024:.1f}" if peak_mb else "")
            )
            if gpu_name:
                lines.append(gpu_name + (f" · {util_pct:.0f}% busy" if util_pct is not None else ""))
        elif alloc_mb:
            lines.append(f"VRAM {alloc_mb / 1024:.1f} GiB" + (f" peak {peak_mb / 1024:.1f}" if peak_mb else ""))
        elif ram is not None and ram[1] > 0:
            used, total = ram
            lines.append(f"RAM  {bar(used / total, 16)}")
            lines.append(f"{used:.1f}/{total:.0f} GiB used (machine) · no GPU")
        else:
            lines.append("no GPU: training on the CPU")
        if rss_mb:
            lines.append(f"trainer RAM {rss_mb:.0f} MB")
        show_text(self.query_one("#vram-text", Static), "\n".join(lines))
        spark = self.query_one(Sparkline)
        if list(spark.data or []) != list(history):
            spark.data = list(history)
