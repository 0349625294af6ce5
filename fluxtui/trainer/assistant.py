"""The assistant LoRA in the transformer: loaded as a second, frozen peft adapter named
"assistant" (as SimpleTuner does), active at assistant_lora_strength while training, at
assistant_lora_inference_strength (0: off) while validating, never saved.

A separate adapter rather than weights fused into the base: it works the same on bf16, quanto
and NF4 bases (peft wraps the quantised layer, the base is never rewritten), it can be switched
off for the validation images and for regularisation targets, and the trained adapter's state
dict cannot pick it up. Which assistant a run gets is decided in core/assistant_lora.py.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from fluxtui.core import assistant_lora

from .models import ModelLoadError, Source

ADAPTER = assistant_lora.ADAPTER_NAME
KEY = assistant_lora.KEY
_STATE_ATTR = "_fluxtui_assistant"


class AssistantError(ModelLoadError):
    """The assistant LoRA cannot be loaded; the message names the option and the fix."""


def _file(project: Any, a: assistant_lora.Assistant, log: Callable[[str], None]) -> Path:
    if a.kind == "file":
        return Path(a.path)
    if a.kind == "missing":
        raise AssistantError(f"`{KEY}` = {a.value!r}: {a.path} does not exist.", KEY)
    if a.kind == "folder":
        folder = Path(a.path)
    else:
        from huggingface_hub import snapshot_download

        from .models import _hub_error

        log(f"fetching the assistant LoRA {a.value} from the hub (or the local hub cache)")
        try:
            folder = Path(snapshot_download(a.value, allow_patterns=[a.weight_name or "*.safetensors"]))
        except Exception as exc:  # huggingface_hub raises many classes; each gets a message
            raise _hub_error(exc, Source(a.value, None, False, KEY)) from exc
    found = assistant_lora.pick_file(folder, a.weight_name)
    if found is None:
        raise AssistantError(
            f"`{KEY}` = {a.value!r}: no single LoRA file in it; set `{assistant_lora.WEIGHT_KEY}` to its file name.",
            assistant_lora.WEIGHT_KEY,
        )
    return found


def load(transformer: Any, project: Any, log: Callable[[str], None] = print) -> Path | None:
    """Load the run's assistant (if any) into ``transformer`` as the frozen "assistant" adapter.
    Returns the file loaded, or None when the run has none."""
    a = assistant_lora.resolve(project)
    if a is None:
        return None
    if a.kind == "hub" and project.model.random_weights:
        log(f"random weights: the assistant LoRA {a.value} is left out (nothing is downloaded)")
        return None
    path = _file(project, a, log)
    from diffusers.loaders import FluxLoraLoaderMixin

    try:
        state_dict, alphas = FluxLoraLoaderMixin.lora_state_dict(str(path), return_alphas=True)
        state_dict = {k: v for k, v in state_dict.items() if k.startswith("transformer.")}
        if not state_dict:
            raise ValueError("it holds no transformer LoRA weights")
        with warnings.catch_warnings():  # "multiple adapters in the model": that is the point
            warnings.filterwarnings("ignore", message=".*multiple adapters.*")
            FluxLoraLoaderMixin.load_lora_into_transformer(
                state_dict, network_alphas=alphas, transformer=transformer, adapter_name=ADAPTER
            )
    except AssistantError:
        raise
    except Exception as exc:
        raise AssistantError(f"`{KEY}`: {path} could not be loaded as a Flux LoRA: {_first_line(exc)}", KEY) from exc
    object.__setattr__(transformer, _STATE_ATTR, a)
    for p in params(transformer):
        p.data = p.data.to(_base_dtype(transformer))
    use(transformer, a.strength)
    log(
        f"assistant LoRA loaded from {path} ({len(params(transformer))} frozen tensors, "
        f"strength {a.strength:g} in training, {a.inference_strength:g} in validation); it is not saved"
    )
    return path


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _base_dtype(transformer: Any) -> Any:
    """The dtype the base computes in (x_embedder is never quantised): the frozen assistant is
    held in it, the trained adapter stays in fp32."""
    import torch

    weight = getattr(getattr(transformer, "x_embedder", None), "weight", None)
    return weight.dtype if weight is not None and weight.is_floating_point() else torch.float32


def loaded(transformer: Any) -> assistant_lora.Assistant | None:
    return getattr(transformer, _STATE_ATTR, None)


def params(transformer: Any) -> list[Any]:
    marker = f".{ADAPTER}."
    return [p for n, p in transformer.named_parameters() if ".lora_" in n and marker in n]


def use(transformer: Any, strength: float) -> None:
    """Make the adapter stack: the assistant at ``strength`` (0: left out) under the trained
    peft adapter (when there is one; a LyCORIS network hooks the layers itself). Both stay as
    they were trainable-wise: peft's set_adapters marks active adapters trainable."""
    if loaded(transformer) is None:
        return
    trained = [n for n in getattr(transformer, "peft_config", {}) if n != ADAPTER]
    names = ([ADAPTER] if strength else []) + trained
    weights = ([strength] if strength else []) + [1.0] * len(trained)
    if not names:  # LyCORIS trains and the assistant is off: no peft adapter takes part
        transformer.disable_adapters()
        return
    transformer.enable_adapters()
    transformer.set_adapters(names, weights)
    for p in params(transformer):
        p.requires_grad_(False)
    for n, p in transformer.named_parameters():
        if ".lora_" in n and any(f".{t}." in n for t in trained):
            p.requires_grad_(True)


@contextlib.contextmanager
def for_validation(transformer: Any) -> Iterator[None]:
    """The adapter stack of the validation images (assistant_lora_inference_strength), then
    back to the training one."""
    a = loaded(transformer)
    if a is None or a.inference_strength == a.strength:
        yield
        return
    use(transformer, a.inference_strength)
    try:
        yield
    finally:
        use(transformer, a.strength)
