"""Changes to how the transformer's blocks run: TREAD routing and gradient checkpointing.

Both work on the blocks in place (hooks and a wrapped `forward`), so module names, and with
them the LoRA's keys, stay exactly as diffusers and peft made them.

Block indices count over all 57 blocks of Flux (19 double, then 38 single); the toy models
have fewer. Negative indices count from the end.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.checkpoint import checkpoint

_BLOCK_ARGS = ("hidden_states", "encoder_hidden_states", "temb", "image_rotary_emb", "joint_attention_kwargs")


def transformer_blocks(transformer: Any) -> list[torch.nn.Module]:
    """Double blocks then single blocks, through any peft/DDP/compile wrapper."""
    model = transformer
    for attr in ("module", "_orig_mod"):
        model = getattr(model, attr, model)
    if hasattr(model, "get_base_model"):
        model = model.get_base_model()
    return [*model.transformer_blocks, *model.single_transformer_blocks]


# -- gradient checkpointing ------------------------------------------------------------------


def enable_gradient_checkpointing(transformer: Any, interval: int = 1) -> int:
    """Recompute every `interval`-th block's activations in the backward pass.

    Higher intervals trade VRAM for speed. Returns how many blocks are checkpointed.
    """
    count = 0
    for i, block in enumerate(transformer_blocks(transformer)):
        if i % interval:
            continue
        inner = block.forward

        def forward(*args: Any, _inner: Any = inner, **kwargs: Any) -> Any:
            if torch.is_grad_enabled():
                return checkpoint(_inner, *args, use_reentrant=False, **kwargs)
            return _inner(*args, **kwargs)

        block.forward = forward
        count += 1
    return count


# -- TREAD -----------------------------------------------------------------------------------


class RouteError(ValueError):
    pass


@dataclass(frozen=True)
class Route:
    selection_ratio: float  # share of image tokens that skip the routed blocks
    start: int
    end: int


def resolve_routes(routes: list[dict], num_blocks: int) -> list[Route]:
    """Normalise negative indices and check the routes fit the model and do not overlap."""
    out = []
    for r in routes:
        start, end = r["start_layer_idx"], r["end_layer_idx"]
        start = start + num_blocks if start < 0 else start
        end = end + num_blocks if end < 0 else end
        if not (0 <= start <= end < num_blocks):
            raise RouteError(
                f"route {r} does not fit the model's {num_blocks} blocks "
                f"(resolved to {start}..{end}); use 0 <= start <= end < {num_blocks}"
            )
        out.append(Route(float(r["selection_ratio"]), start, end))
    out.sort(key=lambda route: route.start)
    for a, b in itertools.pairwise(out):
        if b.start <= a.end:
            raise RouteError(f"TREAD routes overlap: blocks {a.start}..{a.end} and {b.start}..{b.end}")
    return out


class TreadRouter:
    """Random image-token routing between two blocks (TREAD).

    On entering a route's first block a random subset of image tokens is kept and the rest
    wait; the kept tokens run through the route's blocks with their rotary embeddings (and
    attention mask) cut to match; after the last block they are put back among the waiting
    ones. Text tokens always take part. Active only with gradients on and the model in
    training mode, so sampling and the adapter-off regularisation pass see the whole image.

    `generator` is set by the loop for every micro-step, which keeps the choice of tokens
    reproducible across a resume.
    """

    def __init__(self, transformer: Any, routes: list[dict]):
        self.blocks = transformer_blocks(transformer)
        self.routes = resolve_routes(routes, len(self.blocks))
        self.generator: torch.Generator | None = None
        self._state: dict[int, dict[str, Any]] = {}
        self._handles = []
        for n, route in enumerate(self.routes):
            for i in range(route.start, route.end + 1):
                hook = self._make_pre_hook(n, first=i == route.start)
                self._handles.append(self.blocks[i].register_forward_pre_hook(hook, with_kwargs=True))
            self._handles.append(self.blocks[route.end].register_forward_hook(self._make_post_hook(n)))

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()

    def _make_pre_hook(self, n: int, *, first: bool):
        route = self.routes[n]

        def hook(module: torch.nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
            bound = dict(zip(_BLOCK_ARGS, args))
            bound.update(kwargs)
            if first:
                self._state.pop(n, None)
                if not (torch.is_grad_enabled() and module.training):
                    return args, kwargs
                self._state[n] = self._enter(route, bound)
            state = self._state.get(n)
            if state is None:
                return args, kwargs
            if first:
                bound["hidden_states"] = state["kept"]
            bound["image_rotary_emb"] = state["rope"]
            if state["jak"] is not None:
                bound["joint_attention_kwargs"] = state["jak"]
            return (), bound

        return hook

    def _enter(self, route: Route, bound: dict) -> dict[str, Any]:
        hidden = bound["hidden_states"]
        text_len = bound["encoder_hidden_states"].shape[1]
        n_img = hidden.shape[1]
        n_keep = max(1, round(n_img * (1 - route.selection_ratio)))
        order = torch.randperm(n_img, generator=self.generator)
        keep = order[:n_keep].sort().values.to(hidden.device)
        # positions in the joint [text; image] sequence that stay
        joint = torch.cat([torch.arange(text_len, device=hidden.device), text_len + keep])
        rope = bound.get("image_rotary_emb")
        if rope is not None:
            rope = tuple(r.index_select(0, joint) for r in rope)
        jak = bound.get("joint_attention_kwargs")
        if jak and jak.get("attention_mask") is not None:
            jak = {**jak, "attention_mask": jak["attention_mask"].index_select(-1, joint)}
        return {
            "full": hidden,
            "keep": keep,
            "kept": hidden.index_select(1, keep),
            "rope": rope,
            "jak": jak,
        }

    def _make_post_hook(self, n: int):
        def hook(module: torch.nn.Module, args: tuple, output: Any) -> Any:
            state = self._state.pop(n, None)
            if state is None:
                return output
            encoder_hidden_states, hidden = output
            restored = state["full"].index_copy(1, state["keep"], hidden.to(state["full"].dtype))
            return encoder_hidden_states, restored

        return hook
