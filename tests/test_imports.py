"""The CLI and the headless core start light; the TUI never loads the trainer's stack."""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = ("torch", "diffusers", "transformers", "peft", "accelerate", "optimum", "bitsandbytes")


def loaded_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport sys; print(' '.join(sys.modules))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return {name.split(".")[0] for name in out.split()}


@pytest.mark.parametrize(
    ("code", "forbidden"),
    [
        ("import fluxtui.cli", (*HEAVY, "textual")),
        (
            "import fluxtui.core.config, fluxtui.core.schema, fluxtui.core.workspace, fluxtui.core.events",
            (*HEAVY, "textual"),
        ),
        ("import fluxtui.commands.validate, fluxtui.commands.estimate, fluxtui.commands.init", (*HEAVY, "textual")),
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
    assert not loaded & {*HEAVY, "textual"}


def test_tui_never_loads_torch():
    pytest.importorskip("fluxtui.tui.app")
    loaded = loaded_after("import fluxtui.tui.app, fluxtui.commands.tui")
    assert not loaded & set(HEAVY)


@pytest.mark.parametrize("args", [["--help"], ["init", "--help"], ["validate", "--help"], ["estimate", "--help"]])
def test_cli_help_stays_light(args):
    code = f"import sys; from fluxtui.cli import main\ntry:\n    main({args!r})\nexcept SystemExit: pass"
    loaded = loaded_after(code)
    assert not loaded & {*HEAVY, "textual"}


def test_import_linter_contracts():
    from pathlib import Path

    tool = Path(sys.executable).with_name("lint-imports")
    if not tool.exists():
        pytest.skip("import-linter not installed")
    out = subprocess.run([str(tool)], capture_output=True, text=True, cwd=Path(__file__).parents[1])
    assert out.returncode == 0, out.stdout + out.stderr
