"""Fault injection: SIGKILL the real trainer at random moments, resume, compare.

    .venv/bin/python bench/faults.py [--trials N] [--seed S] [--dir FOLDER]

Each trial starts `python -m fluxtui.trainer` on an `init --demo` workspace (tiny-random,
checkpoints every 3 steps, the last 2 kept) and SIGKILLs it at one of three moments, drawn
at random:
- train:      a random number of steps in (after 1-10 step events);
- checkpoint: while a checkpoint is half written (FLUXTUI_TEST_PAUSE_CHECKPOINT_AT);
- prune:      while an old checkpoint is renamed away but not yet deleted (FLUXTUI_TEST_PAUSE_PRUNE).
Then a second trainer resumes to the end. A trial passes when the resume started from the
newest complete checkpoint, no temp folder is left, and the final LoRA equals that of one
uninterrupted run bit for bit. Prints one line per trial and the counts.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

STEPS = 12
SETTINGS = {
    "training.max_train_steps": STEPS,
    "training.checkpointing_steps": 3,
    "training.checkpoints_total_limit": 2,
    "training.lr_scheduler": "cosine",
    "training.lr_warmup_steps": 2,
    "validation.validation_steps": 0,
}


def _events(ws: Path, run: str) -> list[dict]:
    path = ws / "outputs" / run / "events.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _wait(predicate, proc, timeout=180.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        if proc.poll() is not None:
            return bool(predicate())
        time.sleep(0.01)
    return False


def _lora(ws: Path, run: str) -> dict:
    from safetensors.torch import load_file

    return load_file(ws / "outputs" / run / "lora" / "pytorch_lora_weights.safetensors")


def trial(n: int, mode: str, rng: random.Random, base: Path, tiny_root: Path, reference: dict) -> tuple[bool, str]:
    from trainer_support import make_workspace, run_trainer, start_trainer

    from fluxtui.core import checkpoints

    ws = make_workspace(base / f"t{n}", SETTINGS, tiny_root=tiny_root)
    env = {}
    if mode == "checkpoint":
        env["FLUXTUI_TEST_PAUSE_CHECKPOINT_AT"] = str(rng.choice([3, 6, 9]))
    elif mode == "prune":
        env["FLUXTUI_TEST_PAUSE_PRUNE"] = "1"  # the first prune is at step 9 (checkpoint-3 goes)
    proc = start_trainer(ws, "a", env=env)
    ckpts = ws / "outputs" / "a" / "checkpoints"
    if mode == "train":
        k = rng.randint(1, 10)
        ok = _wait(lambda: sum(e["type"] == "step" for e in _events(ws, "a")) >= k, proc)
        where = f"after {k} step(s)"
    elif mode == "checkpoint":
        step = env["FLUXTUI_TEST_PAUSE_CHECKPOINT_AT"]
        ok = _wait(lambda: any(ckpts.glob(f".tmp-checkpoint-{step}-pid*/optimizer.pt")), proc)
        where = f"mid-write of checkpoint-{step}"
    else:
        ok = _wait(lambda: any(ckpts.glob(".tmp-removed-checkpoint-*")), proc)
        where = "mid-prune"
    if not ok or proc.poll() is not None:
        proc.kill()
        return False, f"{mode}: the moment never came ({where})"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    complete = [c.step for c in checkpoints.run_checkpoints(ws / "outputs" / "a")]
    expected = complete[-1] if complete else None
    done = run_trainer(ws, "b")
    if done.returncode != 0:
        return False, f"{where}: resume failed: {done.stdout[-300:]}"
    start = _events(ws, "b")[0].get("resumed_from")
    left = list(ws.glob("outputs/*/checkpoints/.tmp-*"))
    lora = _lora(ws, "b")
    same = lora.keys() == reference.keys() and all((lora[k] == reference[k]).all() for k in lora)
    passed = start == expected and not left and same
    return (
        passed,
        f"{where}: resumed from {start} (newest complete {expected}), leftovers {len(left)}, LoRA {'identical' if same else 'DIFFERENT'}",
    )


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--trials", type=int, default=12)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dir", type=Path, default=None)
    args = p.parse_args()
    from trainer_support import make_workspace, run_trainer

    base = args.dir or Path(tempfile.mkdtemp(prefix="fluxtui-faults-"))
    tiny_root = base / "tiny-models"
    ref_ws = make_workspace(base / "reference", SETTINGS, tiny_root=tiny_root)
    ref = run_trainer(ref_ws, "ref")
    if ref.returncode != 0:
        print(ref.stdout[-2000:])
        return 1
    reference = _lora(ref_ws, "ref")
    rng = random.Random(args.seed)
    counts: dict[str, list[int]] = {"train": [0, 0], "checkpoint": [0, 0], "prune": [0, 0]}
    began = time.monotonic()
    for n in range(args.trials):
        mode = ("train", "checkpoint", "prune")[n % 3] if n < 3 else rng.choice(["train", "checkpoint", "prune"])
        passed, line = trial(n, mode, rng, base, tiny_root, reference)
        counts[mode][0] += passed
        counts[mode][1] += 1
        print(f"trial {n + 1:>2} {'ok  ' if passed else 'FAIL'} {line}", flush=True)
    total = sum(c[0] for c in counts.values()), sum(c[1] for c in counts.values())
    print(
        f"{total[0]}/{total[1]} passed ("
        + ", ".join(f"{m} {c[0]}/{c[1]}" for m, c in counts.items())
        + f") in {time.monotonic() - began:.0f}s; workspaces in {base}"
    )
    return 0 if total[0] == total[1] else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
