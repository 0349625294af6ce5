"""Loading Flux for training: sources, local folders, hub failures, random weights, quantisation."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from fluxtui.core import config  # noqa: E402
from fluxtui.trainer.models import ModelLoadError, encode_prompts, load_models  # noqa: E402

CPU = torch.device("cpu")


def make_project(ws: Path, text: str):
    """A checked Project from project.toml text (tiny-random, fp32-friendly defaults)."""
    ws.mkdir(parents=True, exist_ok=True)
    (ws / "project.toml").write_text(text)
    project, problems = config.load(ws)
    assert project is not None, problems
    return project


TINY = """
[model]
model_flavour = "tiny-random"
base_model_precision = "no_change"
text_encoder_2_precision = "no_change"
"""


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def test_tiny_random_loads_and_encodes(tmp_path):
    project = make_project(tmp_path / "ws", TINY)
    models = load_models(project, device=CPU, log=lambda s: None)
    assert models.flavour == "tiny-random"
    assert models.weight_dtype == torch.float32
    assert models.has_guidance is True
    assert models.t5_max_length == 32
    assert not any(p.requires_grad for p in models.transformer.parameters())
    embeds, pooled, mask = encode_prompts(models, ["a cat", "a red dog on the grass"], device=CPU)
    assert embeds.shape == (2, 32, models.transformer.config.joint_attention_dim)
    assert pooled.shape == (2, models.transformer.config.pooled_projection_dim)
    assert mask.shape == (2, 32)
    assert 0 < int(mask[0].sum()) < int(mask[1].sum()) < 32


def test_missing_local_folder_names_the_option(tmp_path):
    project = make_project(
        tmp_path / "ws", '[model]\nmodel_flavour = "dev"\npretrained_model_name_or_path = "/no/such/flux"\n'
    )
    with pytest.raises(ModelLoadError) as err:
        load_models(project, device=CPU, log=lambda s: None)
    assert err.value.key == "model.pretrained_model_name_or_path"
    assert "/no/such/flux" in err.value.message and "does not exist" in err.value.message
