"""Trainer speed and memory: time to first step, median s/step, peak RSS.

    .venv/bin/python bench/train.py [--only tiny|small] [--steps N] [--dir FOLDER] [--keep]

Runs the real trainer (`python -m fluxtui.trainer`) as a subprocess on an `init --demo`
workspace, twice per config: caches cold (no latent or text cache) and warm (the second
run finds both). Configs:

- tiny:  tiny-random at 64 px, batch 4 (the demo's settings), 100 steps.
- small: tiny.py's "small" random Flux (hidden 256, 2 double + 4 single blocks) at 256 px,
         batch 1, rank 16, 30 steps.

Time to first step counts from the process start (imports included) to the first `step`
event; s/step is the median gap between step events; peak RSS is the child's ru_maxrss.
Validation and checkpoints are off so the numbers are the loop's own.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CONFIGS = {
    "tiny": {"steps": 100, "settings": {}},
    "small": {
        "steps": 30,
        "settings": {
            "training.train_batch_size": 1,
            "datasets[0].resolution": 256,
            "validation.validation_resolution": ["256x256"],
        },
    },
}


def make_workspace(folder: Path, name: str, steps: int, settings: dict) -> Path:
    from fluxtui.core import config, workspace
    from fluxtui.trainer.tiny import ensure_tiny_flux

    ws = workspace.init(folder / name, demo=True).root
    values = {
        "training.max_train_steps": steps,
        "training.checkpointing_steps": 0,
        "validation.validation_steps": 0,
        **settings,
    }
    if name == "small":
        model = ensure_tiny_flux(folder / "models", seed=0, size="small")
        values["model.pretrained_model_name_or_path"] = str(model)
    config.set_values(ws / "project.toml", values)
    return ws


def run_once(ws: Path, run_id: str) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    log = open(ws / f"{run_id}.log", "w")  # noqa: SIM115
    started = time.time()
    proc = subprocess.Popen(
        [sys.executable, "-m", "fluxtui.trainer", str(ws), "--run", run_id, "--fresh"],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    log.close()
    if proc.returncode != 0:
        raise SystemExit(f"trainer failed ({proc.returncode}); see {ws / f'{run_id}.log'}")
    events = [json.loads(line) for line in (ws / "outputs" / run_id / "events.jsonl").open()]
    step_t = [e["t"] for e in events if e["type"] == "step"]
    cache = [e for e in events if e["type"] == "stage" and e["name"] == "cache_latents"]
    gaps = [b - a for a, b in itertools.pairwise(step_t)]
    return {
        "first_step_s": step_t[0] - started,
        "median_step_s": statistics.median(gaps) if gaps else float("nan"),
        "peak_rss_mb": usage.ru_maxrss / 1024,
        "encoded": cache[0]["total"] - cache[0]["done"] if cache else 0,
        "total_s": time.time() - started,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", choices=sorted(CONFIGS))
    ap.add_argument("--steps", type=int, help="override the steps of every config")
    ap.add_argument("--dir", type=Path, help="work folder (default: a temp folder)")
    ap.add_argument("--keep", action="store_true", help="keep the work folder")
    args = ap.parse_args()
    folder = args.dir or Path(tempfile.mkdtemp(prefix="fluxtui-bench-train-"))
    folder.mkdir(parents=True, exist_ok=True)
    print(f"cpu cores: {os.cpu_count()}; work folder {folder}")
    print(f"{'config':<7} {'caches':<6} {'first step':>11} {'s/step':>9} {'peak RSS':>10} {'encoded':>8} {'total':>7}")
    try:
        for name, cfg in CONFIGS.items():
            if args.only and name != args.only:
                continue
            steps = args.steps or cfg["steps"]
            ws = make_workspace(folder, name, steps, cfg["settings"])
            for caches, run_id in (("cold", "cold"), ("warm", "warm")):
                r = run_once(ws, run_id)
                print(
                    f"{name:<7} {caches:<6} {r['first_step_s']:>10.1f}s {r['median_step_s']:>8.3f}s "
                    f"{r['peak_rss_mb']:>8.0f}MB {r['encoded']:>8d} {r['total_s']:>6.1f}s",
                    flush=True,
                )
    finally:
        if not args.keep and args.dir is None:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
