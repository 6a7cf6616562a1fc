"""sentence-transformers model directories: the steps after pooling, and a placeholder for poolers it lacks.

``first_last_avg`` and most prompt readouts have no sentence-transformers equivalent. Rather than
let ``SentenceTransformer(path)`` fall back to mean pooling and silently give other embeddings,
such model directories name this module, whose loading fails with a clear message.
"""

from __future__ import annotations

import importlib
import inspect
import json
from collections.abc import Sequence
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError, ContrastkitError


class ContrastkitModule:
    """Refuses to load in sentence-transformers, pointing to ``contrastkit.Encoder`` instead."""

    @classmethod
    def load(cls, model_name_or_path: str, *args: Any, **kwargs: Any) -> ContrastkitModule:
        """Raise: this pooler only exists in contrastkit."""
        raise ContrastkitError(
            f"{model_name_or_path} uses a pooler that sentence-transformers cannot express "
            "(first_last_avg, or a prompt readout other than last-layer PromptEOL) or bidirectional attention in a "
            "decoder LM (model.bidirectional); load it with "
            "contrastkit.Encoder.from_pretrained(path)")


def write_st_pipeline(path: Path, modules: list[dict[str, Any]], *, normalize: bool) -> None:
    """Write sentence-transformers' ``modules.json`` (``modules`` plus a Normalize step if asked) and its config."""
    if normalize:
        idx = len(modules)
        (path / f"{idx}_Normalize").mkdir()
        modules = [*modules, {"idx": idx, "name": str(idx), "path": f"{idx}_Normalize",
                              "type": "sentence_transformers.models.Normalize"}]
    (path / "modules.json").write_text(json.dumps(modules, indent=2))
    (path / "config_sentence_transformers.json").write_text(
        json.dumps({"prompts": {}, "default_prompt_name": None, "similarity_fn_name": "cosine"}, indent=2))


# --------------------------------------------------------------------------- modules after pooling
# sentence-transformers model dirs list their pipeline in modules.json: Transformer -> Pooling ->
# optional Dense / LayerNorm / Normalize steps. contrastkit runs those steps as the torch modules
# below, with sentence-transformers' weight names, so embeddings equal SentenceTransformer(path).encode.

_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")


def require_safetensors(path: Path, what: str) -> None:
    """Refuse a directory whose weights exist only as pickle files (contrastkit loads only safetensors)."""
    if not path.is_dir() or any(path.glob("*.safetensors")) or (path / "model.safetensors.index.json").is_file():
        return
    pickles = sorted(p.name for p in path.iterdir() if p.suffix in _PICKLE_SUFFIXES)
    if pickles:
        raise ConfigError(f"{path}: the {what} weights are only in pickle files ({', '.join(pickles)}); contrastkit "
                          "loads only safetensors (pickle can run code): convert them to model.safetensors first")


def module_dir(root: Path, rel: Any) -> Path:
    """``root / rel`` for a modules.json path, refusing absolute paths and '..' (outside the model dir)."""
    if not isinstance(rel, str) or "\0" in rel:
        raise ConfigError(f"{root}/modules.json: module path {rel!r} is not a relative path")
    parts = PureWindowsPath(rel)
    if parts.anchor or PurePosixPath(rel).is_absolute() or ".." in parts.parts:
        raise ConfigError(f"{root}/modules.json: module path {rel!r} points outside the model directory")
    return root / rel


def _activation(name: Any, where: Path) -> nn.Module:
    """The torch.nn activation class a Dense config names (sentence-transformers' default: Tanh)."""
    if name is None:
        return nn.Tanh()
    mod_name, _, cls_name = str(name).rpartition(".")
    obj = None
    if mod_name == "torch.nn" or mod_name.startswith("torch.nn."):
        try:
            obj = getattr(importlib.import_module(mod_name), cls_name, None)
        except ImportError:
            obj = None
    if not (inspect.isclass(obj) and issubclass(obj, nn.Module)):
        raise ConfigError(f"{where}: Dense activation_function {name!r} is not a torch.nn module class")
    return obj()


class Dense(nn.Module):
    """sentence-transformers' Dense step: ``activation(linear(x))`` (+ a residual if configured)."""

    st_type = "Dense"

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 activation: nn.Module | None = None, use_residual: bool = False) -> None:
        super().__init__()
        self.in_features, self.out_features, self.bias, self.use_residual = in_features, out_features, bias, use_residual
        self.linear = nn.Linear(in_features, out_features, bias=bias)
        self.activation = nn.Tanh() if activation is None else activation
        if use_residual and in_features != out_features:
            self.residual = nn.Linear(in_features, out_features, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        """Project pooled embeddings."""
        out = self.activation(self.linear(x))
        if self.use_residual:
            out = out + (self.residual(x) if self.in_features != self.out_features else x)
        return out

    def config(self) -> dict[str, Any]:
        """sentence-transformers' config.json of this step."""
        act = type(self.activation)
        cfg = {"in_features": self.in_features, "out_features": self.out_features, "bias": self.bias,
               "activation_function": f"{act.__module__}.{act.__qualname__}"}
        return {**cfg, "use_residual": True} if self.use_residual else cfg

    @classmethod
    def from_config(cls, cfg: dict[str, Any], where: Path) -> Dense:
        """Build from a config.json, refusing settings contrastkit cannot run."""
        for key in ("module_input_name", "module_output_name"):
            if cfg.get(key, "sentence_embedding") not in ("sentence_embedding", None):
                raise ConfigError(f"{where}: Dense with {key}={cfg[key]!r} is not supported "
                                  "(only Dense on the pooled sentence embedding)")
        return cls(int(cfg["in_features"]), int(cfg["out_features"]), bool(cfg.get("bias", True)),
                   _activation(cfg.get("activation_function"), where), bool(cfg.get("use_residual", False)))


class LayerNorm(nn.Module):
    """sentence-transformers' LayerNorm step over the pooled embedding."""

    st_type = "LayerNorm"

    def __init__(self, dimension: int) -> None:
        super().__init__()
        self.dimension = dimension
        self.norm = nn.LayerNorm(dimension)

    def forward(self, x: Tensor) -> Tensor:
        """Layer-normalise pooled embeddings."""
        return self.norm(x)

    def config(self) -> dict[str, Any]:
        """sentence-transformers' config.json of this step."""
        return {"dimension": self.dimension}

    @classmethod
    def from_config(cls, cfg: dict[str, Any], where: Path) -> LayerNorm:
        """Build from a config.json."""
        return cls(int(cfg["dimension"]))


class Normalize(nn.Module):
    """sentence-transformers' Normalize step (L2) when it is not the last step (a last one is ``normalize``)."""

    st_type = "Normalize"

    def forward(self, x: Tensor) -> Tensor:
        """L2-normalise."""
        return F.normalize(x, p=2, dim=-1)

    def config(self) -> dict[str, Any]:
        """No settings."""
        return {}

    @classmethod
    def from_config(cls, cfg: dict[str, Any], where: Path) -> Normalize:
        """Build (a Normalize of anything but the pooled embedding is refused)."""
        if cfg.get("module_input_name", "sentence_embedding") != "sentence_embedding":
            raise ConfigError(f"{where}: Normalize of {cfg['module_input_name']!r} is not supported")
        return cls()


POST_MODULES: dict[str, type[Dense] | type[LayerNorm] | type[Normalize]] = {
    "Dense": Dense, "LayerNorm": LayerNorm, "Normalize": Normalize}


def load_post_module(kind: str, mdir: Path) -> nn.Module:
    """One step after pooling from its directory (config.json + model.safetensors)."""
    cfg_file = mdir / "config.json"
    try:
        cfg = json.loads(cfg_file.read_text()) if cfg_file.is_file() else {}
    except ValueError as e:
        raise ConfigError(f"{cfg_file}: invalid JSON ({e})") from None
    try:
        module = POST_MODULES[kind].from_config(cfg, mdir)
    except (KeyError, TypeError, ValueError) as e:
        if isinstance(e, ConfigError):
            raise
        raise ConfigError(f"{cfg_file}: invalid {kind} config ({e!r})") from None
    if any(True for _ in module.parameters()):
        require_safetensors(mdir, kind)
        weights = mdir / "model.safetensors"
        if not weights.is_file():
            raise ConfigError(f"{mdir}: {kind} has no model.safetensors")
        from safetensors.torch import load_file

        state = load_file(str(weights))
        try:
            module.load_state_dict(state)
        except RuntimeError as e:
            raise ConfigError(f"{weights}: weights do not fit the {kind} config: {e}") from None
    return module


def write_post_modules(path: Path, post: Sequence[nn.Module], start: int) -> list[dict[str, Any]]:
    """Save steps after pooling as sentence-transformers module dirs numbered from ``start``; their modules.json rows."""
    from safetensors.torch import save_file

    rows = []
    for idx, module in enumerate(post, start):
        kind = module.st_type  # type: ignore[attr-defined]
        mdir = path / f"{idx}_{kind}"
        mdir.mkdir()
        (mdir / "config.json").write_text(json.dumps(module.config(), indent=2))  # type: ignore[operator]
        state = {k: v.detach().contiguous() for k, v in module.state_dict().items()}
        if state:
            save_file(state, str(mdir / "model.safetensors"))
        rows.append({"idx": idx, "name": str(idx), "path": mdir.name, "type": f"sentence_transformers.models.{kind}"})
    return rows
