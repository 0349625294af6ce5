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
    assert check.returncode == 0, [p for p in problems if p["severity"] == "error"]


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
    # lycoris_config.json becomes [lora] lycoris_config, every key kept; Attention renamed
    assert project.lora.lora_type == "lycoris" and project.lora.lycoris_config == "lycoris_config.json"
    assert project.lora.lokr_factor == 16  # the file's factor is the one used; the short form stays default
    assert rows["lycoris_config"]["target"] == "lora.lycoris_config"
    for key in ("full_matrix", "linear_dim", "factor", "algo"):
        assert rows[f"lycoris_config.{key}"]["fate"] == "set", rows[f"lycoris_config.{key}"]
    assert rows["lycoris_config.apply_preset"]["fate"] == "converted"
    copied = json.loads((tmp_path / "ws" / "lycoris_config.json").read_text())
    source = json.loads((FIXTURES / "flux-lycoris" / "config" / "lycoris_config.json").read_text())
    assert copied["apply_preset"]["target_module"] == ["FluxAttention", "FeedForward"]
    assert copied["apply_preset"]["module_algo_map"] == {"FluxAttention": {"factor": 12}, "FeedForward": {"factor": 6}}
    assert {k: v for k, v in copied.items() if k != "apply_preset"} == {
        k: v for k, v in source.items() if k != "apply_preset"
    }


def _lycoris_source(tmp_path: Path, cfg: dict) -> Path:
    root = tmp_path / "st"
    (root / "config").mkdir(parents=True)
    (root / "config" / "lyco.json").write_text(json.dumps(cfg))
    settings = {"model_family": "flux", "lora_type": "lycoris", "lycoris_config": "config/lyco.json", "lora_rank": 4}
    (root / "config" / "config.json").write_text(json.dumps(settings))
    return root


def test_a_lycoris_file_is_copied_as_is_under_a_free_name_and_validates(tmp_path):
    cfg = {"algo": "loha", "linear_dim": 8, "linear_alpha": 4, "apply_preset": {"target_module": ["FeedForward"]}}
    src = _lycoris_source(tmp_path, cfg)
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "lycoris_config.json").write_text('{"mine": true}\n')  # the user's own file stays
    result, report = _import(src, ws)
    assert result.returncode == 0 and report["lost"] == 0, report
    rows = {r["source"]: r for r in report["rows"]}
    project = config.load_or_raise(ws)
    assert project.lora.lycoris_config == "lycoris_config-2.json" and project.lora.lora_type == "lycoris"
    assert (ws / "lycoris_config-2.json").read_bytes() == (src / "config" / "lyco.json").read_bytes()
    assert (ws / "lycoris_config.json").read_text() == '{"mine": true}\n'
    assert rows["lycoris_config"]["value"] == "lycoris_config-2.json"
    assert rows["lora_rank"]["fate"] == "set" and "unused" in rows["lora_rank"]["note"]  # linear_dim is used
    assert rows["lycoris_config.algo"]["fate"] == "set"  # loha: fluxtui hands every algo to lycoris
    # importing again into the same workspace keeps the identical copy (no third file)
    _import(src, ws, "--force")
    assert config.load_or_raise(ws).lora.lycoris_config == "lycoris_config-2.json"
    assert not (ws / "lycoris_config-3.json").exists()
    checked = run_cli("validate", str(ws))
    assert "lycoris" not in checked.stdout, checked.stdout  # the copy passes fluxtui's own check


def test_a_lycoris_key_fluxtui_refuses_stays_refused_with_its_reason(tmp_path):
    cfg = {"algo": "lokr", "linear_dim": 10000, "linear_alpha": 1, "factor": 4, "preset": "attn-mlp"}
    src = _lycoris_source(tmp_path, {**cfg, "apply_preset": {"target_module": ["Attention"]}})
    _, report = _import(src, tmp_path / "ws")
    rows = {r["source"]: r for r in report["rows"]}
    assert rows["lycoris_config.preset"]["fate"] == "unsupported"
    assert "apply_preset" in rows["lycoris_config.preset"]["note"]
    copied = json.loads((tmp_path / "ws" / "lycoris_config.json").read_text())
    assert "preset" not in copied and copied["apply_preset"] == {"target_module": ["FluxAttention"]}
    assert copied["factor"] == 4 and copied["linear_dim"] == 10000


def test_schnell_with_simpletuners_assistant_lora_names_imports_them_as_set(tmp_path):
    root = tmp_path / "st"
    (root / "config").mkdir(parents=True)
    settings = {
        "model_family": "flux",
        "model_flavour": "schnell",
        "assistant_lora_path": "someone/schnell-adapter",
        "assistant_lora_weight_name": "adapter.safetensors",
        "assistant_lora_strength": 0.75,
        "assistant_lora_inference_strength": 0.5,
        "disable_assistant_lora": False,
    }
    (root / "config" / "config.json").write_text(json.dumps(settings))
    _, report = _import(root, tmp_path / "ws")
    rows = {r["source"]: r for r in report["rows"]}
    lora = config.load_or_raise(tmp_path / "ws").lora
    for key, value in settings.items():
        if key.startswith(("assistant", "disable")):
            assert rows[key]["fate"] == "set" and rows[key]["target"] == f"lora.{key}", rows[key]
            assert getattr(lora, key) == value


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


LYCO = {
    "algo": "lokr",
    "multiplier": 1.0,
    "linear_dim": 10000,
    "linear_alpha": 1,
    "factor": 8,
    "full_matrix": True,
    "apply_preset": {
        "target_module": ["FluxAttention", "FeedForward"],
        "module_algo_map": {"FeedForward": {"factor": 4}},
    },
}


@pytest.mark.parametrize("form", ["lycoris_config", "lokr_factor"])
def test_round_trip_of_a_lycoris_project(form, demo_workspace, tmp_path):
    settings = {"lora.lora_type": "lycoris", "lora.lora_rank": 8}
    if form == "lycoris_config":
        (demo_workspace / "lycoris_config.json").write_text(json.dumps(LYCO, indent=4) + "\n")
        settings["lora.lycoris_config"] = "lycoris_config.json"
    else:
        settings["lora.lokr_factor"] = 4
    config.set_values(demo_workspace / "project.toml", settings)
    out, again = tmp_path / "st", tmp_path / "again"
    result = run_cli("export-simpletuner", str(demo_workspace), str(out), "--json")
    assert result.returncode == 0, result.stderr
    exported = json.loads((out / "config.json").read_text())
    lyco = json.loads((out / "lycoris_config.json").read_text())
    assert exported["lycoris_config"] == str(out / "lycoris_config.json")
    if form == "lycoris_config":  # SimpleTuner's Flux calls the attention class Attention
        assert lyco["apply_preset"]["target_module"] == ["Attention", "FeedForward"]
        assert {k: v for k, v in lyco.items() if k != "apply_preset"} == {
            k: v for k, v in LYCO.items() if k != "apply_preset"
        }
    else:
        assert lyco == {"algo": "lokr", "multiplier": 1.0, "linear_dim": 8, "linear_alpha": 8, "factor": 4}
    _, report = _import(out / "config.json", again)
    assert report["lost"] == 0
    before, after = _resolved(demo_workspace), _resolved(again)
    for data in (before, after):
        data["project"].pop("name")
        data.pop("datasets")  # the demo's images stay where they are: a path outside `again`
    assert before["lora"] == after["lora"]
    assert before == after


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


def test_export_of_lycoris_config_without_lora_type_lycoris_leaves_it_out(demo_workspace, tmp_path):
    (demo_workspace / "lyco.json").write_text(json.dumps(LYCO))
    config.set_values(demo_workspace / "project.toml", {"lora.lycoris_config": "lyco.json"})
    result = run_cli("export-simpletuner", str(demo_workspace), str(tmp_path / "out"), "--json")
    assert result.returncode == 0, result.stderr
    assert "lycoris" in json.loads(result.stdout)["left_out"]["lora.lycoris_config"]
    exported = json.loads((tmp_path / "out" / "config.json").read_text())
    assert "lycoris_config" not in exported and not (tmp_path / "out" / "lycoris_config.json").exists()


def test_export_with_a_missing_lycoris_config_names_it(demo_workspace, tmp_path):
    config.set_values(
        demo_workspace / "project.toml", {"lora.lora_type": "lycoris", "lora.lycoris_config": "gone.json"}
    )
    result = run_cli("export-simpletuner", str(demo_workspace), str(tmp_path / "out"))
    assert result.returncode == 2 and "lora.lycoris_config" in result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert not (tmp_path / "out").exists()


def test_the_kontext_quickstarts_reference_set_without_dataset_type_imports_as_references(tmp_path):
    """SimpleTuner's Kontext quickstart gives the reference set no dataset_type and sets
    conditioning_type = "reference_loose" (its default): naming it in conditioning_data is enough."""
    import tomllib

    src = _stage("kontext", tmp_path)
    backend = src / "config" / "multidatabackend.json"
    entries = json.loads(backend.read_text())
    del entries[1]["dataset_type"]
    entries[1]["conditioning_type"] = "reference_loose"
    backend.write_text(json.dumps(entries, indent=2))
    ws = tmp_path / "ws"
    result, report = _import(src, ws)
    assert result.returncode == 0, [r for r in report["rows"] if r["fate"] == "unknown"]
    (id_row,) = [r for r in report["rows"] if r["source"] == "multidatabackend.json[1].id"]
    assert 'dataset_type = "conditioning" added' in id_row["note"]
    refs = [d for d in tomllib.loads((ws / "project.toml").read_text())["datasets"] if d["id"] == "edits-source"]
    assert refs[0]["dataset_type"] == "conditioning" and refs[0]["conditioning_type"] == "reference_loose"
    _tiny(ws)
    check = run_cli("validate", str(ws), "--json")
    assert check.returncode == 0, [p for p in json.loads(check.stdout)["problems"] if p["severity"] == "error"]


@pytest.mark.parametrize(
    "where, key, value",
    [
        ("config", "base_model_precision", ["int8-quanto"]),
        ("config", "lycoris_config", {"algo": "lokr"}),
        ("config", "learning_rate", None),
        ("backend", "dataset_type", []),
        ("backend", "conditioning_type", ["reference_loose"]),
        ("backend", "resolution", {"px": 512}),
    ],
)
def test_values_of_the_wrong_shape_are_rows_or_messages_never_tracebacks(where, key, value, tmp_path):
    src = _stage("kontext", tmp_path)
    path = src / "config" / ("config.json" if where == "config" else "multidatabackend.json")
    doc = json.loads(path.read_text().replace(",\n}", "\n}"))
    if where == "config":
        doc[key] = value
    else:
        doc[1][key] = value
    path.write_text(json.dumps(doc))
    result = run_cli("import", str(src), str(tmp_path / "ws"), "--json")
    assert result.returncode in (0, 1, 2), result.stderr
    assert "Traceback" not in result.stdout + result.stderr, result.stderr
    if result.returncode == 2:
        said = result.stdout + result.stderr
        assert path.name in said or key in said  # names the file or the key
