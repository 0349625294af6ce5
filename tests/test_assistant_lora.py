"""The assistant LoRA (SimpleTuner's assistant_lora_path, on by default for schnell): which one
a run gets, what validate says about it without torch, how it sits in the transformer (frozen,
active in training, off in validation and regularisation targets, never saved), and a real run.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_validate_caught_early import imported, lora_file, validate

from fluxtui.core import assistant_lora, config, workspace

SCHNELL_ADAPTER = "ostris/FLUX.1-schnell-training-adapter"


def _project(ws: Path, settings: dict):
    root = workspace.init(ws, demo=True).root
    config.set_values(root / "project.toml", settings)
    project, problems = config.load(root)
    assert project is not None, [str(p) for p in problems]
    return project


# -- which assistant --------------------------------------------------------------------------


def test_schnell_gets_simpletuners_adapter_by_default_and_other_flavours_none(tmp_path):
    a = assistant_lora.resolve(_project(tmp_path / "s", {"model.model_flavour": "schnell"}))
    assert a is not None and a.value == SCHNELL_ADAPTER and a.kind == "hub" and a.from_default
    assert a.strength == 1.0 and a.inference_strength == 0.0
    assert assistant_lora.resolve(_project(tmp_path / "d", {"model.model_flavour": "dev"})) is None
    assert assistant_lora.resolve(_project(tmp_path / "t", {})) is None  # the demo's tiny-random


def test_an_empty_value_or_disable_turns_it_off(tmp_path):
    ws = workspace.init(tmp_path / "e", demo=True).root
    text = (ws / "project.toml").read_text()
    text = text.replace('model_flavour = "tiny-random"', 'model_flavour = "schnell"')
    text = text.replace("[lora]\n", '[lora]\nassistant_lora_path = ""\n', 1)
    (ws / "project.toml").write_text(text)
    project, problems = config.load(ws)
    assert project is not None, problems
    assert assistant_lora.resolve(project) is None
    off = _project(tmp_path / "x", {"model.model_flavour": "schnell", "lora.disable_assistant_lora": True})
    assert assistant_lora.resolve(off) is None


def test_an_explicit_file_applies_to_any_flavour(tmp_path):
    ws = tmp_path / "f"
    project = _project(ws, {"lora.assistant_lora_path": "helper.safetensors"})
    a = assistant_lora.resolve(project)
    assert a is not None and a.kind == "missing" and a.path == ws / "helper.safetensors"
    lora_file(ws / "helper.safetensors", rank=4)
    a = assistant_lora.resolve(project)
    assert a is not None and a.kind == "file" and not a.from_default


# -- validate, without torch -------------------------------------------------------------------


def _validate(ws: Path, tmp_path: Path):
    return validate(ws, env={"HOME": str(tmp_path), "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"})


def _clean(result) -> None:
    assert "Traceback" not in result.stdout + result.stderr
    assert not imported(result.stderr) & {"torch", "diffusers", "peft", "huggingface_hub"}


@pytest.mark.parametrize(
    ("settings", "file", "key", "fix"),
    [
        ({"lora.assistant_lora_path": "nope/helper.safetensors"}, None, "lora.assistant_lora_path", "does not exist"),
        ({"lora.assistant_lora_path": "helper.safetensors"}, "lokr", "lora.assistant_lora_path", "peft or kohya LoRA"),
        ({"lora.assistant_lora_path": "helpers"}, "folder", "lora.assistant_lora_weight_name", "weight_name"),
        ({"model.model_flavour": "schnell"}, None, "lora.assistant_lora_path", "unset HF_HUB_OFFLINE"),
    ],
    ids=["missing file", "a LoKr file", "folder without the named file", "schnell's hub default offline"],
)
def test_validate_refuses_an_assistant_the_run_could_not_load(tmp_path, settings, file, key, fix):
    ws = workspace.init(tmp_path / "ws", demo=True).root
    if file == "folder":
        (ws / "helpers").mkdir()
        lora_file(ws / "helpers" / "other.safetensors", rank=4)
        settings = {**settings, "lora.assistant_lora_weight_name": "assistant.safetensors"}
    elif file:
        lora_file(ws / "helper.safetensors", rank=4, kind=file)
    config.set_values(ws / "project.toml", settings)
    result = _validate(ws, tmp_path)
    assert result.returncode == 2, result.stdout
    assert f"{key}:" in result.stdout and fix in result.stdout, result.stdout
    _clean(result)


def test_validate_accepts_schnell_when_the_adapter_is_in_the_hub_cache_or_off(tmp_path):
    ws = workspace.init(tmp_path / "ws", demo=True).root
    config.set_values(ws / "project.toml", {"model.model_flavour": "schnell"})
    repo = tmp_path / "hf" / "hub" / "models--ostris--FLUX.1-schnell-training-adapter"
    snapshot = repo / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc123")
    lora_file(snapshot / "pytorch_lora_weights.safetensors", rank=16)
    result = _validate(ws, tmp_path)
    assert "assistant_lora_path" not in result.stdout, result.stdout
    _clean(result)

    (snapshot / "pytorch_lora_weights.safetensors").unlink()
    config.set_values(ws / "project.toml", {"lora.disable_assistant_lora": True})
    result = _validate(ws, tmp_path)
    assert "assistant_lora_path" not in result.stdout, result.stdout


# -- in the transformer ------------------------------------------------------------------------


def _forward(t, torch):
    cfg = t.config
    gen = torch.Generator().manual_seed(0)
    kw = {
        "hidden_states": torch.randn(1, 16, cfg.in_channels, generator=gen),
        "encoder_hidden_states": torch.randn(1, 8, cfg.joint_attention_dim, generator=gen),
        "pooled_projections": torch.randn(1, cfg.pooled_projection_dim, generator=gen),
        "timestep": torch.tensor([0.5]),
        "img_ids": torch.zeros(16, 3),
        "txt_ids": torch.zeros(8, 3),
        "return_dict": False,
    }
    if cfg.guidance_embeds:
        kw["guidance"] = torch.tensor([1.0])
    with torch.no_grad():
        return t(**kw)[0]


@pytest.mark.parametrize("lora_type", ["standard", "lycoris"])
def test_frozen_active_in_training_off_in_validation_and_never_saved(tmp_path, tiny_model_dir, lora_type):
    torch = pytest.importorskip("torch")
    if lora_type == "lycoris":
        pytest.importorskip("lycoris")
    from conftest import TINY, make_project
    from diffusers import FluxTransformer2DModel
    from trainer_support import make_assistant_lora

    from fluxtui.trainer import assistant, lora

    helper = make_assistant_lora(tiny_model_dir / "transformer", tmp_path / "helper")
    common = f'\n[lora]\nlora_rank = 4\nlora_type = "{lora_type}"\n'
    plain = FluxTransformer2DModel.from_pretrained(tiny_model_dir / "transformer")
    lora.add_lora(plain, make_project(tmp_path / "plain", TINY + common), log=lambda _m: None)
    t = FluxTransformer2DModel.from_pretrained(tiny_model_dir / "transformer")
    lines: list[str] = []
    project = make_project(tmp_path / "with", TINY + common + f'assistant_lora_path = "{helper}"\n')
    trainable = lora.add_lora(t, project, log=lines.append)
    assert any("assistant LoRA loaded" in line for line in lines), lines

    y_plain, y_train = _forward(plain, torch), _forward(t, torch)
    assert not torch.allclose(y_plain, y_train)  # the fresh LoRA is a no-op: the difference is the assistant
    with assistant.for_validation(t):  # inference strength 0: the images are made without it
        assert torch.equal(_forward(t, torch), y_plain)
    assert torch.equal(_forward(t, torch), y_train)
    lora.set_adapter_enabled(t, False)  # a regularisation target: the bare base
    assert torch.equal(_forward(t, torch), y_plain)
    lora.set_adapter_enabled(t, True)
    assert torch.equal(_forward(t, torch), y_train)

    frozen = assistant.params(t)
    assert frozen and not any(p.requires_grad for p in frozen)
    assert not {id(p) for p in frozen} & {id(p) for p in trainable}
    assert all(p.requires_grad for p in trainable)
    assert lora.lora_state_dict(t).keys() == lora.lora_state_dict(plain).keys()


# -- a real run --------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_run_trains_under_the_assistant_and_saves_only_its_own_lora(tmp_path, tmp_path_factory):
    pytest.importorskip("torch")
    from safetensors.torch import load_file
    from trainer_support import events, make_assistant_lora, make_workspace, run_trainer, steps, tiny_model

    tiny_root = tmp_path_factory.getbasetemp() / "tiny-models"
    common = {"training.max_train_steps": 2, "validation.validation_steps": 2, "training.learning_rate": 1e-2}
    helper = make_assistant_lora(tiny_model(tiny_root) / "transformer", tmp_path / "helper", std=0.2)
    plain = make_workspace(tmp_path / "plain", common, tiny_root=tiny_root)
    stacked = make_workspace(
        tmp_path / "stacked", {**common, "lora.assistant_lora_path": str(helper)}, tiny_root=tiny_root
    )
    out = {}
    for ws in (plain, stacked):
        proc = run_trainer(ws, "r1")
        assert proc.returncode == 0, proc.stdout[-4000:]
        out[ws] = proc.stdout
    assert "assistant LoRA loaded from" in out[stacked] and str(helper) in out[stacked]
    assert "assistant LoRA" not in out[plain]

    lora_dir = {ws: ws / "outputs" / "r1" / "lora" for ws in (plain, stacked)}
    saved = {ws: load_file(lora_dir[ws] / "pytorch_lora_weights.safetensors") for ws in (plain, stacked)}
    assert saved[stacked].keys() == saved[plain].keys()
    assert not any("assistant" in k for k in saved[stacked])
    assert any(not saved[stacked][k].equal(saved[plain][k]) for k in saved[plain])  # trained under another model
    assert steps(events(stacked, "r1"))[1] != steps(events(plain, "r1"))[1]

    card = (lora_dir[stacked] / "README.md").read_text()
    assert "inference is without the assistant" in card and str(helper) in card
    assert "assistant" not in (lora_dir[plain] / "README.md").read_text().split("<details>")[0]
    frozen = json.loads(card.split("```json", 1)[1].split("```", 1)[0])
    assert frozen["lora"]["assistant_lora_path"] == str(helper)


def test_strengths_scale_it_in_training_and_validation(tmp_path, tiny_model_dir):
    torch = pytest.importorskip("torch")
    from conftest import TINY, make_project
    from diffusers import FluxTransformer2DModel
    from trainer_support import make_assistant_lora

    from fluxtui.trainer import assistant, lora

    make_assistant_lora(tiny_model_dir / "transformer", tmp_path / "helper")
    base = f'\n[lora]\nlora_rank = 4\nassistant_lora_path = "{tmp_path / "helper"}"\n'
    outputs = {}
    for name, extra in {
        "full": 'assistant_lora_weight_name = "pytorch_lora_weights.safetensors"\n',
        "none": "assistant_lora_strength = 0.0\nassistant_lora_inference_strength = 1.0\n",
    }.items():
        t = FluxTransformer2DModel.from_pretrained(tiny_model_dir / "transformer")
        lora.add_lora(t, make_project(tmp_path / name, TINY + base + extra), log=lambda _m: None)
        outputs[name] = _forward(t, torch)
        with assistant.for_validation(t):
            outputs[name + "-validation"] = _forward(t, torch)
    assert torch.equal(outputs["none-validation"], outputs["full"])  # inference strength 1: as in training
    assert torch.equal(outputs["full-validation"], outputs["none"])  # strength 0: the bare base
    assert not torch.equal(outputs["full"], outputs["none"])


def test_a_hub_assistant_comes_from_the_hub_cache_offline(tmp_path, tiny_model_dir, monkeypatch):
    torch = pytest.importorskip("torch")
    from conftest import TINY, make_project
    from diffusers import FluxTransformer2DModel
    from huggingface_hub import constants
    from trainer_support import make_assistant_lora

    from fluxtui.trainer import assistant, lora
    from fluxtui.trainer.models import ModelLoadError

    cache = tmp_path / "hub"
    repo = cache / "models--someone--tiny-assistant"
    make_assistant_lora(tiny_model_dir / "transformer", repo / "snapshots" / "c0ffee")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("c0ffee")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    project = make_project(
        tmp_path / "ws", TINY + '\n[lora]\nlora_rank = 4\nassistant_lora_path = "someone/tiny-assistant"\n'
    )
    a = assistant_lora.resolve(project)
    assert a is not None and a.kind == "hub"
    assert (
        assistant_lora.cached_file(a.value, None) == repo / "snapshots" / "c0ffee" / "pytorch_lora_weights.safetensors"
    )
    t = FluxTransformer2DModel.from_pretrained(tiny_model_dir / "transformer")
    lines: list[str] = []
    lora.add_lora(t, project, log=lines.append)
    assert assistant.loaded(t) is not None and any("c0ffee" in line for line in lines), lines
    assert all(not p.requires_grad for p in assistant.params(t))
    assert torch.isfinite(_forward(t, torch)).all()

    missing = make_project(tmp_path / "ws2", TINY + '\n[lora]\nassistant_lora_path = "someone/not-cached"\n')
    with pytest.raises(ModelLoadError) as info:
        lora.add_lora(FluxTransformer2DModel.from_pretrained(tiny_model_dir / "transformer"), missing, log=lines.append)
    assert info.value.key == "lora.assistant_lora_path" and "not in the local hub cache" in info.value.message
