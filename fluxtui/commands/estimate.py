"""`fluxtui estimate DIR [--gpu-gb N] [--json]`: VRAM per stage from project.toml alone.

Exit 0 with an estimate (whether or not it fits), 2 when the config has errors.
"""

from __future__ import annotations

import json
from pathlib import Path

from fluxtui.core.estimate import Estimate, Suggestion, estimate
from fluxtui.core.problems import has_errors

from .common import fail, load_project, paint, print_problems

STAGE_LABELS = {
    "cache_text": "cache text",
    "cache_latents": "cache latents",
    "load_models": "load models",
    "train": "train",
    "validate": "validate",
}


def main(args) -> int:
    project, problems = load_project(Path(args.workspace))
    if project is None or has_errors(problems):
        print_problems(problems)
        return 2
    gpu = args.gpu_gb
    if gpu is not None and not gpu > 0:
        return fail(f"--gpu-gb must be a positive number of GB (e.g. --gpu-gb 24), got {gpu:g}")
    est = estimate(project, gpu_gb=gpu)
    if args.json:
        print(json.dumps(est.to_json(), indent=2))
        return 0
    print_estimate(est, project)
    if gpu is not None:
        print()
        print_fit(est, gpu)
    return 0


def _gib(value: float) -> str:
    return f"{value:6.2f}"


def print_estimate(est: Estimate, project) -> None:
    m, lc, t = project.model, project.lora, project.training
    side = est.resolution_px
    print(
        paint("estimate", "bold")
        + f"  {m.model_flavour}, {m.base_model_precision}, {lc.flux_lora_target} rank {lc.lora_rank}, "
        f"{side}x{side} px ({est.image_tokens} + {est.text_tokens} tokens), batch {t.train_batch_size}"
    )
    print()
    print(paint("training step", "bold") + paint("  (GiB)", "dim"))
    for name, value in est.breakdown.items():
        print(f"  {name:<22}{_gib(value)}  {paint(est.details.get(name, ''), 'dim')}")
    print(f"  {'total':<22}{_gib(est.stage_peaks['train'])}")
    print()
    print(paint("stages", "bold") + paint("  (GiB of GPU memory, GiB of system RAM; the run needs the largest)", "dim"))
    peak = est.peak_stage
    ram = est.ram_peaks
    for stage, value in est.stage_peaks.items():
        parts = est.stages[stage]
        biggest = max((k for k in parts if k != "CUDA context"), key=lambda k: parts[k], default="")
        mark = paint("  <- peak", "yellow") if stage == peak else ""
        label = STAGE_LABELS.get(stage, stage)
        in_ram = f"  RAM {_gib(ram[stage])}" if stage in ram else ""
        print(f"  {label:<22}{_gib(value)}{in_ram}  {paint(f'largest: {biggest} {parts[biggest]:.1f}', 'dim')}{mark}")
    print()
    print(f"{paint('needs', 'bold')} {est.total_gib:.1f} GiB of GPU memory (peak: {STAGE_LABELS.get(peak, peak)})")
    print_ram(est)
    if est.seconds_per_step is not None:
        print(
            f"speed ~{est.seconds_per_step:.1f} s/step "
            + paint("(rough: RTX 4090-class, from SPEC's nf4 figures)", "dim")
        )
    for note in est.notes:
        print(paint(f"note: {note}", "dim"))


def print_ram(est: Estimate) -> None:
    stage = est.ram_peak_stage
    if stage is None:
        return
    line = f"{paint('needs', 'bold')} {est.ram_gib:.1f} GiB of system RAM (peak: {STAGE_LABELS.get(stage, stage)})"
    machine = est.machine
    if machine is None:
        print(line + paint("; this machine's RAM is unknown", "dim"))
        return
    free = f", {machine.available_gib:.1f} GiB available" if machine.available_gib is not None else ""
    verdict = paint("fits", "green") if est.ram_fits() else paint("does not fit", "red")
    print(f"{line}; this machine has {machine.total_gib:.1f} GiB{free}: {verdict}")
    if not est.ram_fits():
        parts = est.ram_stages[stage]
        biggest = max(parts, key=lambda k: parts[k])
        print(paint(f"  most of it: {biggest} {parts[biggest]:.1f} GiB (`fluxtui validate` says what helps)", "dim"))


def print_fit(est: Estimate, gpu: float) -> None:
    if est.fits(gpu):
        print(f"{paint('fits', 'green')} a {gpu:g} GB GPU ({gpu - est.total_gib:.1f} GiB to spare)")
        return
    print(f"{paint('does not fit', 'red')} a {gpu:g} GB GPU (needs {est.total_gib:.1f} GiB)")
    suggestions = est.suggestions(gpu)
    if not suggestions:
        print("  nothing in project.toml brings it under that; a larger GPU is needed")
        return
    if not suggestions[0].combined:
        print("changes that make it fit (each on its own):")
    elif suggestions[0].fits:
        print("no single change is enough; together these fit:")
    else:
        print("even all of these together are not enough:")
    if suggestions[0].combined:
        (combo,) = suggestions
        for key, value in combo.changes.items():
            print(f"  {Suggestion(changes={key: value}, total_gib=0, fits=False).describe()}")
        print(f"  -> {combo.total_gib:.1f} GiB")
        return
    for s in suggestions:
        print(f"  {s.describe():<50} -> {s.total_gib:.1f} GiB")
