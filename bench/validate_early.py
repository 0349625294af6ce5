"""How long `fluxtui validate` takes to refuse what used to fail after the models loaded.

Prints the wall time of a fresh `fluxtui validate` process per case (median of 5), on the
demo workspace with one setting changed. Run: python bench/validate_early.py
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from fluxtui.core import config, workspace

CASES = {
    "pissa on int8-quanto": {"lora.lora_init_type": "pissa", "model.base_model_precision": "int8-quanto"},
    "push_to_hub without a token": {"hub.push_to_hub": True, "hub.hub_model_id": "me/x"},
    "wandb without a login": {"logging.report_to": "wandb"},
    "krea without CUDA (warning)": {"model.model_flavour": "krea"},
    "the demo as it is": {},
}


def main() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("HF_TOKEN", "WANDB_API_KEY", "WANDB_MODE")}
    env.update(CUDA_VISIBLE_DEVICES="", NO_COLOR="1", HF_HUB_OFFLINE="1")
    with tempfile.TemporaryDirectory() as tmp:
        env["HOME"] = tmp
        for name, settings in CASES.items():
            ws = workspace.init(Path(tmp) / name.replace(" ", "-"), demo=True).root
            config.set_values(ws / "project.toml", settings)
            times, code = [], None
            for _ in range(5):
                began = time.perf_counter()
                code = subprocess.run(
                    [sys.executable, "-m", "fluxtui.cli", "validate", str(ws)], env=env, capture_output=True
                ).returncode
                times.append(time.perf_counter() - began)
            print(f"{name:<32} exit {code}  {statistics.median(times) * 1000:6.0f} ms")


if __name__ == "__main__":
    main()
