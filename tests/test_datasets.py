"""Dataset scan: header-only sizes, bad files, captions, buckets, the size rule, the cache."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageOps

from fluxtui.core import config, datasets, imagesize
from fluxtui.core.datasets import scan_dataset, scan_project, target_size
from fluxtui.core.rules import visible_gpu_count

# -- helpers ------------------------------------------------------------------------------------


def toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    return repr(v)


def project_text(sections: dict | None = None, datasets_: list[dict] | None = None) -> str:
    lines = []
    for name, values in (sections or {}).items():
        lines.append(f"[{name}]")
        lines += [f"{k} = {toml_value(v)}" for k, v in values.items()]
        lines.append("")
    for ds in datasets_ or []:
        lines.append("[[datasets]]")
        lines += [f"{k} = {toml_value(v)}" for k, v in ds.items()]
        lines.append("")
    return "\n".join(lines)


def make_project(ws: Path, sections: dict | None = None, datasets_: list[dict] | None = None) -> config.Project:
    ws.mkdir(parents=True, exist_ok=True)
    (ws / "project.toml").write_text(project_text(sections, datasets_), encoding="utf-8")
    project, problems = config.load(ws / "project.toml")
    assert project is not None, problems
    return project


def dataset(folder="datasets/imgs", **kw) -> dict:
    return {"id": "imgs", "instance_data_dir": folder, "resolution": 64, "resolution_type": "pixel", **kw}


def save(path: Path, size=(64, 64), mode="RGB", fmt=None, orientation=None, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.new(mode, size, _colour(mode))
    if orientation is not None:
        exif = Image.Exif()
        exif[0x0112] = orientation
        kw["exif"] = exif
    im.save(path, fmt, **kw)
    return path


def _colour(mode: str):
    return {"RGB": (200, 30, 40), "RGBA": (1, 2, 3, 4), "CMYK": (1, 2, 3, 4), "LA": (9, 200), "P": 3}.get(mode, 7)


def line_of(text: str, start: str) -> int:
    return next(n for n, line in enumerate(text.splitlines(), 1) if line.startswith(start))


def skipped_reasons(report) -> dict[str, str]:
    return {s.path.name: s.reason for s in report.skipped}


# -- header reading -----------------------------------------------------------------------------

FORMATS = [
    ("a.png", "RGB", {}),
    ("a.jpg", "RGB", {}),
    ("a.webp", "RGB", {}),
    ("a.webp", "RGBA", {"lossless": True}),
    ("a.gif", "P", {}),
    ("a.bmp", "RGB", {}),
    ("a.bmp", "L", {}),
    ("a.tif", "RGB", {}),
    ("cmyk.jpg", "CMYK", {}),
    ("cmyk.tif", "CMYK", {}),
    ("sixteen.png", "I;16", {}),
    ("palette.png", "P", {}),
    ("la.png", "LA", {}),
    ("progressive.jpg", "RGB", {"progressive": True}),
]


@pytest.mark.parametrize(("name", "mode", "kw"), FORMATS)
def test_header_size_matches_pillow(tmp_path, name, mode, kw):
    p = save(tmp_path / name, (123, 45), mode, **kw)
    header = imagesize.read_header(p)
    assert header.ok, header
    assert (header.width, header.height) == (123, 45)
    with Image.open(p) as im:
        assert im.size == (123, 45)


@pytest.mark.parametrize("ext", ["jpg", "png", "webp", "tif"])
@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_gives_the_displayed_size(tmp_path, ext, orientation):
    p = save(tmp_path / f"r.{ext}", (120, 50), orientation=orientation)
    with Image.open(p) as im:
        shown = ImageOps.exif_transpose(im).size
    header = imagesize.read_header(p)
    assert (header.width, header.height) == shown
    assert shown == ((50, 120) if orientation >= 5 else (120, 50))


@pytest.mark.parametrize("ext", ["png", "jpg", "webp", "gif", "bmp", "tif"])
def test_truncated_files_are_found_without_decoding(tmp_path, ext):
    import numpy as np

    pixels = (np.random.default_rng(0).random((80, 90, 3)) * 255).astype("uint8")
    full = tmp_path / f"full.{ext}"
    Image.fromarray(pixels).save(full)
    data = full.read_bytes()
    cut = tmp_path / f"cut.{ext}"
    cut.write_bytes(data[: len(data) * 2 // 3])
    assert imagesize.read_header(full).ok
    assert imagesize.read_header(cut).reason == imagesize.TRUNCATED
    with pytest.raises(OSError), Image.open(cut) as im:  # Pillow agrees when it decodes
        im.load()


def test_data_after_the_end_marker_is_not_truncation(tmp_path):
    jpg = save(tmp_path / "motion.jpg", (40, 30))
    jpg.write_bytes(jpg.read_bytes() + os.urandom(5000))  # e.g. a motion photo's video
    png = save(tmp_path / "trailer.png", (40, 30))
    png.write_bytes(png.read_bytes() + b"\x00" * 300)
    assert imagesize.read_header(jpg).ok
    assert imagesize.read_header(png).ok


def test_truncated_jpeg_with_an_end_marker_in_its_metadata(tmp_path):
    """An EXIF thumbnail carries its own FFD9; only one after the scan data counts."""
    jpg = save(tmp_path / "thumb.jpg", (300, 200), quality=95)
    data = jpg.read_bytes()
    segment = b"\xff\xe2" + (2 + 40).to_bytes(2, "big") + b"\xff\xd9" * 20  # an APP2 holding FFD9s
    data = data[:2] + segment + data[2:]
    jpg.write_bytes(data[: len(data) - 400])
    assert imagesize.read_header(jpg).reason == imagesize.TRUNCATED


def test_bad_files(tmp_path):
    (tmp_path / "zero.png").write_bytes(b"")
    (tmp_path / "text.jpg").write_text("a caption, not an image\n")
    (tmp_path / "header-only.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    assert imagesize.read_header(tmp_path / "zero.png").reason == imagesize.ZERO_BYTES
    assert imagesize.read_header(tmp_path / "text.jpg").reason == imagesize.NOT_AN_IMAGE
    assert imagesize.read_header(tmp_path / "header-only.png").reason == imagesize.TRUNCATED


MAGICS = [
    b"",
    b"\x89PNG\r\n\x1a\n",
    b"\xff\xd8\xff",
    b"RIFF\x00\x00\x00\x00WEBP",
    b"GIF89a",
    b"BM",
    b"II*\x00",
    b"MM\x00*",
]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(magic=st.sampled_from(MAGICS), body=st.binary(max_size=600), ext=st.sampled_from(["png", "jpg", "webp", "gif"]))
def test_random_bytes_are_reported_never_raised(tmp_path, magic, body, ext):
    p = tmp_path / f"fuzz.{ext}"
    p.write_bytes(magic + body)
    header = imagesize.read_header(p)
    assert header.ok or header.reason
    if header.ok:
        assert header.width > 0 and header.height > 0


# -- sizes and buckets --------------------------------------------------------------------------


def ds_section(**kw):
    values = {
        "resolution": 512.0,
        "resolution_type": "pixel",
        "crop": False,
        "crop_aspect": "square",
        "crop_aspect_buckets": [],
        "maximum_image_size": None,
        "target_downsample_size": None,
    }
    values.update(kw)
    return config.Section(**values)


@pytest.mark.parametrize(
    ("size", "kw", "target"),
    [
        ((600, 400), {}, (768, 512)),  # shorter edge -> 512
        ((400, 600), {}, (512, 768)),
        ((1000, 1000), {}, (512, 512)),
        ((1000, 1000), {"crop": True, "resolution": 500.0}, (512, 512)),  # aligned to 64
        ((3000, 1000), {"resolution": 1.0, "resolution_type": "area"}, (1728, 576)),
        ((2000, 1000), {"resolution": 1024.0, "resolution_type": "pixel_area"}, (1472, 704)),
        ((1000, 1000), {"resolution": 1.0, "resolution_type": "area", "crop": True}, (1024, 1024)),
        ((600, 400), {"crop": True}, (512, 512)),  # crop + square: 1:1
        ((600, 400), {"crop": True, "crop_aspect": "preserve"}, (768, 512)),
        ((500, 400), {"crop": True, "crop_aspect": "closest", "crop_aspect_buckets": [0.75, 1.0, 1.78]}, (512, 512)),
        ((700, 400), {"crop": True, "crop_aspect": "closest", "crop_aspect_buckets": [0.75, 1.0, 1.78]}, (896, 512)),
        ((400, 600), {"crop": True, "crop_aspect": "closest", "crop_aspect_buckets": [0.75, 1.0, 1.78]}, (512, 704)),
        ((10, 5000), {"resolution": 64.0}, (64, 32000)),
        ((4000, 3000), {"maximum_image_size": 2048.0, "target_downsample_size": 1536.0}, (704, 512)),
    ],
)
def test_target_size(size, kw, target):
    ds = ds_section(**kw)
    got = target_size(*size, ds)
    assert got == target
    assert got[0] % 64 == 0 and got[1] % 64 == 0


def test_without_crop_a_3_2_image_keeps_its_aspect_whatever_crop_aspect_says():
    # SimpleTuner: crop_aspect applies only with crop = true; its default "square" must not
    # squash a photo into 1:1
    for kind, resolution, want in (("pixel", 128.0, (192, 128)), ("area", 1.0, (1216, 832))):
        ds = ds_section(resolution=resolution, resolution_type=kind, crop_aspect="square")
        assert target_size(192 * 8, 128 * 8, ds) == want


def test_random_crop_aspect_draws_a_bucket_the_image_covers_and_is_reproducible():
    ds = ds_section(crop=True, crop_aspect="random", crop_aspect_buckets=[0.5, 1.0, 1.5, 2.0], resolution=64.0)
    seen = {target_size(512, 512, ds, rng_key=f"img{i}.png") for i in range(40)}
    # 512x512 covers 64x64 and 128x64 / 64x128 targets with room; 2.0 -> 128x64 as well
    assert seen == {(64, 64), (128, 64), (64, 128)}
    assert target_size(512, 512, ds, rng_key="x") == target_size(512, 512, ds, rng_key="x")
    # an image too small for every bucket (it would be upscaled) falls back to 1:1
    assert {target_size(64, 64, ds, rng_key=f"s{i}") for i in range(10)} == {(64, 64)}


def test_buckets_are_exact_sizes_so_a_batch_always_stacks(tmp_path):
    # 64x768 and 64x832 both round to aspect 0.08: one bucket keyed by the rounded ratio
    # would mix two sizes, and a batch of 2 could not be stacked
    folder = tmp_path / "datasets/imgs"
    for i in range(2):
        save(folder / f"a{i}.png", (64, 768))
        save(folder / f"b{i}.png", (64, 832))
    project = make_project(tmp_path, {"training": {"train_batch_size": 2}}, [dataset(caption_strategy="filename")])
    report = scan_dataset(project, 0)
    assert {k: len(v) for k, v in report.buckets.items()} == {(64, 832): 2, (64, 768): 2}
    assert all({i.target for i in items} == {size} for size, items in report.buckets.items())
    assert report.to_json()["buckets"][0] == {"aspect": 0.08, "images": 2, "target": [64, 832]}


def test_area_target_keeps_the_area_and_aspect():
    ds = ds_section(resolution=1024.0, resolution_type="pixel_area")
    w, h = target_size(1500, 1000, ds)
    assert abs(w * h - 1024 * 1024) / (1024 * 1024) < 0.1
    assert abs(w / h - 1.5) < 0.1


# -- scanning -----------------------------------------------------------------------------------


def test_scan_demo_workspace(tmp_path):
    from fluxtui.core import workspace

    ws = workspace.init(tmp_path / "demo", demo=True)
    project, problems = config.load(ws.project_file)
    reports, problems = scan_project(project)
    assert problems == []
    (report,) = reports
    assert len(report.images) == workspace.DEMO_IMAGES == report.captioned
    assert list(report.buckets) == [(64, 64)]
    assert report.batches_per_epoch == math.ceil(workspace.DEMO_IMAGES / 4)
    info = report.images[0]
    assert info.path.is_absolute() and info.path.exists()
    assert (info.width, info.height, info.target, info.bucket) == (64, 64, (64, 64), (64, 64))
    assert info.captions[0].startswith("a ") and info.captions[0].endswith("background")
    assert datasets.cache_file(project, "shapes").is_file()


def test_bad_files_are_listed_and_the_rest_trains(tmp_path):
    folder = tmp_path / "datasets/imgs"
    for i in range(4):
        save(folder / f"good{i}.png")
    save(folder / "cmyk.jpg", mode="CMYK")
    save(folder / "deep.png", mode="I;16")
    save(folder / "pal.png", mode="P")
    (folder / "zero.png").write_bytes(b"")
    (folder / "notes.jpg").write_text("hello")
    good = save(folder / "cut.jpg", (200, 200), quality=100)
    good.write_bytes(good.read_bytes()[:-300])
    (folder / "caption.txt").write_text("a caption file is not an image")
    project = make_project(tmp_path, datasets_=[dataset(caption_strategy="filename")])
    report = scan_dataset(project, 0)
    assert sorted(i.path.name for i in report.images) == sorted(
        ["good0.png", "good1.png", "good2.png", "good3.png", "cmyk.jpg", "deep.png", "pal.png"]
    )
    assert skipped_reasons(report) == {
        "zero.png": "zero-byte file",
        "notes.jpg": "not an image",
        "cut.jpg": "truncated image",
    }
    (warning,) = report.problems
    assert warning.severity == "warning" and warning.key == "datasets[0].instance_data_dir"
    assert "3 of 10 image files" in warning.message and "cut.jpg: truncated image" in warning.message


def test_no_usable_image_is_an_error(tmp_path):
    folder = tmp_path / "datasets/imgs"
    folder.mkdir(parents=True)
    (folder / "zero.png").write_bytes(b"")
    project = make_project(tmp_path, datasets_=[dataset()])
    (error,) = scan_dataset(project, 0).problems
    assert error.is_error and "no usable images" in error.message


def test_missing_folder(tmp_path):
    project = make_project(tmp_path, datasets_=[dataset("datasets/nowhere")])
    report = scan_dataset(project, 0)
    (error,) = report.problems
    assert error.is_error and error.key == "datasets[0].instance_data_dir"
    assert "datasets/nowhere does not exist" in error.message and "create" in error.fix
    assert error.line == line_of(project.text, "instance_data_dir")
    assert report.images == [] and report.batches_per_epoch == 0


def test_empty_folder(tmp_path):
    (tmp_path / "datasets/imgs").mkdir(parents=True)
    (tmp_path / "datasets/imgs/readme.txt").write_text("not an image")
    project = make_project(tmp_path, datasets_=[dataset()])
    (error,) = scan_dataset(project, 0).problems
    assert error.is_error and "no images in datasets/imgs" in error.message
    assert error.line == line_of(project.text, "instance_data_dir")


@pytest.mark.timeout(30)
def test_symlink_loops_never_hang(tmp_path):
    folder = tmp_path / "datasets/imgs"
    save(folder / "a.png")
    save(folder / "sub/b.png")
    (folder / "sub/up").symlink_to(folder, target_is_directory=True)  # a loop back to the root
    (folder / "sub/self").symlink_to(folder / "sub", target_is_directory=True)
    (folder / "self.png").symlink_to(folder / "self.png")  # ELOOP on open
    (folder / "gone.png").symlink_to(folder / "missing.png")
    project = make_project(tmp_path, datasets_=[dataset(caption_strategy="filename")])
    report = scan_dataset(project, 0)
    assert sorted(i.path.relative_to(folder).as_posix() for i in report.images) == ["a.png", "sub/b.png"]
    assert skipped_reasons(report) == {"self.png": "cannot read: symlink loop", "gone.png": "cannot read: broken link"}


def test_hidden_files_and_workspace_folders_are_skipped(tmp_path):
    save(tmp_path / "top.png")
    save(tmp_path / ".hidden.png")
    save(tmp_path / ".git/x.png")
    save(tmp_path / "cache/vae/x.png")
    save(tmp_path / "outputs/run/validation/x.png")
    project = make_project(tmp_path, datasets_=[dataset(".", caption_strategy="filename")])
    report = scan_dataset(project, 0, cache=False)
    assert [i.path.name for i in report.images] == ["top.png"]


def test_exif_rotated_images_are_sized_after_rotation(tmp_path):
    folder = tmp_path / "datasets/imgs"
    save(folder / "portrait.jpg", (128, 64), orientation=6)
    save(folder / "landscape.jpg", (128, 64), orientation=1)
    project = make_project(tmp_path, datasets_=[dataset(caption_strategy="filename")])
    report = scan_dataset(project, 0)
    sizes = {i.path.name: (i.width, i.height, i.target) for i in report.images}
    assert sizes == {"portrait.jpg": (64, 128, (64, 128)), "landscape.jpg": (128, 64, (128, 64))}


def test_minimum_image_size(tmp_path):
    folder = tmp_path / "datasets/imgs"
    save(folder / "small.png", (300, 200))
    save(folder / "big.png", (600, 520))
    project = make_project(tmp_path, datasets_=[dataset(minimum_image_size=256, caption_strategy="filename")])
    report = scan_dataset(project, 0)
    assert [i.path.name for i in report.images] == ["big.png"]
    assert skipped_reasons(report) == {"small.png": "smaller than minimum_image_size (300x200 < 256)"}
    assert "lower minimum_image_size" in report.problems[0].fix

    area = dataset(resolution=0.25, resolution_type="area", minimum_image_size=0.1, caption_strategy="filename")
    report = scan_dataset(make_project(tmp_path, datasets_=[area]), 0)
    assert skipped_reasons(report) == {"small.png": "smaller than minimum_image_size (300x200 = 0.06 MP < 0.1 MP)"}
    edge = dataset(resolution=512, resolution_type="pixel_area", minimum_image_size=256, caption_strategy="filename")
    report = scan_dataset(make_project(tmp_path, datasets_=[edge]), 0)
    assert skipped_reasons(report) == {"small.png": "smaller than minimum_image_size (300x200 < 256x256 px of area)"}


def test_caption_strategies(tmp_path):
    folder = tmp_path / "datasets/imgs"
    save(folder / "a_red_dog.png")
    save(folder / "two_lines.png")
    save(folder / "empty_caption.png")
    save(folder / "sub/nested.png")
    (folder / "two_lines.txt").write_text("\ufefffirst caption\n\n  second caption  \n", encoding="utf-8")
    (folder / "empty_caption.txt").write_text("")
    (folder / "sub/nested.txt").write_text("nested caption")

    report = scan_dataset(make_project(tmp_path, datasets_=[dataset(caption_strategy="textfile")]), 0)
    captions = {i.path.name: i.captions for i in report.images}
    assert captions == {
        "a_red_dog.png": ("a red dog",),
        "two_lines.png": ("first caption", "second caption"),
        "empty_caption.png": ("empty caption",),
        "nested.png": ("nested caption",),
    }
    assert sorted(p.name for p in report.uncaptioned) == ["a_red_dog.png", "empty_caption.png"]
    assert report.captioned == 2
    (warning,) = report.problems
    assert warning.severity == "warning" and warning.key == "datasets[0].caption_strategy"
    assert "a_red_dog.png" in warning.message and "empty_caption.png" in warning.message

    report = scan_dataset(make_project(tmp_path, datasets_=[dataset(caption_strategy="filename")]), 0)
    assert {i.captions for i in report.images} == {("a red dog",), ("two lines",), ("empty caption",), ("nested",)}
    assert report.problems == []

    prompt = dataset(caption_strategy="instanceprompt", instance_prompt="a photo of sks dog")
    report = scan_dataset(make_project(tmp_path, datasets_=[prompt]), 0)
    assert {i.captions for i in report.images} == {("a photo of sks dog",)}


def test_masks(tmp_path):
    folder = tmp_path / "datasets/imgs"
    save(folder / "a.png")
    save(folder / "b.png")
    save(tmp_path / "datasets/masks/a.png", mode="L")
    project = make_project(tmp_path, datasets_=[dataset(caption_strategy="filename", mask_data_dir="datasets/masks")])
    report = scan_dataset(project, 0)
    masks = {i.path.name: i.mask for i in report.images}
    assert masks == {"a.png": tmp_path / "datasets/masks/a.png", "b.png": None}
    (warning,) = report.problems
    assert warning.key == "datasets[0].mask_data_dir" and "1 of 2 images have no mask" in warning.message

    project = make_project(tmp_path, datasets_=[dataset(caption_strategy="filename", mask_data_dir="nope")])
    (error,) = scan_dataset(project, 0).problems
    assert error.is_error and error.key == "datasets[0].mask_data_dir"


# -- the size rule ------------------------------------------------------------------------------


def bucket_folder(folder: Path) -> None:
    """Three buckets at 64 px: 5 square, 2 wide (2.0), 1 tall (0.33)."""
    for i in range(5):
        save(folder / f"square{i}.png", (64, 64))
    for i in range(2):
        save(folder / f"wide{i}.png", (128, 64))
    save(folder / "tall.png", (64, 192))


def test_size_rule_per_bucket_with_several_processes(tmp_path):
    bucket_folder(tmp_path / "datasets/imgs")
    sections = {
        "training": {"train_batch_size": 2, "gradient_accumulation_steps": 2},
        "hardware": {"num_processes": 2},
    }
    ds = dataset(caption_strategy="filename", repeats=0)  # crop = false: each image keeps its aspect
    project = make_project(tmp_path, sections, [ds])
    report = scan_dataset(project, 0)
    assert {a: len(v) for a, v in report.buckets.items()} == {(64, 192): 1, (64, 64): 5, (128, 64): 2}
    errors = {p.message.split(",")[1].split(":")[0].strip(): p for p in report.problems}
    assert set(errors) == {"bucket 0.33 (64x192)", "bucket 1.00 (64x64)", "bucket 2.00 (128x64)"}
    square = errors["bucket 1.00 (64x64)"]
    assert square.is_error and square.key == "datasets[0].repeats"
    assert square.line == line_of(project.text, "repeats")
    assert "5 images x (repeats 0 + 1) = 5 < 8 needed" in square.message
    assert "train_batch_size 2 x gradient_accumulation_steps 2 x 2 processes" in square.message
    assert square.fix.startswith("set repeats = 1 (7 fills every bucket)")
    assert errors["bucket 2.00 (128x64)"].fix.startswith("set repeats = 3 (7 fills every bucket)")
    assert errors["bucket 0.33 (64x192)"].fix.startswith("set repeats = 7,")

    project = make_project(tmp_path, sections, [{**ds, "repeats": 7}])
    report = scan_dataset(project, 0)
    assert report.problems == []
    # per process and step: 2 images x 2 processes; 8 passes over each bucket
    assert report.batches_per_epoch == math.ceil(40 / 4) + math.ceil(16 / 4) + math.ceil(8 / 4)
    assert report.steps_per_epoch == 8


def test_size_rule_square_buckets_and_the_table_line(tmp_path):
    bucket_folder(tmp_path / "datasets/imgs")
    ds = dataset(caption_strategy="filename", crop=True)  # repeats not written: the [[datasets]] line
    project = make_project(tmp_path, {"training": {"train_batch_size": 3, "gradient_accumulation_steps": 4}}, [ds])
    report = scan_dataset(project, 0)
    assert list(report.buckets) == [(64, 64)]
    (error,) = report.problems
    assert "8 images x (repeats 0 + 1) = 8 < 12 needed" in error.message
    assert error.fix.startswith("set repeats = 1,")
    assert error.line == line_of(project.text, "[[datasets]]")


def test_auto_processes_count_visible_gpus(tmp_path, monkeypatch):
    bucket_folder(tmp_path / "datasets/imgs")
    project = make_project(
        tmp_path, {"hardware": {"num_processes": "auto"}}, [dataset(caption_strategy="filename", crop=True)]
    )
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2,3,4,5,6,7,8")
    (error,) = scan_dataset(project, 0).problems
    assert "x 9 processes (auto)" in error.message and error.fix.startswith("set repeats = 1,")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    report = scan_dataset(project, 0)
    assert report.problems == [] and report.processes == 1


@pytest.mark.parametrize(("env", "count"), [("0,1", 2), ("", 0), ("3", 1), ("0,-1,2", 1), ("GPU-abc,GPU-def", 2)])
def test_visible_gpu_count(monkeypatch, env, count):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", env)
    assert visible_gpu_count() == count


# -- the metadata cache -------------------------------------------------------------------------


def test_warm_scan_uses_the_cache_and_notices_changes(tmp_path):
    folder = tmp_path / "datasets/imgs"
    a = save(folder / "a.png", (64, 128))
    save(folder / "b.png", (128, 64))
    (folder / "b.txt").write_text("first")
    project = make_project(tmp_path, datasets_=[dataset(crop_aspect="preserve")])
    cold = scan_dataset(project, 0)
    cache = datasets.cache_file(project, "imgs")
    assert json.loads(cache.read_text())["images"]["a.png"][2:] == [64, 128, None]

    # Same size and mtime: the cache is trusted, the file is not opened again.
    stat = a.stat()
    a.write_bytes(b"x" * stat.st_size)
    os.utime(a, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    warm = scan_dataset(project, 0)
    assert warm.images == cold.images

    # A new mtime: read again (and now it is not an image).
    os.utime(a, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert skipped_reasons(scan_dataset(project, 0)) == {"a.png": "not an image"}

    # A new size: read again.
    save(a, (192, 64))
    os.utime(a, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    (info,) = [i for i in scan_dataset(project, 0).images if i.path.name == "a.png"]
    assert (info.width, info.height) == (192, 64)

    # Captions are cached by their own size and mtime.
    (folder / "b.txt").write_text("second caption")
    (info,) = [i for i in scan_dataset(project, 0).images if i.path.name == "b.png"]
    assert info.captions == ("second caption",)

    # Deleted files leave the cache.
    a.unlink()
    scan_dataset(project, 0)
    assert set(json.loads(cache.read_text())["images"]) == {"b.png"}


def test_broken_cache_and_no_cache(tmp_path):
    save(tmp_path / "datasets/imgs/a.png")
    project = make_project(tmp_path, datasets_=[dataset(caption_strategy="filename")])
    cache = datasets.cache_file(project, "imgs")
    cache.parent.mkdir(parents=True)
    cache.write_text("{not json")
    assert len(scan_dataset(project, 0).images) == 1
    assert json.loads(cache.read_text())["version"] == datasets.CACHE_VERSION
    data = json.loads(cache.read_text())
    data["images"]["a.png"] = "odd"
    cache.write_text(json.dumps(data))
    assert len(scan_dataset(project, 0).images) == 1
    cache.unlink()
    assert len(scan_dataset(project, 0, cache=False).images) == 1
    assert not cache.exists()


def test_disabled_datasets_are_not_scanned(tmp_path):
    save(tmp_path / "datasets/imgs/a.png")
    ds = [dataset(caption_strategy="filename"), {**dataset("missing"), "id": "off", "disabled": True}]
    reports, problems = scan_project(make_project(tmp_path, datasets_=ds))
    assert [r.id for r in reports] == ["imgs"] and problems == []


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    files=st.lists(
        st.tuples(st.sampled_from(MAGICS), st.binary(max_size=300), st.sampled_from(["png", "jpg", "webp", "bmp"])),
        min_size=1,
        max_size=6,
    )
)
def test_scan_reports_random_files_and_never_raises(tmp_path_factory, files):
    ws = tmp_path_factory.mktemp("fuzz")
    folder = ws / "datasets/imgs"
    folder.mkdir(parents=True)
    for i, (magic, body, ext) in enumerate(files):
        (folder / f"f{i}.{ext}").write_bytes(magic + body)
    project = make_project(ws, datasets_=[dataset(caption_strategy="filename")])
    report = scan_dataset(project, 0)
    assert len(report.images) + len(report.skipped) == len(files)
    assert all(s.reason for s in report.skipped)


def test_a_folder_named_like_an_image_is_walked(tmp_path):
    save(tmp_path / "datasets/imgs/album.png/inside.png")
    report = scan_dataset(make_project(tmp_path, datasets_=[dataset(caption_strategy="filename")]), 0)
    assert [i.path.name for i in report.images] == ["inside.png"] and report.skipped == []
