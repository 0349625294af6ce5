"""`fluxtui validate`: exit codes, tables, --json, and no traceback for any user mistake."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fluxtui.core import workspace


def validate(ws: Path, *extra: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """The real command in a fresh process (so import costs and exit codes are real)."""
    full_env = {**os.environ, "NO_COLOR": "1", "CUDA_VISIBLE_DEVICES": "", **(env or {})}
    full_env.pop("FORCE_COLOR", None)
    result = subprocess.run(
        [sys.executable, "-m", "fluxtui.cli", "validate", str(ws), *extra],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=60,
    )
    assert "Traceback" not in result.stdout + result.stderr, result.stderr
    return result


@pytest.fixture
def demo(tmp_path) -> Path:
    return workspace.init(tmp_path / "demo", demo=True).root


def edit(ws: Path, old: str, new: str) -> None:
    path = ws / "project.toml"
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


def test_demo_is_ready(demo):
    result = validate(demo)
    assert result.returncode == 0
    out = result.stdout
    assert "dataset shapes" in out and "(datasets/shapes)" in out
    assert "24  (24 captioned)" in out
    assert "buckets    1.00      24 images  -> 64x64" in out
    assert "6 per epoch per process (1 process)" in out
    assert out.rstrip().endswith("ok: ready to train")
    assert "\033[" not in out  # NO_COLOR


def test_demo_json(demo):
    result = validate(demo, "--json")
    assert result.returncode == 0
    data = json.loads(result.stdout)
    assert data["ok"] is True and data["problems"] == []
    (ds,) = data["datasets"]
    assert ds["id"] == "shapes" and ds["images"] == 24 and ds["captioned"] == 24
    assert ds["buckets"] == [{"aspect": 1.0, "images": 24, "target": [64, 64]}]
    assert ds["batches_per_epoch"] == 6 and ds["skipped"] == []


def test_warnings_keep_exit_0_and_bad_files_are_listed(demo):
    shapes = demo / "datasets/shapes"
    (shapes / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 10)
    (shapes / "empty.jpg").write_bytes(b"")
    (shapes / "000-yellow-circle.txt").unlink()
    edit(demo, "gradient_checkpointing = true", "gradient_checkpointing = false")
    result = validate(demo)
    assert result.returncode == 0, result.stdout
    out = result.stdout
    assert "skipped    2" in out
    assert "    broken.png: truncated image" in out and "    empty.jpg: zero-byte file" in out
    assert "23 captioned" in out
    assert "warning: project.toml:" in out and "training.gradient_checkpointing" in out
    assert "000-yellow-circle.png" in out  # named as uncaptioned
    assert "ok: ready to train (3 warnings)" in out

    data = json.loads(validate(demo, "--json").stdout)
    assert data["ok"] is True
    assert {s["path"]: s["reason"] for s in data["datasets"][0]["skipped"]} == {
        "datasets/shapes/broken.png": "truncated image",
        "datasets/shapes/empty.jpg": "zero-byte file",
    }
    assert {p["severity"] for p in data["problems"]} == {"warning"}


def test_size_rule_fails_with_the_repeats_that_fix_it(demo):
    edit(demo, "train_batch_size = 4", "train_batch_size = 16")
    edit(demo, 'num_processes = "auto"', "num_processes = 2")
    result = validate(demo)
    assert result.returncode == 2
    assert "24 images x (repeats 0 + 1) = 24 < 32 needed" in result.stdout
    assert "(fix: set repeats = 1," in result.stdout
    assert "not ready: 1 error to fix first" in result.stdout
    data = json.loads(validate(demo, "--json").stdout)
    assert data["ok"] is False
    (error,) = data["problems"]
    assert error["key"] == "datasets[0].repeats" and error["line"] > 0


def test_option_conflicts_exit_2(demo):
    edit(demo, "enable_model_cpu_offload = false", "enable_model_cpu_offload = true")
    edit(demo, "enable_group_offload = false", "enable_group_offload = true")
    result = validate(demo)
    assert result.returncode == 2
    assert "error: project.toml:" in result.stdout and "memory.enable_model_cpu_offload" in result.stdout


def test_invalid_toml_shows_line_and_column(demo):
    edit(demo, "train_batch_size = 4", "train_batch_size = = 4")
    result = validate(demo)
    assert result.returncode == 2
    line = next(n for n, t in enumerate((demo / "project.toml").read_text().splitlines(), 1) if "= = 4" in t)
    assert f"project.toml:{line}: invalid TOML" in result.stdout and "column" in result.stdout
    data = json.loads(validate(demo, "--json").stdout)
    assert data == {"ok": False, "datasets": [], "problems": data["problems"]}
    assert data["problems"][0]["line"] == line


def test_every_config_problem_at_once(demo):
    edit(demo, "train_batch_size = 4", "train_batch_sise = 4")
    edit(demo, "lora_rank = 16", 'lora_rank = "sixteen"')
    result = validate(demo)
    assert result.returncode == 2
    assert "train_batch_sise" in result.stdout and "did you mean `train_batch_size`" in result.stdout
    assert "lora.lora_rank" in result.stdout
    assert "not ready: 2 errors" in result.stdout


def test_missing_and_empty_dataset_folders(tmp_path, demo):
    edit(demo, 'instance_data_dir = "datasets/shapes"', 'instance_data_dir = "datasets/nope"')
    result = validate(demo)
    assert result.returncode == 2
    assert "datasets[0].instance_data_dir: dataset `shapes`: datasets/nope does not exist" in result.stdout

    fresh = workspace.init(tmp_path / "fresh").root  # the template points at an empty folder
    result = validate(fresh)
    assert result.returncode == 2
    assert "no images in datasets/my-images" in result.stdout


def test_no_workspace(tmp_path):
    result = validate(tmp_path / "nothing-here")
    assert result.returncode == 2
    assert "does not exist" in result.stdout and "fluxtui init" in result.stdout
    assert json.loads(validate(tmp_path / "nothing-here", "--json").stdout)["ok"] is False


def test_the_cache_is_written_and_reused(demo):
    validate(demo)
    cache = demo / "cache/scan/shapes.json"
    stamp = cache.stat().st_mtime_ns
    assert validate(demo).returncode == 0
    assert cache.stat().st_mtime_ns == stamp  # nothing changed: not rewritten


def test_validate_stays_light(demo):
    code = (
        "import sys; from fluxtui.cli import main; rc = main(['validate', sys.argv[1]]);"
        "heavy = [m for m in ('torch', 'textual', 'diffusers', 'transformers', 'optimum', 'bitsandbytes') "
        "if m in sys.modules]; print('HEAVY', heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code, str(demo)], capture_output=True, text=True, timeout=60).stdout
    assert "HEAVY []" in out
