"""How many parameters the network of a lycoris_config file trains on a Flux transformer, without
torch: the layers its apply_preset picks (as lycoris' LycorisNetwork walks the module tree) and
each layer's adapter shape (lycoris/modules/lokr.py and friends), for the estimate and preflight.

Only the transformer's nn.Linear layers are counted: Flux has no Conv layer there, and train_norm
(norm layers) is not sized. LoKr, LoRA/LoCon, LoHa and full are exact; other algorithms are
counted as LoRA of the same dim, and `exact` says so.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from typing import Any

from .flux_arch import FluxConfig, Linear, transformer_linears

EXACT_ALGOS = ("lokr", "lora", "locon", "loha", "full")


@dataclass(frozen=True)
class Size:
    params: int
    layers: int
    exact: bool  # False: an algorithm sized as LoRA


def module_classes(cfg: FluxConfig, path: str) -> str:
    """The class name of diffusers' FluxTransformer2DModel submodule at `path` ("" is the model)."""
    parts = path.split(".") if path else []
    if not parts:
        return "FluxTransformer2DModel"
    head, rest = parts[0], parts[1:]
    if head == "time_text_embed":
        if not rest:
            return (
                "CombinedTimestepGuidanceTextProjEmbeddings"
                if cfg.guidance_embeds
                else ("CombinedTimestepTextProjEmbeddings")
            )
        if len(rest) == 1:
            return "PixArtAlphaTextProjection" if rest[0] == "text_embedder" else "TimestepEmbedding"
        return "Linear"
    if head == "norm_out":
        return "AdaLayerNormContinuous" if not rest else "Linear"
    if head in ("transformer_blocks", "single_transformer_blocks"):
        if not rest:
            return "ModuleList"
        if len(rest) == 1:
            return "FluxTransformerBlock" if head == "transformer_blocks" else "FluxSingleTransformerBlock"
        sub, tail = rest[1], rest[2:]
        if sub in ("norm1", "norm1_context", "norm"):
            if tail:
                return "Linear"
            return "AdaLayerNormZero" if sub != "norm" else "AdaLayerNormZeroSingle"
        if sub == "attn":
            if not tail:
                return "FluxAttention"
            return "ModuleList" if tail == ["to_out"] else "Linear"
        if sub in ("ff", "ff_context"):
            if not tail:
                return "FeedForward"
            if tail == ["net"]:
                return "ModuleList"
            if tail == ["net", "0"]:
                return "GELU"
            return "Linear"
        return "Linear"  # proj_mlp, proj_out of a single block
    return "Linear"  # context_embedder, x_embedder, proj_out


class _Walk:
    """LycorisNetwork's choice of layers and per-layer settings, replayed on names."""

    def __init__(self, cfg: FluxConfig, preset: dict[str, Any]):
        self.cfg = cfg
        self.algo_map: dict[str, dict] = dict(preset.get("module_algo_map") or {})
        self.name_map: dict[str, dict] = dict(preset.get("name_algo_map") or {})
        self.modules = set(preset.get("target_module") or []) | set(self.algo_map)
        self.names = list(dict.fromkeys([*(preset.get("target_name") or []), *self.name_map]))
        self.exclude = list(preset.get("exclude_name") or [])
        self.fnmatch = bool(preset.get("use_fnmatch", False))

    def _match(self, pattern: str, name: str) -> bool:
        return fnmatch.fnmatch(name, pattern) if self.fnmatch else bool(re.match(pattern, name))

    def _excluded(self, name: str) -> bool:
        return bool(name) and (name in self.exclude or any(self._match(t, name) for t in self.exclude))

    def _named(self, name: str) -> bool:
        return name in self.names or any(self._match(t, name) for t in self.names)

    def settings(self, layer: str, algo: str) -> tuple[str, dict] | None:
        """(algo, module settings) lycoris gives the Linear `layer`, or None when it is left alone."""
        parts = layer.split(".")
        paths = [""] + [".".join(parts[: i + 1]) for i in range(len(parts))]
        for i, path in enumerate(paths):
            if self._excluded(path):
                continue
            cls = module_classes(self.cfg, path)
            if cls in self.modules and not any(self._match(t, path) for t in self.names):
                conf = self.algo_map.get(cls, {})
                return self._inside(paths[i + 1 :], conf.get("algo", algo), conf)
            if self._named(path):
                if path != layer:
                    continue
                conf = self._name_conf(path)
                if conf is None:
                    conf = self.algo_map.get(cls, {})
                return conf.get("algo", algo), conf
        return None

    def _inside(self, below: list[str], algo: str, conf: dict) -> tuple[str, dict] | None:
        # create_modules_: a module of a module_algo_map class below the matched one starts its
        # own settings (inheriting only the algo); an excluded path is skipped, not its children.
        for path in below:
            if self._excluded(path):
                if path == below[-1]:
                    return None
                continue
            cls = module_classes(self.cfg, path)
            if cls in self.algo_map:
                conf = self.algo_map[cls]
                algo = conf.get("algo", algo)
        return algo, conf

    def _name_conf(self, name: str) -> dict | None:
        if name in self.name_map:
            return self.name_map[name]
        return next((v for k, v in self.name_map.items() if self._match(k, name)), None)


def factorization(dimension: int, factor: int = -1) -> tuple[int, int]:
    """lycoris.functional.factorization: dimension = m x n, m <= n, m as close to factor as divides."""
    if factor > 0 and dimension % factor == 0:
        m, n = factor, dimension // factor
        return (n, m) if m > n else (m, n)
    if factor < 0:
        factor = dimension
    m, n = 1, dimension
    while m < n:
        new_m = m + 1
        while dimension % new_m:
            new_m += 1
        new_n = dimension // new_m
        if new_m + new_n > m + n or new_m > factor:
            break
        m, n = new_m, new_n
    return (n, m) if m > n else (m, n)


def lokr_params(lin: Linear, dim: int, opts: dict) -> int:
    """LokrModule's parameters on a Linear: w1 (out_l x in_m, or its decomposition) and w2."""
    factor = int(opts.get("factor", -1))
    full = bool(opts.get("full_matrix", False))
    in_m, in_n = factorization(lin.in_features, factor)
    out_l, out_k = factorization(lin.out_features, factor)
    if opts.get("unbalanced_factorization"):
        out_l, out_k = out_k, out_l
    if opts.get("decompose_both") and dim < max(out_l, in_m) / 2 and not full:
        w1 = dim * (out_l + in_m)
    else:
        w1 = out_l * in_m
    w2 = dim * (out_k + in_n) if dim < max(out_k, in_n) / 2 and not full else out_k * in_n
    return w1 + w2


def _layer_params(lin: Linear, algo: str, dim: int, opts: dict) -> int:
    if algo == "lokr":
        n = lokr_params(lin, dim, opts)
    elif algo == "loha":
        n = 2 * dim * (lin.in_features + lin.out_features)
    elif algo == "full":
        return lin.in_features * lin.out_features + (lin.out_features if lin.bias else 0)
    else:  # lora, locon, and the rest sized as LoRA
        n = dim * (lin.in_features + lin.out_features)
    if opts.get("use_scalar"):
        n += 1
    if opts.get("weight_decompose"):
        n += lin.out_features if opts.get("wd_on_out", True) else lin.in_features
    return n


_ROOT_OPTS = (
    "factor",
    "full_matrix",
    "decompose_both",
    "unbalanced_factorization",
    "use_scalar",
)


def size(lyco: dict[str, Any], cfg: FluxConfig, default_targets: list[str]) -> Size:
    """The trainable parameters and adapted layers of `lyco` (a lycoris_config file's content) on
    the transformer `cfg`. Without apply_preset the trainer adapts `default_targets` (the
    flux_lora_target preset's layers) by name, as fluxtui/trainer/lora.py does."""
    preset: dict[str, Any] = {"target_name": [re.escape(n) + "$" for n in default_targets]}
    if isinstance(lyco.get("apply_preset"), dict):
        preset = {"target_name": [], **lyco["apply_preset"]}
    root = {k: lyco[k] for k in _ROOT_OPTS if k in lyco}
    root["weight_decompose"] = bool(lyco.get("dora_wd", False))
    root["wd_on_out"] = bool(lyco.get("wd_on_output", True))
    algo = str(lyco.get("algo", "lora") or "lora").lower()
    linear_dim = int(lyco.get("linear_dim", 4) or 4)
    walk = _Walk(cfg, preset)
    params = layers = 0
    exact = True
    for lin in transformer_linears(cfg):
        found = walk.settings(lin.name, algo)
        if found is None:
            continue
        layer_algo, conf = found
        layer_algo = str(layer_algo).lower()
        opts = {**root, **{k: v for k, v in conf.items() if k not in ("algo", "dim", "alpha")}}
        dim = int(conf.get("dim") or linear_dim)
        params += _layer_params(lin, layer_algo, dim, opts)
        layers += 1
        exact = exact and layer_algo in EXACT_ALGOS
    return Size(params, layers, exact)
