"""Faults and bad inputs (issue 10): each must end in a clear line, never a lost file or a
silent wrong result. Real files, real subprocesses; mounts (tmpfs, read-only bind) when the
tests run as root, else skipped with the reason."""

from __future__ import annotations

from pathlib import Path

from conftest import run_cli

from fluxtui.core import config


def test_init_demo_never_overwrites_the_users_files(tmp_path):
    ws = tmp_path / "ws"
    shapes = ws / "datasets" / "shapes"
    shapes.mkdir(parents=True)
    (shapes / "000-yellow-circle.png").write_bytes(b"my own picture")
    (shapes / "000-yellow-circle.txt").write_text("my own caption\n")
    done = run_cli("init", str(ws), "--demo")
    assert done.returncode == 2, done.stdout + done.stderr
    assert "000-yellow-circle.png" in done.stderr and "000-yellow-circle.txt" in done.stderr
    assert "Traceback" not in done.stderr
    assert (shapes / "000-yellow-circle.png").read_bytes() == b"my own picture"
    assert (shapes / "000-yellow-circle.txt").read_text() == "my own caption\n"
    assert sorted(p.name for p in shapes.iterdir()) == ["000-yellow-circle.png", "000-yellow-circle.txt"]
    assert not (ws / "project.toml").exists()  # nothing half made

    # other files of the user's in that folder are no obstacle
    other = tmp_path / "ws2" / "datasets" / "shapes"
    other.mkdir(parents=True)
    (other / "mine.png").write_bytes(b"x")
    assert run_cli("init", str(tmp_path / "ws2"), "--demo").returncode == 0
    assert (other / "mine.png").read_bytes() == b"x"


def test_project_toml_that_is_a_folder_is_named_as_such(tmp_path):
    ws = tmp_path / "ws"
    (ws / "project.toml").mkdir(parents=True)
    project, problems = config.load(ws)
    assert project is None and "is a folder, not a file" in problems[0].message
    assert "project.toml/project.toml" not in problems[0].message
    for args in (["validate", str(ws)], ["run", str(ws)], ["status", str(ws)], ["init", str(ws)]):
        done = run_cli(*args)
        text = done.stdout + done.stderr
        assert done.returncode == 2, (args, text)
        assert "is a folder" in text and "does not exist" not in text, (args, text)
        assert "project.toml/project.toml" not in text and "Traceback" not in text, (args, text)
    assert Path(ws / "project.toml").is_dir()


def test_every_numeric_option_has_a_range_that_validate_enforces(tmp_path):
    from fluxtui.core import generate, schema

    numeric = [o for o in schema.OPTIONS if o.kind in ("int", "float", "auto_int", "int_list") and not o.choices]
    assert numeric and all(o.min is not None and o.max is not None for o in numeric), [
        o.dotted for o in numeric if o.min is None or o.max is None
    ]
    text = """
[training]
seed = 20000000000000
max_train_steps = 99999999999999999999
[validation]
validation_resolution = ["64x64", "100000x100000"]
[hardware]
gpu_ids = [0, 5000]
[[datasets]]
id = "d"
instance_data_dir = "datasets/d"
resolution = 1e9
"""
    (tmp_path / "project.toml").write_text(text)
    project, problems = config.load(tmp_path)
    assert project is None
    by_key = {p.key: p for p in problems}
    for key in (
        "training.seed",
        "training.max_train_steps",
        "validation.validation_resolution",
        "hardware.gpu_ids",
        "datasets[0].resolution",
    ):
        assert key in by_key, (key, [str(p) for p in problems])
        assert by_key[key].line is not None and by_key[key].fix
    assert "100000" in by_key["validation.validation_resolution"].message
    assert "4294967295" in by_key["training.seed"].fix  # within what torch, numpy and random take
    # the ranges are in the generated docs and JSON Schema
    doc = generate.json_schema()
    training = doc["properties"]["training"]["properties"]
    assert training["seed"]["maximum"] == schema.MAX_SEED
    assert training["max_train_steps"]["maximum"] == schema.MAX_STEPS
    assert doc["properties"]["hardware"]["properties"]["gpu_ids"]["items"]["maximum"] == 1023
    options_md = (generate.OPTIONS_DOC).read_text()
    assert "each side, >= 16, <= 4096" in options_md and "<= 4294967295" in options_md


def test_captions_decode_utf8_bom_and_utf16_and_name_the_line_otherwise(demo_workspace):
    from fluxtui.core import datasets

    shapes = demo_workspace / "datasets" / "shapes"
    captions = sorted(shapes.glob("*.txt"))
    captions[0].write_bytes("\ufeffa café on a blue background\n".encode())  # UTF-8 with BOM
    captions[1].write_bytes("a naïve circle\nsecond line\n".encode("utf-16"))  # UTF-16 with its BOM
    captions[2].write_bytes("first line\na crème circle\n".encode("latin-1"))  # neither: reported
    project, _ = config.load(demo_workspace)
    report = datasets.scan_dataset(project, 0)
    by_stem = {i.path.stem: i.captions for i in report.images}
    assert by_stem[captions[0].stem] == ("a café on a blue background",)
    assert by_stem[captions[1].stem] == ("a naïve circle", "second line")
    assert captions[2].stem not in by_stem  # never trained on a mangled caption
    assert not any("\ufffd" in c for cs in by_stem.values() for c in cs)
    skipped = {s.path.stem: s.reason for s in report.skipped}
    reason = skipped[captions[2].stem]
    assert f"{captions[2].name} line 2 is not valid UTF-8 (byte 0xe8)" in reason, reason
    assert any(captions[2].name in p.message and "line 2" in p.message for p in report.problems)
    # the CLI says so too, and a second (cached) scan still does
    for _ in range(2):
        done = run_cli("validate", str(demo_workspace))
        assert f"{captions[2].name} line 2 is not valid UTF-8" in done.stdout, done.stdout


def test_read_only_workspace_is_one_clear_line_in_run_and_validate(demo_workspace, tmp_path):
    from fault_support import read_only_view

    with read_only_view(demo_workspace, tmp_path / "ro") as ro:
        for args in (["run", str(ro)], ["run", str(ro), "--detach"], ["validate", str(ro)]):
            done = run_cli(*args)
            text = done.stdout + done.stderr
            assert done.returncode == 2, (args, text)
            assert "read-only file system" in text and "Traceback" not in text, (args, text)
        assert not (demo_workspace / "outputs").exists() or not list((demo_workspace / "outputs").iterdir())


def test_full_disk_before_a_run_says_how_much_is_needed(demo_workspace, tmp_path):
    import shutil

    from fault_support import fill, small_disk

    with small_disk(tmp_path / "disk", "16m") as disk:
        shutil.copytree(demo_workspace, disk / "ws")
        fill(disk, leave=100 * 1024)
        for args in (["run", str(disk / "ws")], ["validate", str(disk / "ws")]):
            done = run_cli(*args)
            text = done.stdout + done.stderr
            assert done.returncode == 2, (args, text)
            assert "free on the disk holding" in text and "a run needs at least" in text, (args, text)
            assert "Traceback" not in text, (args, text)
    # a disk that fills between validation and the start gets one line too
    from fluxtui.core import preflight

    line = preflight.os_error_line(OSError(28, "No space left on device", "/w/.fluxtui/lock"), "cannot start the run")
    assert line == "cannot start the run: the disk is full (/w/.fluxtui/lock); free some space and try again"
