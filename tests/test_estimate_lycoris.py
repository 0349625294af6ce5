"""The estimate sizes a lycoris_config network as lycoris builds it: the trainable parameter
count core/lycoris_size.py predicts (no torch) equals the count of the network the trainer's
add_lora creates, on the tiny model and on real-width Flux blocks (built on the meta device)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fluxtui.core import config, flux_arch, preflight, workspace
from fluxtui.core.estimate_model import project_lora_size

ATTN_FF = {"target_module": ["FluxAttention", "FeedForward"]}
CONFIGS = {
    "lokr full_matrix": {"algo": "lokr", "linear_dim": 10000, "linear_alpha": 1, "factor": 16, "full_matrix": True,
                         "apply_preset": ATTN_FF},
    "lokr decomposed, FeedForward factor 4": {
        "algo": "lokr", "linear_dim": 4, "linear_alpha": 4, "factor": 8, "decompose_both": True,
        "apply_preset": {**ATTN_FF, "module_algo_map": {"FeedForward": {"factor": 4}}}},
    "lokr no preset (flux_lora_target's layers)": {"algo": "lokr", "linear_dim": 10000, "linear_alpha": 1},
    "loha on whole blocks, norms excluded": {
        "algo": "loha", "linear_dim": 4, "linear_alpha": 2,
        "apply_preset": {"target_module": ["FluxTransformerBlock", "FluxSingleTransformerBlock"],
                         "exclude_name": [r".*\.norm"]}},
    "lora with a name_algo_map": {
        "algo": "lora", "linear_dim": 4, "linear_alpha": 4,
        "apply_preset": {"target_module": ["FeedForward"], "name_algo_map": {r".*attn\.to_q": {"algo": "lokr",
                                                                                            "factor": 4}}}},
    "lokr unbalanced, use_scalar, Linear map": {
        "algo": "lokr", "linear_dim": 8, "linear_alpha": 1, "factor": 4, "unbalanced_factorization": True,
        "use_scalar": True, "apply_preset": {"target_module": ["FluxAttention"], "module_algo_map": {
            "Linear": {"factor": 2}}}},
}  # fmt: skip
# Two double and two single blocks of Flux.1's real widths (3072 hidden, 12288 MLP, T5 4096).
REAL_WIDTH = flux_arch.FluxConfig(num_layers=2, num_single_layers=2)


def _project(tmp_path: Path, lyco: dict):
    ws = workspace.init(tmp_path / "ws", demo=True).root
    (ws / "lyco.json").write_text(json.dumps(lyco))
    config.set_values(ws / "project.toml", {"lora.lora_type": "lycoris", "lora.lycoris_config": "lyco.json"})
    return config.load_or_raise(ws)


def _trained(transformer, project) -> int:
    from fluxtui.trainer.lora import add_lora

    params = add_lora(transformer, project, log=lambda *_: None)
    return sum(p.numel() for p in params)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_estimate_counts_the_parameters_lycoris_creates_on_the_tiny_model(name, tmp_path, tiny_model_dir):
    pytest.importorskip("lycoris")
    from diffusers import FluxTransformer2DModel

    project = _project(tmp_path, CONFIGS[name])
    transformer = FluxTransformer2DModel.from_pretrained(tiny_model_dir / "transformer")
    real = _trained(transformer, project)
    params, layers, note = project_lora_size(project, flux_arch.FLUX_TINY)
    assert real > 0 and params == real, (params, real)
    assert layers > 0 and "lyco.json" in note
    assert preflight.checkpoint_bytes(project) == params * 12 + (1 << 20)  # fp32 weights + 2 moments


@pytest.mark.parametrize("name", list(CONFIGS))
def test_estimate_counts_the_parameters_lycoris_creates_at_real_width(name, tmp_path):
    torch = pytest.importorskip("torch")
    pytest.importorskip("lycoris")
    from diffusers import FluxTransformer2DModel

    project = _project(tmp_path, CONFIGS[name])
    with torch.device("meta"):
        transformer = FluxTransformer2DModel(**REAL_WIDTH.diffusers_kwargs())
    real = _trained(transformer, project)
    params, _layers, _note = project_lora_size(project, REAL_WIDTH)
    assert real > 0 and abs(params - real) <= real / 100, (params, real)


def test_the_short_form_and_the_file_estimate_differently(tmp_path):
    project = _project(tmp_path, CONFIGS["lokr full_matrix"])
    full, _, _ = project_lora_size(project, flux_arch.FLUX_FULL)
    config.set_values(project.path, {"lora.lycoris_config": None})
    short, _, note = project_lora_size(config.load_or_raise(project.path.parent), flux_arch.FLUX_FULL)
    assert full > 5 * short  # full_matrix: w2 is whole, far larger than rank-16 halves
    assert "lyco.json" not in note
