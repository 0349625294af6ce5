"""The layout of a workspace on disk, `fluxtui init`, and run ids."""

from __future__ import annotations

import random
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from .config import PROJECT_FILE, atomic_write_text, set_values
from .generate import template_text

TEMPLATE_DIR = Path(__file__).resolve().parents[2] / "workspace_template"
DEMO_IMAGES = 24
DEMO_SIZE = 64


@dataclass(frozen=True)
class Workspace:
    root: Path

    @classmethod
    def at(cls, path: str | Path) -> Workspace:
        return cls(Path(path).expanduser().resolve())

    @property
    def project_file(self) -> Path:
        return self.root / PROJECT_FILE

    @property
    def datasets_dir(self) -> Path:
        return self.root / "datasets"

    @property
    def cache_dir(self) -> Path:
        return self.root / "cache"

    @property
    def outputs_dir(self) -> Path:
        return self.root / "outputs"

    @property
    def state_dir(self) -> Path:
        return self.root / ".fluxtui"

    @property
    def lock_file(self) -> Path:
        return self.state_dir / "lock"

    def run_dir(self, run_id: str) -> Path:
        return self.outputs_dir / run_id

    def run_ids(self) -> list[str]:
        """Runs on disk, oldest first (ids sort by start time)."""
        if not self.outputs_dir.is_dir():
            return []
        return sorted(p.name for p in self.outputs_dir.iterdir() if (p / "run.json").exists())

    def new_run_id(self) -> str:
        base = time.strftime("%Y%m%d-%H%M%S")
        run_id, n = base, 1
        while self.run_dir(run_id).exists():
            n += 1
            run_id = f"{base}-{n}"
        return run_id

    def exists(self) -> bool:
        return self.project_file.is_file()

    def missing_reason(self) -> str | None:
        """None when this is a workspace, else the line that says why not (for the CLI)."""
        if self.project_file.is_dir():
            return (
                f"{self.project_file} is a folder, not a file; a workspace needs project.toml as a file: "
                f"rename that folder, then `fluxtui init {self.root}` writes a new project.toml"
            )
        if not self.project_file.is_file():
            return f"{self.project_file} does not exist; is {self.root} a fluxtui workspace? (`fluxtui init DIR` makes one)"
        return None


class WorkspaceExists(Exception):
    pass


def init(path: str | Path, *, demo: bool = False) -> Workspace:
    """Create a workspace from the template. Refuses to touch an existing project."""
    ws = Workspace.at(path)
    if ws.project_file.is_dir():
        raise WorkspaceExists(f"{ws.project_file} is a folder; fluxtui never replaces it (rename it first)")
    if ws.project_file.exists():
        raise WorkspaceExists(f"{ws.project_file} already exists; fluxtui never overwrites a project")
    if demo:  # refuse before anything is written: init never replaces a file it did not create
        taken = [p for p in _demo_files(ws.datasets_dir / "shapes") if p.exists() or p.is_symlink()]
        if taken:
            shown = ", ".join(str(p.relative_to(ws.root)) for p in taken[:5])
            more = f" and {len(taken) - 5} more" if len(taken) > 5 else ""
            raise WorkspaceExists(
                f"the demo dataset would replace {len(taken)} file(s) already in {ws.root}: {shown}{more}; "
                "fluxtui never overwrites your files. Move them away or pick another folder"
            )
    ws.root.mkdir(parents=True, exist_ok=True)
    for sub in ("datasets", "cache", "outputs"):
        (ws.root / sub).mkdir(exist_ok=True)
    if TEMPLATE_DIR.is_dir():  # extra template files (a source checkout); project.toml comes from the schema
        for item in TEMPLATE_DIR.iterdir():
            dest = ws.root / item.name
            if item.name == PROJECT_FILE or dest.exists():
                continue
            if item.is_dir():
                shutil.copytree(item, dest)
            else:
                shutil.copy2(item, dest)
    text = template_text()  # identical to workspace_template/project.toml (a test checks it)
    if demo:
        _write_demo_dataset(ws.datasets_dir / "shapes")
        atomic_write_text(ws.project_file, text.replace('"my-images"', '"shapes"', 2))
        set_values(ws.project_file, DEMO_SETTINGS)
    else:
        (ws.datasets_dir / "my-images").mkdir(exist_ok=True)
        atomic_write_text(ws.project_file, text)
    return ws


# What `init --demo` changes in the template: a run that finishes on a CPU in well under a
# minute and still shows a falling loss and validation images.
DEMO_SETTINGS = {
    "project.name": "demo-shapes",
    "model.model_flavour": "tiny-random",
    "model.base_model_precision": "no_change",
    "model.text_encoder_1_precision": "no_change",
    "model.text_encoder_2_precision": "no_change",
    "model.tokenizer_max_length": 32,
    "model.base_model_default_dtype": "fp32",
    "training.mixed_precision": "no",
    "training.train_batch_size": 4,
    "training.max_train_steps": 100,
    "training.learning_rate": 1e-3,
    "training.lr_scheduler": "constant",
    "training.lr_warmup_steps": 0,
    "training.optimizer": "torch-adamw",
    "training.checkpointing_steps": 50,
    "validation.validation_prompt": "a red circle on a blue background",
    "validation.validation_steps": 50,
    "validation.validation_resolution": [f"{DEMO_SIZE}x{DEMO_SIZE}"],
    "validation.validation_num_inference_steps": 4,
    "datasets[0].instance_data_dir": "datasets/shapes",
    "datasets[0].resolution": DEMO_SIZE,
    "datasets[0].resolution_type": "pixel",
}

_COLOURS = {
    "red": (220, 40, 40),
    "green": (40, 180, 60),
    "blue": (40, 70, 220),
    "yellow": (235, 210, 40),
    "white": (245, 245, 245),
    "black": (15, 15, 15),
}
_SHAPES = ("circle", "square", "triangle")


def _demo_plan(count: int = DEMO_IMAGES, size: int = DEMO_SIZE) -> list[tuple[str, str, str, str, int, int, int]]:
    """(stem, foreground, background, shape, radius, cx, cy) of each demo image; one seeded
    draw, so the file names are known before anything is written."""
    rng = random.Random(0)
    names = list(_COLOURS)
    plan = []
    for i in range(count):
        shape = _SHAPES[i % len(_SHAPES)]
        fg, bg = rng.sample(names, 2)
        r = rng.randint(size // 5, size // 3)
        cx, cy = rng.randint(r, size - r), rng.randint(r, size - r)
        plan.append((f"{i:03d}-{fg}-{shape}", fg, bg, shape, r, cx, cy))
    return plan


def _demo_files(folder: Path, count: int = DEMO_IMAGES) -> list[Path]:
    return [folder / f"{item[0]}{ext}" for item in _demo_plan(count) for ext in (".png", ".txt")]


def _write_demo_dataset(folder: Path, count: int = DEMO_IMAGES, size: int = DEMO_SIZE) -> None:
    """Coloured shapes on plain backgrounds, each with a .txt caption."""
    from PIL import Image, ImageDraw  # Pillow is light; only init --demo needs it

    folder.mkdir(parents=True, exist_ok=True)
    for stem, fg, bg, shape, r, cx, cy in _demo_plan(count, size):
        img = Image.new("RGB", (size, size), _COLOURS[bg])
        draw = ImageDraw.Draw(img)
        if shape == "circle":
            draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=_COLOURS[fg])
        elif shape == "square":
            draw.rectangle((cx - r, cy - r, cx + r, cy + r), fill=_COLOURS[fg])
        else:
            draw.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=_COLOURS[fg])
        img.save(folder / f"{stem}.png")
        (folder / f"{stem}.txt").write_text(f"a {fg} {shape} on a {bg} background\n", encoding="utf-8")
