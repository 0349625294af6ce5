"""[[datasets]] type = "huggingface": a `datasets` save_to_disk folder and an imagefolder,
scanned by `fluxtui validate` with the local folder's rules, trained on by tiny-random; a hub
id while offline is one clean problem."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fluxtui.core import config, datasets, workspace

hf = pytest.importorskip("datasets")


def _png(w: int, h: int, colour: str) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (w, h), colour).save(buf, "PNG")
    return buf.getvalue()


def save_dataset(folder: Path, images: list[bytes], captions: list[str], **extra_columns) -> Path:
    """A Dataset with an Image column and a caption column, written with save_to_disk."""
    features = {"image": hf.Image(), "text": hf.Value("string")}
    columns = {"image": [{"bytes": b, "path": None} for b in images], "text": captions}
    for name, values in extra_columns.items():
        columns[name] = values
        features[name] = hf.Value("int32")
    hf.Dataset.from_dict(columns, features=hf.Features(features)).save_to_disk(str(folder))
    return folder


def demo_rows(demo_root: Path) -> tuple[list[bytes], list[str]]:
    shapes = sorted((demo_root / "datasets" / "shapes").glob("*.png"))
    return [p.read_bytes() for p in shapes], [p.with_suffix(".txt").read_text().strip() for p in shapes]


def use_dataset(ws: Path, table: str) -> None:
    """Replace the workspace's [[datasets]] table with `table`."""
    path = ws / "project.toml"
    text = path.read_text()
    path.write_text(text[: text.index("\n[[datasets]]\n")] + "\n[[datasets]]\n" + table.strip() + "\n")


def validate(ws: Path, *extra: str, env: dict | None = None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "NO_COLOR": "1", "CUDA_VISIBLE_DEVICES": "", **(env or {})}
    result = subprocess.run(
        [sys.executable, "-m", "fluxtui.cli", "validate", str(ws), *extra],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=120,
    )
    assert "Traceback" not in result.stdout + result.stderr, result.stdout + result.stderr
    return result


@pytest.fixture
def demo(tmp_path) -> Path:
    return workspace.init(tmp_path / "demo", demo=True).root


HF_TABLE = """
id = "hf-shapes"
type = "huggingface"
dataset_name = "hf-shapes"
caption_column = "text"
resolution = 64
resolution_type = "pixel"
"""


def test_a_saved_dataset_validates_with_sizes_counts_and_buckets(demo):
    images, captions = demo_rows(demo)
    images.append(_png(128, 64, "red"))  # a second bucket, from the header bytes
    captions.append("a wide red picture")
    images.append(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)  # cut short
    captions.append("broken")
    save_dataset(demo / "hf-shapes", images, captions)
    use_dataset(demo, HF_TABLE)

    result = validate(demo, "--json")
    assert result.returncode == 2, result.stdout  # the size rule below is an error
    data = json.loads(result.stdout)
    (ds,) = data["datasets"]
    assert ds["source"] == "hf-shapes (split train)"
    assert ds["images"] == 25 and ds["captioned"] == 25
    assert [(b["target"], b["images"]) for b in ds["buckets"]] == [([64, 64], 24), ([128, 64], 1)]
    assert ds["skipped"] == [{"path": "hf-shapes/row-25", "reason": "truncated image"}]
    # the size rule, as for a folder: one image in the 2:1 bucket, batch 4
    (rule,) = [p for p in data["problems"] if p["key"] == "datasets[0].repeats"]
    assert "bucket 2.00 (128x64): 1 image x (repeats 0 + 1) = 1 < 4 needed" in rule["message"]
    assert rule["fix"].startswith("set repeats = 3")
    left_out = next(p for p in data["problems"] if "left out" in p["message"])
    assert left_out["severity"] == "warning" and "1 of 26 rows" in left_out["message"]

    text = validate(demo).stdout
    assert "dataset hf-shapes  (hf-shapes (split train))" in text
    assert "25  (25 captioned)" in text and "row-25:" in text

    # the scan's cache: a second scan reads no header, and gives the same report
    project, _ = config.load(demo)
    again = datasets.scan_dataset(project, 0)
    assert len(again.images) == 25 and (demo / "cache" / "scan" / "hf-shapes.json").exists()


def test_size_columns_are_used_when_present(demo):
    images = [_png(64, 64, "red"), _png(64, 64, "blue")]
    # the columns say 128x64: the scan trusts the dataset's own metadata over the bytes
    save_dataset(demo / "hf-shapes", images, ["a", "b"], width=[128, 128], height=[64, 64])
    use_dataset(demo, HF_TABLE + "repeats = 1\n")
    project, problems = config.load(demo)
    assert project is not None, problems
    report = datasets.scan_dataset(project, 0)
    assert [(i.width, i.height, i.row) for i in report.images] == [(128, 64, 0), (128, 64, 1)]
    assert list(report.buckets) == [(128, 64)]


def test_an_imagefolder_works_offline(demo):
    folder = demo / "imgs"
    folder.mkdir()
    (folder / "a.png").write_bytes(_png(64, 64, "red"))
    (folder / "b.png").write_bytes(_png(64, 128, "blue"))
    lines = [{"file_name": "a.png", "caption": "a red square"}, {"file_name": "b.png", "caption": ""}]
    (folder / "metadata.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    use_dataset(
        demo,
        """
id = "folder"
type = "huggingface"
dataset_name = "imgs"
resolution = 64
resolution_type = "pixel"
repeats = 3
""",
    )
    result = validate(demo, "--json", env={"HF_HUB_OFFLINE": "1"})
    data = json.loads(result.stdout)
    (ds,) = data["datasets"]
    assert ds["images"] == 2 and ds["captioned"] == 1
    assert sorted(b["target"] for b in ds["buckets"]) == [[64, 64], [64, 128]]
    empty = next(p for p in data["problems"] if p["key"] == "datasets[0].caption_column")
    assert empty["severity"] == "warning" and "1 of 2 rows have an empty `caption`" in empty["message"]
    assert (demo / "cache" / "huggingface").is_dir()  # the imagefolder's arrow files live in the workspace


def test_a_wrong_column_is_one_clear_problem(demo):
    save_dataset(demo / "hf-shapes", [_png(64, 64, "red")], ["a red square"])
    use_dataset(demo, HF_TABLE.replace('caption_column = "text"', 'caption_column = "caption"'))
    result = validate(demo)
    assert result.returncode == 2
    assert (
        "datasets[0].caption_column: dataset `hf-shapes`: no column `caption` (columns: image, text) "
        '(fix: set caption_column = "text")' in result.stdout
    )
    use_dataset(demo, HF_TABLE + 'image_column = "text"\n')
    result = validate(demo)
    assert result.returncode == 2
    assert (
        "datasets[0].image_column: dataset `hf-shapes`: column `text` holds Value(string), not images" in result.stdout
    )
    assert 'fix: set image_column = "image"' in result.stdout


def test_a_revision_on_a_local_folder_is_a_warning_not_silence(demo):
    save_dataset(demo / "hf-shapes", [_png(64, 64, "red")] * 4, ["red"] * 4)
    use_dataset(demo, HF_TABLE + 'revision = "v2"\n')
    result = validate(demo)
    assert result.returncode == 0, result.stdout
    (line,) = [ln for ln in result.stdout.splitlines() if "datasets[0].revision" in ln]
    assert "revision 'v2' is ignored" in line and "local folder" in line and "fix: remove revision" in line


def test_simpletuners_huggingface_sub_table_is_read(demo):
    save_dataset(demo / "hf-shapes", [_png(64, 64, "red")] * 4, ["red"] * 4)
    use_dataset(
        demo,
        """
id = "hf-shapes"
type = "huggingface"
resolution = 64
resolution_type = "pixel"

[datasets.huggingface]
dataset_name = "hf-shapes"
caption_column = "text"
""",
    )
    project, problems = config.load(demo)
    assert project is not None, [str(p) for p in problems]
    d = project.datasets[0]
    assert (d.dataset_name, d.caption_column, d.caption_strategy) == ("hf-shapes", "text", "huggingface")
    assert validate(demo).returncode == 0


def test_type_mismatches_are_named(demo):
    save_dataset(demo / "hf-shapes", [_png(64, 64, "red")] * 4, ["red"] * 4)
    use_dataset(demo, HF_TABLE + 'caption_strategy = "textfile"\n')
    out = validate(demo).stdout
    assert 'caption_strategy = "textfile" reads files next to images' in out
    # a local folder with a hub key: a warning, and instance_data_dir is still required
    use_dataset(demo, 'id = "x"\ndataset_name = "user/name"\n')
    assert "missing `instance_data_dir`" in validate(demo).stdout
    use_dataset(demo, 'id = "x"\ninstance_data_dir = "datasets/shapes"\ndataset_name = "user/name"\n')
    out = validate(demo).stdout
    assert (
        'datasets[0].dataset_name: dataset_name applies only to type = "huggingface"; this dataset is type = "local"'
        in out
    )


def test_a_hub_id_offline_is_a_clean_problem(demo):
    use_dataset(demo, HF_TABLE.replace('dataset_name = "hf-shapes"', 'dataset_name = "someone/not-downloaded"'))
    result = validate(demo, env={"HF_HUB_OFFLINE": "1"})
    assert result.returncode == 2
    (line,) = [ln for ln in result.stdout.splitlines() if "datasets[0].dataset_name" in ln]
    assert "cannot load someone/not-downloaded from the Hugging Face hub: offline mode (HF_HUB_OFFLINE=1)" in line
    assert "(fix: download it once with HF_HUB_OFFLINE unset" in line
    assert line.startswith("error: project.toml:")


def test_local_workspaces_never_import_datasets(demo):
    code = (
        "import sys\nfrom fluxtui.cli import main\n"
        f"try:\n    main(['validate', {str(demo)!r}])\nexcept SystemExit: pass\n"
        "print('LOADED', 'datasets' in sys.modules, 'torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120).stdout
    assert "LOADED False False" in out


def test_validate_on_a_huggingface_dataset_loads_no_torch(demo):
    save_dataset(demo / "hf-shapes", [_png(64, 64, "red")] * 4, ["red"] * 4)
    use_dataset(demo, HF_TABLE)
    code = (
        "import sys\nfrom fluxtui.cli import main\n"
        f"try:\n    main(['validate', {str(demo)!r}])\nexcept SystemExit: pass\n"
        "print('LOADED', 'datasets' in sys.modules, 'torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120).stdout
    assert "LOADED True False" in out


@pytest.mark.slow
def test_tiny_random_trains_on_a_saved_dataset(tmp_path, tmp_path_factory):
    pytest.importorskip("torch")
    from trainer_support import end_event, events, make_workspace, run_trainer

    ws = make_workspace(
        tmp_path / "ws",
        {"training.max_train_steps": 6, "training.checkpointing_steps": 0, "validation.validation_steps": 0},
        tiny_root=tmp_path_factory.getbasetemp() / "tiny-models",
    )
    # SimpleTuner's column and split keys, none at its default: a DatasetDict whose training
    # rows are in "validation", with its own image, caption and size column names
    from PIL import Image

    images, captions = demo_rows(ws)
    dims = [Image.open(io.BytesIO(b)).size for b in images]
    features = hf.Features(
        {"picture": hf.Image(), "prompt": hf.Value("string"), "w": hf.Value("int32"), "h": hf.Value("int32")}
    )
    rows = {
        "picture": [{"bytes": b, "path": None} for b in images],
        "prompt": captions,
        "w": [d[0] for d in dims],
        "h": [d[1] for d in dims],
    }
    first = {k: v[:1] for k, v in rows.items()}
    hf.DatasetDict(
        {
            "train": hf.Dataset.from_dict(first, features=features),
            "validation": hf.Dataset.from_dict(rows, features=features),
        }
    ).save_to_disk(str(ws / "hf-shapes"))
    use_dataset(
        ws,
        HF_TABLE.replace('caption_column = "text"', 'caption_column = "prompt"')
        + 'split = "validation"\nimage_column = "picture"\nwidth_column = "w"\nheight_column = "h"\n',
    )
    proc = run_trainer(ws, "hf")
    assert proc.returncode == 0, proc.stdout[-3000:]
    evs = events(ws, "hf")
    assert end_event(evs)["status"] == "completed" and end_event(evs)["step"] == 6
    assert (ws / "outputs" / "hf" / "lora" / "pytorch_lora_weights.safetensors").stat().st_size > 0
    latents = sorted(p.name for p in (ws / "cache" / "vae" / "hf-shapes").iterdir())
    assert latents == sorted(f"row-{i}-64x64.safetensors" for i in range(24))

    # a second run finds every latent cached: the VAE is not loaded
    proc = run_trainer(ws, "hf2")
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "VAE loaded" not in proc.stdout
