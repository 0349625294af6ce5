"""lycoris_config (SimpleTuner's LyCORIS JSON file): validate reads and checks it without torch,
a real run builds the network it describes, the model card's loading code loads the result,
and the ComfyUI copy is the "lycoris_<layer>" LoKr layout ComfyUI's Flux loader reads."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
from test_validate_caught_early import imported, validate

from fluxtui.core import config, lycoris_config, workspace

ATTN_FF = {"target_module": ["FluxAttention", "FeedForward"]}
BASE = {"algo": "lokr", "multiplier": 1.0, "linear_dim": 10000, "linear_alpha": 1, "factor": 16, "full_matrix": True}


def _workspace(tmp_path: Path, cfg: object, settings: dict | None = None, raw: str | None = None) -> Path:
    ws = workspace.init(tmp_path / "ws", demo=True).root
    (ws / "lyco.json").write_text(raw if raw is not None else json.dumps(cfg, indent=2))
    config.set_values(
        ws / "project.toml", {"lora.lora_type": "lycoris", "lora.lycoris_config": "lyco.json", **(settings or {})}
    )
    return ws


BAD = [
    ("missing file", None, None, {"lora.lycoris_config": "nope.json"}, "lora.lycoris_config", "does not exist"),
    ("bad JSON", None, '{\n  "algo": "lokr",\n  "factor": 4,\n}\n', {}, "lora.lycoris_config", "line 4"),
    ("unknown algo", {**BASE, "algo": "lokrr"}, None, {}, "lora.lycoris_config", 'did you mean "lokr"'),
    ("unknown key", {**BASE, "lienar_dim": 4}, None, {}, "lora.lycoris_config", 'did you mean "linear_dim"'),
    ("no linear_dim", {"algo": "lokr", "linear_alpha": 1}, None, {}, "lora.lycoris_config", 'add "linear_dim"'),
    ("a class diffusers' Flux lacks", {**BASE, "apply_preset": {"target_module": ["Attention"]}}, None, {},
     "lora.lycoris_config", "FluxAttention"),
    ("a bad module_algo_map key", {**BASE, "apply_preset": {**ATTN_FF, "module_algo_map": {"FeedForward": {"factr": 4}}}},
     None, {}, "lora.lycoris_config", 'did you mean "factor"'),
    ("ComfyUI cannot read it", {**BASE, "algo": "diag-oft", "apply_preset": ATTN_FF}, None,
     {"lora.lora_format": "comfyui"}, "lora.lora_format", 'lora_format = "diffusers"'),
]  # fmt: skip


@pytest.mark.parametrize(("cfg", "raw", "settings", "key", "fix"), [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_a_bad_lycoris_config_fails_validate_fast_with_key_and_fix(tmp_path, cfg, raw, settings, key, fix):
    ws = _workspace(tmp_path, cfg, settings, raw)
    began = time.monotonic()
    result = validate(ws)
    assert time.monotonic() - began < 20  # a fresh interpreter; no model is loaded
    assert result.returncode == 2, result.stdout
    assert f"{key}:" in result.stdout and fix in result.stdout, result.stdout
    assert "Traceback" not in result.stdout + result.stderr
    assert not imported(result.stderr) & {"torch", "diffusers", "peft", "lycoris"}


def test_a_good_config_validates_and_a_standard_lora_warns_it_is_unused(tmp_path):
    ws = _workspace(tmp_path, {**BASE, "apply_preset": ATTN_FF})
    result = validate(ws)
    assert result.returncode == 0 and "lycoris_config" not in result.stdout, result.stdout
    config.set_values(ws / "project.toml", {"lora.lora_type": "standard"})
    result = validate(ws)
    assert result.returncode == 0 and "lora.lycoris_config:" in result.stdout, result.stdout


def test_init_lora_with_lycoris_is_refused_by_validate(tmp_path):
    from test_validate_caught_early import lora_file

    ws = _workspace(tmp_path, {**BASE, "apply_preset": ATTN_FF}, {"lora.init_lora": "old.safetensors"})
    lora_file(ws / "old.safetensors", rank=16)
    result = validate(ws)
    assert result.returncode == 2 and "lora.init_lora:" in result.stdout, result.stdout


def test_the_known_module_classes_are_the_transformers_own(tiny_model_dir):
    pytest.importorskip("torch")
    from diffusers import FluxTransformer2DModel

    t = FluxTransformer2DModel.from_pretrained(tiny_model_dir / "transformer")
    assert {type(m).__name__ for m in t.modules()} <= set(lycoris_config.FLUX_MODULE_CLASSES)


# -- a real run ----------------------------------------------------------------------------------

LOKR_SUFFIXES = ("lokr_w1", "lokr_w2", "lokr_w1_a", "lokr_w1_b", "lokr_w2_a", "lokr_w2_b", "lokr_t2", "alpha")


def _layers(sd: dict) -> dict[str, dict[str, tuple]]:
    out: dict[str, dict[str, tuple]] = {}
    for key, value in sd.items():
        layer, _, part = key.partition(".")
        out.setdefault(layer, {})[part] = tuple(value.shape)
    return out


@pytest.mark.slow
def test_a_feedforward_factor_changes_the_trained_network_and_the_outputs_load(tmp_path, tmp_path_factory):
    torch = pytest.importorskip("torch")
    pytest.importorskip("lycoris")
    from diffusers import FluxPipeline, FluxTransformer2DModel
    from safetensors.torch import load_file
    from trainer_support import make_workspace, run_trainer, tiny_model

    tiny_root = tmp_path_factory.getbasetemp() / "tiny-models"
    common = {
        "lora.lora_type": "lycoris",
        "lora.lycoris_config": "lyco.json",
        "lora.lora_format": "comfyui",
        "training.max_train_steps": 1,
        "validation.validation_steps": 0,
        "training.learning_rate": 1e-2,
    }
    runs = {
        "plain": {**BASE, "factor": 8, "apply_preset": ATTN_FF},
        "ff4": {**BASE, "factor": 8, "apply_preset": {**ATTN_FF, "module_algo_map": {"FeedForward": {"factor": 2}}}},
    }
    saved, comfy = {}, {}
    for name, cfg in runs.items():
        ws = make_workspace(tmp_path / name, tiny_root=tiny_root)
        (ws / "lyco.json").write_text(json.dumps(cfg))
        config.set_values(ws / "project.toml", common)
        proc = run_trainer(ws, "r1")
        assert proc.returncode == 0, proc.stdout[-4000:]
        lora_dir = ws / "outputs" / "r1" / "lora"
        saved[name] = _layers(load_file(lora_dir / "pytorch_lora_weights.safetensors"))
        comfy[name] = load_file(lora_dir / "pytorch_lora_weights_comfyui.safetensors")
        card = (lora_dir / "README.md").read_text()

    # attention and feed-forward Linear layers of the tiny model, and only those
    t = FluxTransformer2DModel.from_pretrained(tiny_model(tiny_root) / "transformer")
    wanted = {
        "lycoris_" + n.replace(".", "_")
        for n, m in t.named_modules()
        if isinstance(m, torch.nn.Linear) and re.search(r"\.(attn|ff|ff_context)\.", n)
    }
    assert set(saved["plain"]) == set(saved["ff4"]) == wanted
    ff = {layer for layer in wanted if "_ff_" in layer or "_ff_context_" in layer}
    assert ff and all(saved["plain"][layer] != saved["ff4"][layer] for layer in ff)  # the factor took
    assert all(saved["plain"][layer] == saved["ff4"][layer] for layer in wanted - ff)
    assert all("lokr_w1" in parts for parts in saved["ff4"].values())

    # ComfyUI's Flux loader maps "lycoris_<diffusers layer>" and reads lokr_w1/lokr_w2/alpha
    for key in comfy["ff4"]:
        layer, _, part = key.partition(".")
        assert layer in wanted and part in LOKR_SUFFIXES, key

    # the model card's loading code, run as written (base and file filled in), loads the LoKr
    code = card.split("```python\n", 1)[1].split("```", 1)[0]
    assert "create_lycoris_from_weights" in code and "load_lora_weights" not in code
    lora_file = tmp_path / "ff4" / "outputs" / "r1" / "lora" / "pytorch_lora_weights.safetensors"
    code = code.replace("<base model>", str(tiny_model(tiny_root))).replace(
        '"path/to/lora/pytorch_lora_weights.safetensors"', repr(str(lora_file))
    )
    scope: dict = {}
    exec(code, scope)  # the card's own code, with our paths filled in
    assert len(scope["network"].loras) == len(wanted)
    fresh = FluxPipeline.from_pretrained(str(tiny_model(tiny_root)), torch_dtype=torch.bfloat16).transformer
    merged = scope["pipe"].transformer
    layer = sorted(ff)[0].removeprefix("lycoris_").replace("_", ".")
    name = next(n for n in dict(fresh.named_modules()) if n.replace(".", "_") == layer.replace(".", "_"))
    assert not torch.equal(merged.get_submodule(name).weight, fresh.get_submodule(name).weight)


def test_lokr_factor_beside_a_config_is_a_warning_that_it_is_unused(tmp_path):
    ws = _workspace(tmp_path, {**BASE, "apply_preset": ATTN_FF}, {"lora.lokr_factor": 4})
    result = validate(ws)
    assert result.returncode == 0, result.stdout
    assert "lora.lokr_factor:" in result.stdout and "is not used" in result.stdout, result.stdout
