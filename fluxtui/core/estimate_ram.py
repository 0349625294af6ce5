"""System RAM per stage of a run (the trainer process's resident memory), from the same plan
as the GPU estimate. Rough: the big parts are the full-precision copies a component passes
through on its way to the GPU.

- `cache_text`: T5 read into RAM in full precision (CLIP is already on the GPU); with
  `quantize_via = "cpu"` its quantised copy grows next to it.
- `cache_latents`: the VAE and a batch of decoded images.
- `load_models`: the transformer read into RAM in full precision (a bf16 FLUX.1 is 22.2 GiB;
  random weights are built there too); with `quantize_via = "cpu"` it is quantised there, so
  its quantised copy adds to it. On the accelerator it leaves RAM block by block.
- `train`, `validate`: group offload keeps the transformer's weights in RAM (pinned with
  `group_offload_use_stream`), a paged optimizer may move its state here, validation's VAE
  waits here between validations.
"""

from __future__ import annotations

from .estimate_model import _component_bytes, _Plan, _transformer_bytes

# Imports (torch, diffusers, peft, quanto: ~0.6 GiB RSS measured by bench/gpu.py on a CPU)
# plus the CUDA runtime's host side (kernels, cuBLAS/cuDNN; rough until a GPU probe measures it).
IMPORTS_RAM_GIB = 0.6
CUDA_HOST_RAM_GIB = 1.4
GIB = 1024**3


def ram_stages(plan: _Plan) -> dict[str, dict[str, float]]:
    """Every stage's RAM parts in bytes, in the trainer's order."""
    p, m, b = plan.project, plan.project.model, plan.base_bytes
    base = {"imports": IMPORTS_RAM_GIB * GIB, "CUDA runtime (host side)": CUDA_HOST_RAM_GIB * GIB}
    on_cpu = m.quantize_via == "cpu"

    t5_full = _component_bytes(plan.pipe.t5, "no_change", b)
    text = {**base, "T5 in full precision (loading)": t5_full}
    if on_cpu and m.text_encoder_2_precision != "no_change":
        text["T5 quantised copy (quantize_via = cpu)"] = _component_bytes(plan.pipe.t5, m.text_encoder_2_precision, b)

    vae = _component_bytes(plan.pipe.vae, "no_change", b)
    images = int(p.training.vae_batch_size) * plan.pixels * 3 * 4 * 2  # PIL image + fp32 tensor
    latents = {**base, "VAE": vae, f"{int(p.training.vae_batch_size)} decoded images": images}

    t_full = _transformer_bytes(plan.cfg, "no_change", b)[0]
    t_q = _transformer_bytes(plan.cfg, plan.precision, b)[0]
    load = {**base, "transformer in full precision (loading)": t_full}
    if on_cpu and plan.precision != "no_change":
        load["transformer quantised copy (quantize_via = cpu)"] = t_q

    train = dict(base)
    mem = p.memory
    if mem.enable_group_offload:
        label = "offloaded transformer weights" + (" (pinned)" if mem.group_offload_use_stream else "")
        train[label] = 0.0 if mem.group_offload_to_disk_path else t_q
    if p.training.optimizer == "bnb-lion8bit-paged":
        from .estimate_model import _lora_parts

        train["paged optimizer state (may move here)"] = _lora_parts(plan)[2]
    out = {"cache_text": text, "cache_latents": latents, "load_models": load, "train": train}
    if p.validation.validation_steps and p.validation.validation_resolution:
        out["validate"] = {**train, "VAE (waits here between validations)": vae}
    return out
