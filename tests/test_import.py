"""`fluxtui import` of SimpleTuner configs and `fluxtui export-simpletuner`, through the real CLI.

The fixtures in tests/fixtures/simpletuner/ are SimpleTuner-style configs written for these
tests with SimpleTuner's key names, modelled on its Flux LoRA, LyCORIS and Kontext examples,
config.json.example (`--` keys, string values) and a config.env.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import run_cli

from fluxtui.core import config

FIXTURES = Path(__file__).parent / "fixtures" / "simpletuner"
ALL = ["flux-lora", "flux-lycoris", "kontext", "example", "env"]
TINY = {
    "model.model_flavour": "tiny-random",
    "model.pretrained_model_name_or_path": None,
    "model.base_model_precision": "no_change",
    "model.text_encoder_1_precision": "no_change",
    "model.text_encoder_2_precision": "no_change",
    "model.base_model_default_dtype": "fp32",
    "model.tokenizer_max_length": 32,
    "training.mixed_precision": "no",
    "training.optimizer": "torch-adamw",
    "validation.validation_resolution": ["64x64"],
    "hardware.num_processes": 1,
    "hub.push_to_hub": False,
}


def _stage(name: str, tmp_path: Path) -> Path:
    """The fixture as a SimpleTuner working folder, with small images where its datasets point."""
    from PIL import Image

    root = tmp_path / "simpletuner" / name
    shutil.copytree(FIXTURES / name, root)
    for backend in (root / "config").glob("multidatabackend*.json"):
        for entry in json.loads(backend.read_text()):
            folder = entry.get("instance_data_dir")
            if not folder:
                continue
            (root / folder).mkdir(parents=True, exist_ok=True)
            for i in range(4):
                Image.new("RGB", (64, 64), (40 * i, 90, 200)).save(root / folder / f"img{i}.png")
                (root / folder / f"img{i}.txt").write_text(f"picture {i}\n")
    return root


def _import(src: Path, ws: Path, *extra: str):
    result = run_cli("import", str(src), str(ws), "--json", *extra)
    assert result.returncode in (0, 1), result.stderr
    return result, json.loads(result.stdout)


def _tiny(ws: Path) -> None:
    """The tiny-random model in place of the hub model, at the images' size."""
    import tomllib

    changes = dict(TINY)
    for i, _ in enumerate(tomllib.loads((ws / "project.toml").read_text())["datasets"]):
        changes |= {f"datasets[{i}].resolution": 64, f"datasets[{i}].resolution_type": "pixel"}
        changes |= {f"datasets[{i}].minimum_image_size": None, f"datasets[{i}].crop_aspect": "square"}
        changes |= {f"datasets[{i}].crop_aspect_buckets": None}
    config.set_values(ws / "project.toml", changes)


@pytest.mark.parametrize("name", ALL)
def test_each_example_imports_with_every_key_explained_and_validates(name, tmp_path):
    src = _stage(name, tmp_path)
    ws = tmp_path / "ws"
    result, report = _import(src, ws)
    assert result.returncode == 0, [r for r in report["rows"] if r["fate"] == "unknown"]
    assert report["lost"] == 0
    for row in report["rows"]:
        assert row["fate"] in ("set", "converted", "dropped", "unsupported")
        if row["fate"] in ("dropped", "unsupported"):
            assert row["note"], row  # never without a reason
    sources = [r["source"] for r in report["rows"]]
    assert len(sources) == len(set(sources))  # exactly one fate per key
    cfg = src / "config" / "config.json"
    if cfg.is_file():  # every key of the file has its row
        assert set(json.loads(cfg.read_text().replace(",\n}", "\n}"))) <= set(sources)
    for backend in (src / "config").glob("multidatabackend.json"):
        for i, entry in enumerate(json.loads(backend.read_text())):
            assert {f"multidatabackend.json[{i}].{k}" for k in entry} <= set(sources)
    text = (ws / "project.toml").read_text()
    assert text.startswith("# Imported from SimpleTuner: ")
    assert "Every option is listed with its default" in text  # the commented template, values in place
    _tiny(ws)
    check = run_cli("validate", str(ws), "--json")
    problems = json.loads(check.stdout)["problems"]
    errors = [p for p in problems if p["severity"] == "error"]
    assert check.returncode == 0, check.stdout


def test_key_fates_of_the_flux_lora_example(tmp_path):
    src = _stage("flux-lora", tmp_path)
    ws = tmp_path / "ws"
    _, report = _import(src, ws)
    rows = {r["source"]: r for r in report["rows"]}
    assert rows["output_dir"]["fate"] == "dropped" and "outputs/<run>" in rows["output_dir"]["note"]
    assert rows["model_family"]["note"] == "fluxtui trains Flux only"
    assert rows["num_eval_images"]["fate"] == "unsupported"
    assert rows["checkpoint_step_interval"]["target"] == "training.checkpointing_steps"
    assert rows["validation_step_interval"]["target"] == "validation.validation_steps"
    assert rows["validation_resolution"]["fate"] == "converted"
    assert rows["multidatabackend.json[0].cache_dir_vae"]["value"] == "cache/vae/flux/teddy"
    assert rows["multidatabackend.json[1].dataset_type"]["fate"] == "dropped"
    project = config.load_or_raise(ws)
    assert project.training.checkpointing_steps == 25
    # values sit in the template, under their own help comments
    lines = (ws / "project.toml").read_text().splitlines()
    at = lines.index("learning_rate = 0.0001")
    assert lines[at - 1].startswith("# ") and "[training]" in lines[:at]
    assert project.validation.validation_steps == 50
    assert project.validation.validation_resolution == ["1024x1024", "1280x768"]  # a comma list
    assert project.project.name == "teddy-bear"  # tracker_run_name
    assert project.text_embeds.cache_dir == "cache/text/flux"  # {model_family} expanded
    assert project.text_embeds.write_batch_size == 64
    ds = project.datasets[0]
    assert ds.id == "teddy" and ds.repeats == 2 and ds.resolution == 512
    assert Path(ds.instance_data_dir) == (src / "datasets" / "teddy").resolve()  # referenced where it is
    assert not (ws / "datasets" / "teddy").exists()
    # the prompt library is copied into the workspace and pointed at
    assert project.validation.user_prompt_library == "user_prompt_library.json"
    assert json.loads((ws / "user_prompt_library.json").read_text())["forest"].startswith("a teddy bear")
    for source in rows:  # the comment block names every key
        assert f"#   {source}: " in (ws / "project.toml").read_text()


def test_global_defaults_go_into_each_dataset_that_does_not_set_its_own(tmp_path):
    _, report = _import(_stage("flux-lycoris", tmp_path), tmp_path / "ws")
    project = config.load_or_raise(tmp_path / "ws")
    first, wide = project.datasets
    assert (first.resolution, first.crop, first.crop_style) == (768, True, "random")
    assert (wide.resolution, wide.crop_aspect, wide.crop_aspect_buckets) == (1024, "random", [1.0, 1.5])
    assert wide.crop_style == "random"  # the global value where the dataset is silent
    rows = {r["source"]: r for r in report["rows"]}
    assert "each dataset" in rows["resolution"]["note"]
    # lycoris_config.json: LoKr factor and dims read, the rest refused with the reason
    assert project.lora.lora_type == "lycoris" and project.lora.lokr_factor == 12
    assert rows["lycoris_config.full_matrix"]["fate"] == "unsupported"
    assert rows["lycoris_config.apply_preset"]["note"].startswith("fluxtui picks the adapted layers")
    assert (tmp_path / "ws" / "lycoris_config.json").is_file()


def test_dash_prefixed_config_with_string_values(tmp_path):
    _, report = _import(_stage("example", tmp_path), tmp_path / "ws")
    rows = {r["source"]: r for r in report["rows"]}
    assert rows["--learning_rate"] == {
        "source": "--learning_rate",
        "fate": "converted",
        "target": "training.learning_rate",
        "value": 1e-4,
        "note": "`--` stripped",
    }
    project = config.load_or_raise(tmp_path / "ws")
    assert project.training.gradient_checkpointing is True  # "true"
    assert project.hub.push_to_hub is False  # "false"
    assert project.training.max_train_steps == 1000  # "1000"
    assert project.training.checkpointing_steps == 250
    assert project.validation.validation_guidance_rescale == 0.0  # "0.0"
    assert project.model.model_flavour == "dev"  # from the FLUX.1-dev path
    ds = project.datasets[0]
    assert (ds.crop, ds.repeats, ds.caption_strategy) == (False, 1, "instanceprompt")


def test_config_env_with_extra_args_and_processes(tmp_path):
    _, report = _import(_stage("env", tmp_path), tmp_path / "ws")
    project = config.load_or_raise(tmp_path / "ws")
    assert project.hardware.num_processes == 2  # TRAINING_NUM_PROCESSES
    assert project.lora.lora_rank == 32  # TRAINER_EXTRA_ARGS --lora_rank=32
    assert project.lora.flux_lora_target == "mmdit"
    assert project.training.checkpointing_steps == 30
    assert project.training.flux_fast_schedule is True  # a bare flag appended with +=
    assert project.training.learning_rate == 2e-4
    assert project.validation.validation_resolution == ["512x512", "768x512"]
    assert project.model.model_flavour == "schnell"
    rows = {r["source"]: r for r in report["rows"]}
    assert rows["TRAINING_NUM_PROCESSES (num_processes)"]["target"] == "hardware.num_processes"
    assert rows["DISABLE_UPDATES"]["fate"] == "dropped"


def test_an_unknown_key_is_not_lost_silently(tmp_path):
    src = _stage("flux-lora", tmp_path)
    cfg = src / "config" / "config.json"
    data = json.loads(cfg.read_text().replace(",\n}", "\n}"))
    data["frobnicate_the_weights"] = True
    cfg.write_text(json.dumps(data))
    result, report = _import(src, tmp_path / "ws")
    assert result.returncode == 1
    assert report["lost"] == 1
    assert [r["source"] for r in report["rows"] if r["fate"] == "unknown"] == ["frobnicate_the_weights"]
    text = run_cli("import", str(src), str(tmp_path / "ws2")).stdout
    assert "frobnicate_the_weights" in text and "not understood" in text


def test_never_overwrites_without_force_and_keeps_other_files(tmp_path):
    src = _stage("flux-lora", tmp_path)
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "project.toml").write_text("# mine\n")
    (ws / "notes.txt").write_text("keep me\n")
    result = run_cli("import", str(src), str(ws))
    assert result.returncode == 2
    assert "already exists" in result.stderr and "--force" in result.stderr
    assert "Traceback" not in result.stderr
    assert (ws / "project.toml").read_text() == "# mine\n"
    result = run_cli("import", str(src), str(ws), "--force")
    assert result.returncode == 0, result.stderr
    assert (ws / "notes.txt").read_text() == "keep me\n"
    assert (ws / "project.toml.before-import").read_text() == "# mine\n"
    assert config.load_or_raise(ws).project.name == "teddy-bear"


def test_copy_datasets(tmp_path):
    src = _stage("flux-lora", tmp_path)
    _import(src, tmp_path / "ws", "--copy-datasets")
    project = config.load_or_raise(tmp_path / "ws")
    assert project.datasets[0].instance_data_dir == "datasets/teddy"
    assert sorted(p.name for p in (tmp_path / "ws" / "datasets" / "teddy").glob("*.png")) == [
        f"img{i}.png" for i in range(4)
    ]
    assert (src / "datasets" / "teddy" / "img0.png").is_file()  # copied, not moved


def test_default_dir_is_named_after_the_config(tmp_path):
    src = _stage("flux-lora", tmp_path)
    cwd = tmp_path / "here"
    cwd.mkdir()
    root = str(Path(__file__).resolve().parents[1])  # the checkout, whatever the cwd
    result = run_cli("import", str(src / "config" / "config.json"), cwd=cwd, env={"PYTHONPATH": root})
    assert result.returncode == 0, result.stderr
    assert (cwd / "flux-lora" / "project.toml").is_file()


def test_bad_input_is_a_clear_message(tmp_path):
    result = run_cli("import", str(tmp_path / "nothing-here"))
    assert result.returncode == 2 and "does not exist" in result.stderr and "Traceback" not in result.stderr
    src = _stage("flux-lora", tmp_path)
    (src / "config" / "multidatabackend.json").write_text('[\n  {"id": "a",\n   "type": local}\n]\n')
    result = run_cli("import", str(src), str(tmp_path / "ws"))
    assert result.returncode == 2
    assert "multidatabackend.json:3: invalid JSON" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "ws").exists()  # nothing written from bad input
    (src / "config" / "config.json").write_text('{"learning_rate": 1e-4,\n "seed": }\n')
    result = run_cli("import", str(src), str(tmp_path / "ws"))
    assert result.returncode == 2 and "config.json:2: invalid JSON" in result.stderr


def test_import_prints_the_table_and_the_validate_result(tmp_path):
    result = run_cli("import", str(_stage("flux-lora", tmp_path)), str(tmp_path / "ws"))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "SimpleTuner keys from config.json" in out
    assert "num_eval_images" in out and "unsupported" in out
    assert "became [[datasets]]" in out  # markup-looking text printed as is
    assert "validate" in out and ("ready to train" in out or "not ready" in out)


def _resolved(ws: Path) -> dict:
    """The resolved config with workspace paths made comparable across workspaces."""
    project = config.load_or_raise(ws)
    data = project.to_dict()
    for section in data.values():
        for item in section if isinstance(section, list) else [section]:
            for key, value in item.items():
                if isinstance(value, str) and (ws / value).exists() and key != "name":
                    item[key] = ("in-workspace", (ws / value).read_bytes() if (ws / value).is_file() else value)
    return data


@pytest.mark.parametrize("name", ["flux-lora", "flux-lycoris", "env", "example", "toml-hf"])
def test_round_trip_import_export_import(name, tmp_path):
    src = _stage(name, tmp_path)
    first, again, out = tmp_path / "first", tmp_path / "again", tmp_path / "st-export"
    _import(src, first)
    result = run_cli("export-simpletuner", str(first), str(out), "--json")
    assert result.returncode == 0, result.stderr
    files = {Path(f).name for f in json.loads(result.stdout)["files"]}
    assert {"config.json", "multidatabackend.json"} <= files
    exported = json.loads((out / "config.json").read_text())
    assert exported["model_family"] == "flux" and "checkpoint_step_interval" in exported
    _, report = _import(out / "config.json", again)
    assert report["lost"] == 0
    assert _resolved(first) == _resolved(again)
    # and the export refuses to overwrite without --force
    assert run_cli("export-simpletuner", str(first), str(out)).returncode == 2


def test_config_toml_with_a_huggingface_dataset(tmp_path):
    """config.toml with string values and a `--` key; a hub dataset with SimpleTuner's
    `huggingface` sub-table next to a regularisation folder (the quickstart's keys)."""
    _, report = _import(_stage("toml-hf", tmp_path), tmp_path / "ws")
    assert report["lost"] == 0, [r for r in report["rows"] if r["fate"] == "unknown"]
    project = config.load_or_raise(tmp_path / "ws")
    assert project.model.model_flavour == "krea"  # from the FLUX.1-Krea-dev path
    assert project.training.learning_rate == 8e-5 and project.lora.lora_rank == 8
    assert project.training.use_ema is True and project.training.ema_decay == 0.999
    assert project.validation.validation_steps == 75
    hub, reg = project.datasets
    assert (hub.type, hub.dataset_name, hub.caption_column) == ("huggingface", "someone/pokemon-captions", "text")
    assert hub.caption_strategy == "huggingface" and hub.instance_data_dir is None
    assert reg.is_regularisation_data is True and reg.maximum_image_size == 512
    assert reg.cache_dir_vae == "cache/vae/flux/reg"
    assert project.text_embeds.write_batch_size == 128


def test_export_of_a_demo_workspace_says_what_simpletuner_lacks(demo_workspace, tmp_path):
    config.set_values(demo_workspace / "project.toml", {"hardware.gpu_ids": [0], "validation.prompts.cat": "a cat"})
    result = run_cli("export-simpletuner", str(demo_workspace), str(tmp_path / "out"), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["left_out"] == {"hardware.gpu_ids": "SimpleTuner has no such option"}
    assert "tiny-random" in report["notes"]["model.model_flavour"]
    assert json.loads((tmp_path / "out" / "user_prompt_library.json").read_text()) == {"cat": "a cat"}
    backends = json.loads((tmp_path / "out" / "multidatabackend.json").read_text())
    assert backends[0]["instance_data_dir"] == str((demo_workspace / "datasets" / "shapes").resolve())
    assert backends[-1]["dataset_type"] == "text_embeds"
