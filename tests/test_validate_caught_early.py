"""What used to fail after the models had loaded is caught by `fluxtui validate` (exit 2,
the key and the fix), from config and file headers alone: no torch in that process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from fluxtui.core import config, workspace


def validate(ws: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    full = {**os.environ, "NO_COLOR": "1", "CUDA_VISIBLE_DEVICES": "", **(env or {})}
    for var in ("WANDB_MODE", "WANDB_API_KEY", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "FORCE_COLOR"):
        if var not in (env or {}):
            full.pop(var, None)
    return subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "fluxtui.cli", "validate", str(ws)],
        capture_output=True,
        text=True,
        env=full,
        timeout=60,
    )


def imported(stderr: str) -> set[str]:
    """Top-level modules named in -X importtime's report."""
    return {
        line.rsplit("|", 1)[1].strip().split(".")[0] for line in stderr.splitlines() if line.startswith("import time:")
    }


def lora_file(path: Path, rank: int, kind: str = "diffusers") -> None:
    import json
    import struct

    if kind == "lokr":
        names = {"lycoris_transformer_blocks_0_attn_to_q.lokr_w1": [4, 4]}
    else:
        names = {"transformer.transformer_blocks.0.attn.to_q.lora_A.weight": [rank, 8]}
    header, offset = {}, 0
    for name, shape in names.items():
        header[name] = {"dtype": "F16", "shape": shape, "data_offsets": [offset, offset + 2 * shape[0] * shape[1]]}
        offset += 2 * shape[0] * shape[1]
    body = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(body)) + body + bytes(offset))


# (id, settings, files to write, key at fault, words of the fix)
CASES = [
    ("pissa on a quantised base", {"lora.lora_init_type": "pissa", "model.base_model_precision": "int8-quanto"}, None,
     "lora.lora_init_type", 'lora_init_type = "default"'),
    ("olora without CUDA", {"lora.lora_init_type": "olora", "model.base_model_precision": "no_change",
                            "model.model_flavour": "krea"}, None, "lora.lora_init_type", "CUDA GPU"),
    ("loftq without CUDA", {"lora.lora_init_type": "loftq", "model.base_model_precision": "no_change"}, None,
     "lora.lora_init_type", "CUDA GPU"),
    ("init_lora of another rank", {"lora.init_lora": "old.safetensors", "lora.lora_rank": 16}, ("diffusers", 8),
     "lora.init_lora", "set lora_rank = 8"),
    ("init_lora that is a LoKr", {"lora.init_lora": "old.safetensors"}, ("lokr", 0),
     "lora.init_lora", "use a LoRA saved by fluxtui"),
    ("init_lora with lycoris", {"lora.init_lora": "old.safetensors", "lora.lora_type": "lycoris"}, ("diffusers", 16),
     "lora.init_lora", 'lora_type = "standard"'),
    ("wandb without a login", {"logging.report_to": "wandb"}, None, "logging.report_to", "wandb login"),
    ("push_to_hub without a token", {"hub.push_to_hub": True, "hub.hub_model_id": "me/x"}, None,
     "hub.push_to_hub", "hf auth login"),
    ("push_checkpoints_to_hub without a token", {"hub.push_checkpoints_to_hub": True, "hub.hub_model_id": "me/x"},
     None, "hub.push_checkpoints_to_hub", "hf auth login"),
]  # fmt: skip


@pytest.mark.parametrize(("settings", "lora", "key", "fix"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_caught_by_validate_without_torch(tmp_path, settings, lora, key, fix):
    ws = workspace.init(tmp_path / "ws", demo=True).root
    config.set_values(ws / "project.toml", settings)
    if lora:
        lora_file(ws / "old.safetensors", rank=lora[1], kind=lora[0])
    result = validate(ws, env={"HOME": str(tmp_path), "NETRC": str(tmp_path / "no-netrc"), "HF_HOME": str(tmp_path)})
    assert result.returncode == 2, result.stdout
    assert f"{key}:" in result.stdout and fix in result.stdout, result.stdout
    assert "Traceback" not in result.stdout + result.stderr
    assert not imported(result.stderr) & {"torch", "diffusers", "peft", "wandb", "huggingface_hub"}


def test_a_full_size_flavour_without_cuda_is_a_clear_warning(tmp_path):
    ws = workspace.init(tmp_path / "ws", demo=True).root
    config.set_values(ws / "project.toml", {"model.model_flavour": "krea", "model.base_model_precision": "no_change"})
    result = validate(ws)
    assert result.returncode == 0, result.stdout
    assert "model.model_flavour:" in result.stdout and "would train on the CPU" in result.stdout
    assert "ok: ready to train (1 warning)" in result.stdout
