"""Full-size Flux on a GPU with random weights: peak VRAM and RSS per stage, s/step, per case.

    python bench/gpu.py [--cases no_change@512,int8-quanto@512,nf4-bnb@512,nf4-bnb@1024]
                        [--steps 12] [--flavour dev] [--tolerance 0.10] [--out results.json]

For each case (precision@resolution) it writes a workspace (the flavour's real architecture
with `random_weights = true`, rank-16 LoRA on `all`, batch 1, gradient checkpointing on,
adamw_bf16), runs `fluxtui probe` on it and prints one row: peak VRAM as torch counts it,
median s/step, time to first step, next to `fluxtui estimate`'s train-stage figure and
SPEC.md's promise; then one line per stage (cache_text, cache_latents, load_models, train)
with torch's reserved peak, NVML's device-wide peak and the peak RSS, each next to the
estimate and marked OUT when it is more than --tolerance away. Nothing is downloaded. On a
machine without CUDA use `--flavour tiny-random` to check the script itself (the numbers then
mean nothing, and only RSS is measured).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fluxtui.core import config, workspace  # noqa: E402

SPEC_GIB_512 = {"no_change": 30, "int8-quanto": 18, "int4-quanto": 13, "int2-quanto": 9, "nf4-bnb": 9}


def make_workspace(root: Path, flavour: str, precision: str, resolution: int) -> Path:
    ws = workspace.init(root / precision, demo=True)  # the demo's images stand in; probe replaces them
    config.set_values(
        ws.project_file,
        {
            "model.model_flavour": flavour,
            "model.random_weights": True,
            "model.base_model_precision": precision,
            "model.text_encoder_2_precision": "int8-quanto" if flavour != "tiny-random" else "no_change",
            "model.base_model_default_dtype": "bf16",
            "model.tokenizer_max_length": None if flavour != "tiny-random" else 32,
            "training.mixed_precision": "bf16",
            "training.train_batch_size": 1,
            "training.optimizer": "adamw_bf16",
            "training.learning_rate": 1e-4,
            "training.gradient_checkpointing": True,
            "lora.lora_rank": 16,
            "lora.flux_lora_target": "all",
            "datasets[0].resolution": resolution,
            "datasets[0].resolution_type": "pixel",
        },
    )
    return ws.root


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", default="no_change@512,int8-quanto@512,nf4-bnb@512,nf4-bnb@1024")
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--flavour", default="dev")
    ap.add_argument("--tolerance", type=float, default=0.10)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()

    rows = []
    with tempfile.TemporaryDirectory(prefix="fluxtui-gpu-") as tmp:
        for case in args.cases.split(","):
            precision, _, res = case.partition("@")
            resolution = int(res or 512)
            ws = make_workspace(Path(tmp) / f"{precision}-{resolution}", args.flavour, precision, resolution)
            cmd = [sys.executable, "-m", "fluxtui.cli", "probe", str(ws), "--steps", str(args.steps), "--json"]
            out = subprocess.run(cmd, capture_output=True, text=True)
            try:
                result = json.loads(out.stdout)
            except json.JSONDecodeError:
                result = {"ok": False, "error": (out.stdout + out.stderr)[-2000:]}
            result["precision"] = precision
            result["resolution"] = resolution
            rows.append(result)
            _print_row(result, resolution)
            _print_stages(result, args.tolerance)
    if args.out:
        args.out.write_text(json.dumps(rows, indent=2))
    return 0 if all(r.get("ok") for r in rows) else 1


def _print_stages(r: dict, tolerance: float) -> None:
    """Each stage's measured peaks next to the estimate; OUT beyond the tolerance."""
    pairs = (
        ("vram_reserved_peak_mb", "estimate_torch_gib", "torch reserved"),
        ("nvml_peak_mb", "estimate_gpu_gib", "nvml"),
        ("rss_peak_mb", "estimate_ram_gib", "rss"),
    )
    for stage, row in (r.get("stages") or {}).items():
        cells = []
        for measured, estimated, label in pairs:
            if row.get(measured) is None or not row.get(estimated):
                continue
            got, want = row[measured] / 1024, row[estimated]
            off = got / want - 1
            flag = "" if abs(off) <= tolerance else " OUT"
            cells.append(f"{label} {got:6.2f} / {want:6.2f} GiB ({off:+.0%}){flag}")
        if cells:
            print(f"    {stage:<14}" + "   ".join(cells), flush=True)


def _print_row(r: dict, resolution: int) -> None:
    p = f"{r['precision']}@{resolution}"
    if not r.get("ok"):
        print(f"{p:<18} FAILED: {r.get('error')}\n{r.get('log_tail', '')}", flush=True)
        return
    vram = (r.get("peak_vram_mb") or 0) / 1024
    spec = SPEC_GIB_512.get(r["precision"]) if resolution == 512 else None
    print(
        f"{p:<18} peak {vram:6.2f} GiB  estimate {r['estimate_gib']:6.2f} GiB"
        f"  spec {spec if spec is not None else '-':>3}  {r['seconds_per_step']:.3f} s/step"
        f"  first step {r['time_to_first_step_s']:.1f} s  rss {(r.get('peak_rss_mb') or 0) / 1024:.1f} GiB",
        flush=True,
    )


if __name__ == "__main__":
    sys.exit(main())
