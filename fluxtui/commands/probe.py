"""`fluxtui probe DIR [--steps N] [--json]`."""

from __future__ import annotations

import json

from fluxtui.core import probe
from fluxtui.core.workspace import Workspace

from .common import fail, load_project, paint, print_problems


def main(args) -> int:
    if args.steps < 2:
        return fail("--steps must be at least 2 (the first step includes warm-up)")
    project, problems = load_project(args.workspace)
    if project is None:
        print_problems(problems)
        return 2
    ws = Workspace.at(args.workspace)
    flavour = project.model.model_flavour
    if not args.json:
        print(f"probing {flavour} ({project.model.base_model_precision}) with random weights, {args.steps} steps...")
    result = probe.run(project, ws, args.steps)
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
        return 0 if result.ok else 1
    if not result.ok:
        print(paint("probe failed", "red") + f": {result.error}")
        if result.log_tail:
            print(result.log_tail)
        print(f"(scratch workspace kept in {probe.scratch_dir(ws)})")
        return 1
    vram = result.peak_vram_mb or 0
    rows = [
        ("steps", f"{result.steps}"),
        ("time to first step", f"{result.time_to_first_step_s:.1f} s"),
        ("median s/step", f"{result.seconds_per_step:.3f} s" if result.seconds_per_step else "n/a"),
        ("peak VRAM (torch)", _size(vram / 1024) if vram else "0 (no GPU)"),
        ("peak RSS", _size((result.peak_rss_mb or 0) / 1024)),
        ("estimate, train stage", _size(result.estimate_gib)),
    ]
    for name, value in rows:
        print(f"  {name:<28} {value}")
    if vram and result.estimate_gib:
        print(f"  measured / estimate: {vram / 1024 / result.estimate_gib:.2f}")
    print_stages(result.stages)
    return 0


def print_stages(stages: dict) -> None:
    """Per stage: measured peaks next to the estimate (GiB), and measured / estimate."""
    if not stages:
        return
    print()
    print(paint("by stage", "bold") + paint("  (GiB: measured / estimate)", "dim"))
    for name, row in stages.items():
        cells = []
        for measured, estimated, label in (
            ("vram_reserved_peak_mb", "estimate_torch_gib", "torch reserved"),
            ("nvml_peak_mb", "estimate_gpu_gib", "NVML"),
            ("rss_peak_mb", "estimate_ram_gib", "RSS"),
        ):
            if row.get(measured) is None:
                continue
            got = row[measured] / 1024
            want = row.get(estimated)
            ratio = f" ({got / want:.2f}x)" if want else ""
            cells.append(f"{label} {got:.2f} / {want if want is not None else float('nan'):.2f}{ratio}")
        print(f"  {name:<14} " + "   ".join(cells))


def _size(gib: float) -> str:
    return f"{gib:.2f} GiB" if gib >= 1 else f"{gib * 1024:.1f} MiB"
