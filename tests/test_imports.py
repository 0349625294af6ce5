"""The CLI and the headless core start light; the TUI never loads the trainer's stack."""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = ("torch", "diffusers", "transformers", "peft", "accelerate", "optimum", "bitsandbytes")
# Hugging Face `datasets` (and the pyarrow/pandas it brings): only a type = "huggingface"
# dataset loads it (core/hf_datasets.py); tests/test_hf_datasets.py checks validate itself.
HF_DATASETS = ("datasets", "pyarrow", "pandas")


def loaded_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport sys; print('\\nMODULES:', ' '.join(sys.modules))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    # only what follows the marker: a command's own output (`--help` says "datasets") is not a module
    return {name.split(".")[0] for name in out.rsplit("\nMODULES:", 1)[1].split()}


@pytest.mark.parametrize(
    ("code", "forbidden"),
    [
        ("import fluxtui.cli", (*HEAVY, *HF_DATASETS, "textual")),
        (
            "import fluxtui.core.config, fluxtui.core.schema, fluxtui.core.workspace, fluxtui.core.events",
            (*HEAVY, *HF_DATASETS, "textual"),
        ),
        (
            "import fluxtui.commands.validate, fluxtui.commands.estimate, fluxtui.commands.init",
            (*HEAVY, *HF_DATASETS, "textual"),
        ),
        ("import fluxtui.core.datasets, fluxtui.core.hf_datasets", (*HEAVY, *HF_DATASETS, "textual")),
        ("import fluxtui.commands.import_, fluxtui.commands.export_simpletuner", (*HEAVY, *HF_DATASETS, "textual")),
    ],
)
def test_light_modules(code, forbidden):
    loaded = loaded_after(code)
    assert not loaded & set(forbidden), f"{code} loads {loaded & set(forbidden)}"


def test_every_core_module_is_headless():
    import pkgutil

    import fluxtui.core

    names = [f"fluxtui.core.{m.name}" for m in pkgutil.iter_modules(fluxtui.core.__path__)]
    loaded = loaded_after("\n".join(f"import {n}" for n in names))
    assert not loaded & {*HEAVY, *HF_DATASETS, "textual"}


def test_tui_never_loads_torch():
    pytest.importorskip("fluxtui.tui.app")
    loaded = loaded_after("import fluxtui.tui.app, fluxtui.commands.tui")
    assert not loaded & set(HEAVY)


@pytest.mark.parametrize("args", [["--help"], ["init", "--help"], ["validate", "--help"], ["estimate", "--help"]])
def test_cli_help_stays_light(args):
    code = f"import sys; from fluxtui.cli import main\ntry:\n    main({args!r})\nexcept SystemExit: pass"
    loaded = loaded_after(code)
    assert not loaded & {*HEAVY, *HF_DATASETS, "textual"}


def test_validate_of_local_folders_never_loads_datasets(tmp_path):
    from fluxtui.core import workspace

    ws = workspace.init(tmp_path / "demo", demo=True).root
    code = f"from fluxtui.cli import main\ntry:\n    main(['validate', {str(ws)!r}])\nexcept SystemExit: pass"
    loaded = loaded_after(code)
    assert not loaded & {*HEAVY, *HF_DATASETS, "textual"}


def test_import_linter_contracts():
    from pathlib import Path

    tool = Path(sys.executable).with_name("lint-imports")
    if not tool.exists():
        pytest.skip("import-linter not installed")
    out = subprocess.run([str(tool)], capture_output=True, text=True, cwd=Path(__file__).parents[1])
    assert out.returncode == 0, out.stdout + out.stderr
