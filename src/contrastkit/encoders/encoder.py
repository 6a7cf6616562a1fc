"""Encoder: backbone + pooler (+ training-time head), with fast ``encode`` and ST-compatible save/load."""

from __future__ import annotations

import contextlib
import functools
from copy import deepcopy
import json
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn

from ..errors import ConfigError
from ..fsutil import fresh_tmp_dir, replace_dir
from ..lm.bidirectional import causal_config, is_bidirectional, make_bidirectional
from .adapters import apply_lora, is_adapted, load_adapted, save_backbone
from .backbones import load_backbone, resolve_alias
from .onnx_backend import OnnxBackbone, onnx_file, resolve_backend
from .pooling import POOLINGS, MLPHead, needs_all_hidden_states, pool
from .readouts import READOUTS, Readout, make_readout
from .st_module import (
    POST_MODULES,
    Normalize,
    load_post_module,
    module_dir,
    require_safetensors,
    write_post_modules,
    write_st_pipeline,
)

META_FILE = "contrastkit.json"
HEAD_FILE = "contrastkit_head.safetensors"
# sentence-transformers pooling flags for the poolers it can express.
_ST_POOLING = {"cls": "pooling_mode_cls_token", "cls_mlp": "pooling_mode_cls_token",
               "mean": "pooling_mode_mean_tokens", "last_token": "pooling_mode_lasttoken"}


@functools.lru_cache(maxsize=None)
def bf16_supported() -> bool:
    """Whether this CPU runs bfloat16 matmuls natively (AVX-512 BF16 or AMX)."""
    return torch.backends.cpu.get_cpu_capability() in ("AVX512_BF16", "AMX") or _cpu_flag("avx512_bf16")


def _cpu_flag(flag: str) -> bool:
    try:
        return flag in Path("/proc/cpuinfo").read_text()
    except OSError:
        return False


def encode_precision(precision: str, device: torch.device | str = "cpu") -> str:
    """Resolve an ``encode`` precision: 'auto' is 'bf16' on CUDA or a CPU with native bf16, else 'fp32'."""
    if precision not in ("fp32", "bf16", "auto"):
        raise ConfigError(f"precision='{precision}' is not one of fp32, bf16, auto")
    if precision == "auto":
        return "bf16" if torch.device(device).type == "cuda" or bf16_supported() else "fp32"
    return precision


def autocast(precision: str, device: torch.device | str = "cpu") -> contextlib.AbstractContextManager[Any]:
    """Autocast context for ``precision`` in {'fp32', 'bf16', 'auto'} ('auto' = bf16 when native)."""
    dev = torch.device(device).type
    use_bf16 = precision == "bf16" or (precision == "auto" and (dev == "cuda" or bf16_supported()))
    if use_bf16:
        return torch.autocast(dev, dtype=torch.bfloat16)
    return contextlib.nullcontext()


class Encoder(nn.Module):
    """A sentence encoder: tokenizer + HF backbone + pooler (+ sentence-transformers steps after pooling, e.g.
    Dense), optionally an MLP head used only in training."""

    def __init__(self, backbone: nn.Module, tokenizer: Any, *, pooling: str = "mean", max_length: int = 128,
                 prompt_template: str | None = None, normalize: bool = False, lowercase: bool = False,
                 post: Sequence[nn.Module] = (), readout: dict[str, Any] | None = None) -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise ConfigError(f"unknown pooling '{pooling}'; known: {', '.join(POOLINGS)}")
        if pooling == "prompt" and prompt_template is not None and "{text}" not in prompt_template:
            raise ConfigError("pooling 'prompt' needs a prompt_template containing '{text}'")
        if readout and pooling not in READOUTS:
            raise ConfigError(f"readout parameters apply only to the readout poolings ({', '.join(READOUTS)}); "
                              f"pooling is '{pooling}'")
        self.backbone = backbone
        self.tokenizer = tokenizer
        self.pooling = pooling
        self.max_length = max_length
        # prompt readouts (encoders/readouts.py): text -> prompt(s) -> which layer / token -> one vector
        self.readout: Readout | None = (make_readout(pooling, readout, template=prompt_template)
                                        if pooling in READOUTS else None)
        if self.readout is not None:
            self.readout.attach(backbone, tokenizer)
        self.prompt_template = self.readout.params["template"] if pooling == "prompt" else None
        self.normalize = normalize
        self.lowercase = lowercase
        # steps after pooling (st_module.Dense / LayerNorm / Normalize), as a sentence-transformers dir names them
        self.post = nn.Sequential(*post) if post else None
        self.head = MLPHead(self.dim) if pooling == "cls_mlp" else None
        self._inference_attention = getattr(backbone.config, "_attn_implementation", None)
        self.ort: OnnxBackbone | None = None
        self.adapter_save = "merged"  # how LoRA adapters are saved, once add_lora adds them

    def train(self, mode: bool = True) -> Encoder:
        """Switch train/eval mode. On CPU with attention dropout on, training runs eager attention:
        SDPA's dropout path is slower there (measured on MiniLM); inference keeps the default kernel."""
        super().train(mode)
        default = getattr(self, "_inference_attention", None)
        if default == "sdpa" and self.device.type == "cpu" and _attention_dropout(self.backbone.config) > 0:
            wanted = "eager" if mode else default
            if self.backbone.config._attn_implementation != wanted:
                self.backbone.set_attn_implementation(wanted)
        return self

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, name_or_path: str, *, pooling: str | None = None, max_length: int | None = None,
                        num_layers: int | None = None, dropout: float | None = None,
                        attention_dropout: float | None = None, residual_dropout: float | None = None,
                        prompt_template: str | None = None, backend: str = "auto",
                        threads: int | None = None, readout: dict[str, Any] | None = None,
                        bidirectional: bool | None = None) -> Encoder:
        """Load a contrastkit dir, a sentence-transformers dir, or any HF backbone (name, path, .gguf, alias).

        ``bidirectional`` switches a decoder LM's self-attention to bidirectional (LLM2Vec, see
        :mod:`contrastkit.lm.bidirectional`); None = as saved (a contrastkit dir records it).

        ``backend`` picks what runs ``encode``: 'torch', 'onnx' or 'onnx-int8' (files written by
        ``contrastkit export``), or 'auto' = ``$CONTRASTKIT_BACKEND`` if set, else 'torch'. Training
        always uses torch; ``threads`` is how many ONNX Runtime batches run at once (default: torch's threads).
        """
        from .static import StaticEncoder, is_static_dir

        if is_static_dir(name_or_path):  # a static token table (``contrastkit distill``): no backbone
            return StaticEncoder.load(name_or_path)  # type: ignore[return-value]
        backend = resolve_backend(backend)
        name_or_path = resolve_alias(name_or_path)
        ort_file = onnx_file(name_or_path, backend) if backend != "torch" else None
        path = Path(name_or_path)
        meta: dict[str, Any] = {}
        subfolder = ""
        post: list[nn.Module] = []
        if (path / META_FILE).is_file():
            meta = json.loads((path / META_FILE).read_text())
            post = [load_post_module(m["type"], module_dir(path, m["path"])) for m in meta.get("post_modules", [])]
        elif (path / "modules.json").is_file():
            meta, subfolder, post = _read_sentence_transformers_dir(path)
        edits = dict(num_layers=num_layers, dropout=dropout, attention_dropout=attention_dropout,
                     residual_dropout=residual_dropout)
        adapter = meta.get("adapter")
        if adapter:  # a LoRA adapter saved alone: load the base model it names, then attach it
            backbone, tok = load_backbone(adapter["base"], **edits)
            backbone = load_adapted(backbone, path)
        else:
            require_safetensors(path / subfolder, "model")
            backbone, tok = load_backbone(name_or_path, subfolder=subfolder, **edits)
        if bidirectional if bidirectional is not None else meta.get("bidirectional", False):
            make_bidirectional(backbone)
        same_pooling = pooling is None or pooling == meta.get("pooling")
        enc = cls(backbone, tok, pooling=pooling or meta.get("pooling", "mean"),
                  max_length=max_length or meta.get("max_length") or _tokenizer_max_length(tok),
                  prompt_template=prompt_template or (meta.get("prompt_template") if same_pooling else None),
                  normalize=meta.get("normalize", False), lowercase=meta.get("lowercase", False), post=post,
                  readout=readout if readout is not None else (meta.get("readout") if same_pooling else None))
        head_file = path / HEAD_FILE
        if enc.head is not None and head_file.is_file():
            from safetensors.torch import load_file

            enc.head.load_state_dict(load_file(str(head_file)))
        if ort_file is not None:
            enc.use_onnx(ort_file, threads=threads)
        return enc

    def add_lora(self, *, r: int = 8, alpha: float = 16.0, dropout: float = 0.0,
                 target_modules: str | list[str] = "all-linear", save: str = "merged",
                 base_name: str | None = None) -> Encoder:
        """Train LoRA adapters instead of the backbone (see :mod:`.adapters`); ``save`` 'merged' or 'adapter'."""
        if save not in ("merged", "adapter"):
            raise ConfigError(f"LoRA save mode '{save}' is not 'merged' or 'adapter'")
        if is_adapted(self.backbone):
            raise ConfigError("the backbone already has LoRA adapters")
        base = base_name or getattr(self.backbone.config, "_name_or_path", "") or ""
        self.backbone = apply_lora(self.backbone, r=r, alpha=alpha, dropout=dropout, target_modules=target_modules,
                                   base_name=base)
        self.adapter_save = save
        return self

    def use_onnx(self, path: str | Path | None, *, threads: int | None = None) -> Encoder:
        """Run ``encode`` with ONNX Runtime on the exported backbone at ``path`` (None: back to torch)."""
        if path is not None and self.readout is not None:
            raise ConfigError(f"pooling '{self.pooling}' is a prompt readout (several forward passes or hooks inside "
                              "the backbone); the ONNX backends cannot run it, use backend='torch'")
        self.ort = OnnxBackbone(path, threads=threads) if path is not None else None
        return self

    @property
    def backend(self) -> str:
        """What runs ``encode``: 'torch' or the ONNX file's name."""
        return "torch" if self.ort is None else f"onnx:{self.ort.path.name}"
    @property
    def dim(self) -> int:
        """Embedding dimension (the last Dense step's output size, else the backbone's hidden size)."""
        for module in reversed(self.post or ()):
            if hasattr(module, "out_features"):
                return int(module.out_features)
        return self.hidden_dim

    @property
    def hidden_dim(self) -> int:
        """The backbone's hidden size (the pooled embedding's dimension)."""
        return int(self.backbone.config.hidden_size)

    @property
    def device(self) -> torch.device:
        """Device of the backbone's parameters."""
        return next(self.backbone.parameters()).device

    # -- tokenization and forward -------------------------------------------------------------
    def prepare(self, texts: Sequence[str]) -> list[str]:
        """Apply lower-casing and the prompt template (a readout's first prompt: what its token count is about)."""
        out = [t.lower() for t in texts] if self.lowercase else list(texts)
        if self.readout is not None:
            return [self.readout.prompts(t)[0] for t in out]
        if self.prompt_template:
            out = [self.prompt_template.replace("{text}", t) for t in out]
        return out

    def tokenize(self, texts: Sequence[str]) -> dict[str, Tensor]:
        """Tokenize a batch, padding to its longest text (truncated to ``max_length``)."""
        if self.readout is not None:
            return self._pad(self._tokenize_unpadded(texts), range(len(texts)))
        enc = self.tokenizer(self.prepare(texts), padding=True, truncation=True, max_length=self.max_length,
                             return_tensors="pt")
        return {k: v.to(self.device) for k, v in enc.items()}

    def _tokenize_unpadded(self, texts: Sequence[str]) -> Any:
        """Token ids of every text (truncated to ``max_length``, not padded), for :meth:`_pad` later."""
        if self.readout is not None:  # a list of per-text token rows; the text is shortened, never the template
            out = [t.lower() for t in texts] if self.lowercase else list(texts)
            return [self.readout.featurize(self.tokenizer, t, self.max_length) for t in out]
        return self.tokenizer(self.prepare(texts), truncation=True, max_length=self.max_length)

    def _lengths(self, enc: Any) -> list[int]:
        """Token count of every text of an unpadded tokenization."""
        if self.readout is not None:
            return [self.readout.length(item) for item in enc]
        return [len(ids) for ids in enc["input_ids"]]

    def _pad(self, enc: Any, rows: Sequence[int]) -> dict[str, Tensor]:
        """The batch of ``rows`` of an unpadded tokenization, padded to its longest and on the device."""
        if self.readout is not None:
            return self.readout.collate(self.tokenizer, [enc[i] for i in rows], self.device)
        feats = self.tokenizer.pad({k: [enc[k][i] for i in rows] for k in enc.keys()}, return_tensors="pt")
        return {k: v.to(self.device) for k, v in feats.items()}

    def forward(self, features: dict[str, Tensor]) -> Tensor:
        """Embed a tokenized batch; the MLP head applies only in training mode."""
        if self.readout is not None:
            emb = self.readout.forward(self.backbone, features)
            if self.post is not None:
                emb = self.post(emb)
            return emb
        inputs = {k: v for k, v in features.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
        want_all = needs_all_hidden_states(self.pooling)
        out = self.backbone(**inputs, output_hidden_states=want_all, return_dict=True)
        emb = pool(self.pooling, out.hidden_states if want_all else None, out.last_hidden_state,
                   features["attention_mask"])
        if self.post is not None:
            emb = self.post(emb)
        if self.head is not None and self.training:
            emb = self.head(emb)
        return emb

    def weights_changed(self) -> None:
        """Drop the cached bfloat16 inference copy; call after updating weights in place.

        The copy is also rebuilt when a parameter's version counter moves, but fused optimizer kernels
        (``AdamW(fused=True)``, which the Trainer uses) update parameters without moving it.
        """
        self.__dict__.pop("_bf16_cache", None)

    def _bf16_copy(self) -> Encoder:
        """An eval-mode bfloat16 copy of this encoder for inference, rebuilt when a parameter changed."""
        key = (str(self.device), *((id(p), p._version) for p in self.parameters()))
        cached = getattr(self, "_bf16_cache", None)
        if cached is None or cached[0] != key:
            twin = Encoder(self.backbone, self.tokenizer, pooling=self.pooling, max_length=self.max_length,
                           prompt_template=self.prompt_template, normalize=self.normalize, lowercase=self.lowercase,
                           post=[deepcopy(m).to(torch.bfloat16).eval() for m in self.post or ()],
                           readout=self.readout.params if self.readout is not None else None)
            twin.backbone = deepcopy(self.backbone).to(torch.bfloat16).eval()
            twin.head = None
            object.__setattr__(self, "_bf16_cache", (key, twin))  # not a sub-module: kept out of state_dict
            cached = self._bf16_cache
        return cached[1]

    def _pool_onnx(self, features: dict[str, Tensor], outs: dict[str, Tensor]) -> Tensor:
        """Pool the ONNX Runtime outputs for a tokenized batch in torch."""
        mask = features["attention_mask"].cpu()
        first = outs.get("first_hidden_state")
        states = (first, first, outs["last_hidden_state"]) if first is not None else None
        emb = pool(self.pooling, states, outs["last_hidden_state"], mask)
        return self.post(emb) if self.post is not None else emb

    def _embed_batches(self, batches: Iterable[tuple[list[int], dict[str, Tensor]]],
                       model: nn.Module) -> Iterator[tuple[list[int], Tensor]]:
        """(indices, embeddings) per batch, in order; ONNX batches run ``ort.workers`` at a time.

        Padding and pooling stay on this thread (with one torch thread) while the workers run the
        graph; at most ``2 x workers`` batches are in flight, so memory stays flat for input of any size.
        """
        ort = self.ort
        if ort is None or ort.workers == 1:
            for idx, feats in batches:
                yield idx, model(feats) if ort is None else self._pool_onnx(feats, ort(feats))
            return
        pending: deque[tuple[list[int], dict[str, Tensor], Future]] = deque()

        def oldest() -> tuple[list[int], Tensor]:
            idx, feats, run = pending.popleft()
            return idx, self._pool_onnx(feats, run.result())

        # torch's own threads would spin between this thread's small ops and take cores from the workers
        with _torch_threads(1), ThreadPoolExecutor(ort.workers, thread_name_prefix="contrastkit-ort") as runner:
            for idx, feats in batches:
                pending.append((idx, feats, runner.submit(ort, feats)))
                if len(pending) > 2 * ort.workers:
                    yield oldest()
            while pending:
                yield oldest()

    def embed_texts(self, texts: Sequence[str], *, buckets: int = 1) -> Tensor:
        """Embed texts with gradients, as ``buckets`` length-sorted chunks each padded only to its own longest.

        The result (in input order) equals one padded forward up to float rounding, with less
        compute spent on padding tokens.
        """
        if buckets <= 1 or len(texts) < 2 * buckets:
            return self(self.tokenize(texts))
        enc = self._tokenize_unpadded(texts)
        lengths = self._lengths(enc)
        order = sorted(range(len(texts)), key=lambda i: lengths[i])
        parts = [self(self._pad(enc, chunk)) for chunk in np.array_split(np.asarray(order), buckets)]
        inverse = torch.empty(len(order), dtype=torch.long)
        inverse[torch.tensor(order)] = torch.arange(len(order))
        return torch.cat(parts)[inverse.to(parts[0].device)]

    # -- inference ----------------------------------------------------------------------------
    def _length_sorted_batches(self, texts: Sequence[str],
                               batch_size: int) -> Iterator[tuple[list[int], dict[str, Tensor]]]:
        """(indices, padded features) per batch, longest texts first; each text is tokenized once."""
        enc = self._tokenize_unpadded(texts)
        order = np.argsort(-np.asarray(self._lengths(enc), dtype=np.int64), kind="stable")
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size].tolist()
            yield idx, self._pad(enc, idx)

    @torch.inference_mode()
    def encode(self, texts: Sequence[str], *, batch_size: int = 64, normalize: bool | None = None,
               convert_to: Literal["numpy", "torch"] = "numpy", precision: str = "auto",
               show_progress: bool = False) -> np.ndarray | Tensor:
        """Embed texts in length-sorted batches (little padding); returns (n, dim) in input order.

        ``precision`` (default 'auto', the fast path; evaluation commands pass 'fp32'): 'fp32'; 'bf16' runs a cached bfloat16 copy of the backbone (all of the
        forward in bf16: on an AVX-512 BF16/AMX CPU about 2.5x fp32 on MiniLM and 1.4x bf16
        autocast, STS-B within 0.01; see benchmarks/encode_throughput.py); 'auto' = 'bf16' where
        the hardware runs it natively, else 'fp32'. An ONNX backend ignores it.
        """
        if isinstance(texts, str):
            raise TypeError("encode expects a list of texts, not a single string")
        use_bf16 = self.ort is None and encode_precision(precision, self.device) == "bf16"
        model = self._bf16_copy() if use_bf16 else self
        was_training = self.training
        self.eval()
        out = torch.empty(len(texts), self.dim, dtype=torch.float32)
        if self.ort is not None and len(texts) < self.ort.workers * batch_size:
            batch_size = max(1, -(-len(texts) // self.ort.workers))  # one batch per worker: every core busy
        batches: Iterable[tuple[list[int], dict[str, Tensor]]] = (
            self._length_sorted_batches(texts, batch_size) if len(texts) else iter(()))
        if show_progress:
            from tqdm.auto import tqdm

            batches = tqdm(batches, total=-(-len(texts) // batch_size), desc="encode", unit="batch")
        try:
            for idx, emb in self._embed_batches(batches, model):
                out[idx] = emb.float().cpu()
        finally:
            self.train(was_training)
        if self.normalize if normalize is None else normalize:
            out = torch.nn.functional.normalize(out, dim=-1)
        return out if convert_to == "torch" else out.numpy()

    # -- persistence --------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write safetensors + JSON that both contrastkit and ``SentenceTransformer(path)`` load."""
        path = Path(path)
        tmp = fresh_tmp_dir(path)
        with causal_config(self.backbone):  # config.json stays causal; contrastkit.json records bidirectional
            adapter = save_backbone(self.backbone, tmp, merge=self.adapter_save == "merged")
        saved_limit = self.tokenizer.model_max_length
        self.tokenizer.model_max_length = self.max_length  # where sentence-transformers 6 reads it
        # sentence-transformers renders texts through a saved chat template (text -> chat message): keep only a
        # readout's own prompt there, never the LM's chat format, which contrastkit's encode does not apply
        saved_template = getattr(self.tokenizer, "chat_template", None)
        self.tokenizer.chat_template = (self.readout.st_chat_template(self.tokenizer)
                                        if self.readout is not None else None)
        try:
            self.tokenizer.save_pretrained(str(tmp))
        finally:
            self.tokenizer.model_max_length = saved_limit
            self.tokenizer.chat_template = saved_template
        meta = {"pooling": self.pooling, "max_length": self.max_length, "prompt_template": self.prompt_template,
                "normalize": self.normalize, "lowercase": self.lowercase, "format_version": 1}
        if self.readout is not None:
            meta["readout"] = self.readout.params
        if is_bidirectional(self.backbone):
            meta["bidirectional"] = True
        if adapter is not None:
            meta["adapter"] = adapter
        post = write_post_modules(tmp, list(self.post), start=2) if self.post is not None else []
        if post:  # steps after pooling, e.g. a Dense loaded from a sentence-transformers dir
            meta["post_modules"] = [{"type": m["type"].rsplit(".", 1)[-1], "path": m["path"]} for m in post]
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2))
        if self.head is not None:
            from safetensors.torch import save_file

            save_file({k: v.contiguous() for k, v in self.head.state_dict().items()}, str(tmp / HEAD_FILE))
        _write_sentence_transformers_files(tmp, self, post)
        return replace_dir(tmp, path)


@contextlib.contextmanager
def _torch_threads(n: int) -> Iterator[None]:
    """Run the block with ``n`` torch intra-op threads (a process-wide setting), then restore it."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _attention_dropout(config: Any) -> float:
    for key in ("attention_probs_dropout_prob", "attention_dropout", "attn_pdrop"):
        value = getattr(config, key, None)
        if isinstance(value, (int, float)):
            return float(value)
    return 0.0


def _tokenizer_max_length(tok: Any, fallback: int = 512) -> int:
    """The tokenizer's own limit when it states a real one (sentence-transformers 6 stores it there)."""
    limit = getattr(tok, "model_max_length", None)
    return int(limit) if isinstance(limit, int) and 0 < limit < 100_000 else fallback


def _write_sentence_transformers_files(path: Path, enc: Encoder, post: list[dict[str, Any]]) -> None:
    flag = _ST_POOLING.get(enc.pooling)
    if enc.readout is not None:  # expressible only as a chat template + last-token pooling (PromptEOL, last layer)
        flag = "pooling_mode_lasttoken" if enc.readout.st_chat_template(enc.tokenizer) is not None else None
    if (path / "adapter_config.json").is_file():
        flag = None  # an adapter saved alone: contrastkit attaches it to its base model
    if is_bidirectional(enc.backbone):
        flag = None  # sentence-transformers would run the saved (causal) config.json
    modules: list[dict[str, Any]] = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"}]
    if flag is None:
        # sentence-transformers has no equivalent pooler; a contrastkit module does the whole job.
        modules = [{"idx": 0, "name": "0", "path": "", "type": "contrastkit.encoders.st_module.ContrastkitModule"}]
    else:
        pooling_cfg = {"word_embedding_dimension": enc.hidden_dim, "pooling_mode_cls_token": False,
                       "pooling_mode_mean_tokens": False, "pooling_mode_max_tokens": False,
                       "pooling_mode_mean_sqrt_len_tokens": False, "pooling_mode_weightedmean_tokens": False,
                       "pooling_mode_lasttoken": False, "include_prompt": True}
        pooling_cfg[flag] = True
        (path / "1_Pooling").mkdir()
        (path / "1_Pooling" / "config.json").write_text(json.dumps(pooling_cfg, indent=2))
        modules.append({"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"})
        modules += post
    # the contrastkit module normalizes by itself
    write_st_pipeline(path, modules, normalize=enc.normalize and flag is not None)
    sbert: dict[str, Any] = {"max_seq_length": enc.max_length, "do_lower_case": enc.lowercase}
    if enc.readout is not None and flag is not None:
        # texts go through the tokenizer's chat template (the prompt written in Jinja): the 'message' modality
        forward = {"method": "forward", "method_output_name": "last_hidden_state"}
        sbert.update(modality_config={"text": forward, "message": {**forward, "format": "flat"}},
                     module_output_name="token_embeddings")
    (path / "sentence_bert_config.json").write_text(json.dumps(sbert, indent=2))


def _read_sentence_transformers_dir(path: Path) -> tuple[dict[str, Any], str, list[nn.Module]]:
    """Pooling, max length, normalisation, the backbone's subfolder and the steps after pooling of an ST dir.

    Every module modules.json names is run or refused by name: Transformer, then Pooling, then any of
    Dense, LayerNorm and Normalize; paths outside the directory are refused.
    """
    try:
        modules = json.loads((path / "modules.json").read_text())
    except ValueError as e:
        raise ConfigError(f"{path}/modules.json: invalid JSON ({e})") from None
    if not isinstance(modules, list) or not all(isinstance(m, dict) for m in modules):
        raise ConfigError(f"{path}/modules.json: expected a list of module objects")
    dirs = [module_dir(path, m.get("path", "")) for m in modules]  # all checked before anything is read
    meta: dict[str, Any] = {}
    subfolder = ""
    post: list[nn.Module] = []
    stage = 0  # 0: expecting Transformer, 1: Pooling, 2: steps after pooling
    for m, mdir in zip(modules, dirs):
        kind = str(m.get("type", "")).rsplit(".", 1)[-1]
        if kind == "Transformer" and stage == 0:
            subfolder = m.get("path", "")
            sbert = mdir / "sentence_bert_config.json"
            if sbert.is_file():
                cfg = json.loads(sbert.read_text())
                if "max_seq_length" in cfg:
                    meta["max_length"] = cfg["max_seq_length"]
                meta["lowercase"] = bool(cfg.get("do_lower_case", False))
            stage = 1
        elif kind == "Pooling" and stage == 1:
            meta["pooling"] = _pooling_from_st(json.loads((mdir / "config.json").read_text()))
            stage = 2
        elif kind in POST_MODULES and stage == 2:
            post.append(load_post_module(kind, mdir))
        else:
            where = "" if kind in ("Transformer", "Pooling", *POST_MODULES) else " (contrastkit runs Transformer, " \
                "Pooling, then Dense, LayerNorm and Normalize)"
            raise ConfigError(f"{path}/modules.json: module {m.get('type')!r} at position {m.get('idx', '?')} is not "
                              f"supported here{where}; its embeddings would differ from SentenceTransformer(path)'s")
    if post and isinstance(post[-1], Normalize):
        post.pop()
        meta["normalize"] = True
    return meta, subfolder, post


_ST_POOLING_NAMES = {"cls": "cls", "mean": "mean", "lasttoken": "last_token"}


def _pooling_from_st(cfg: dict[str, Any]) -> str:
    """contrastkit's pooler for a sentence-transformers Pooling config; one of cls, mean or lasttoken, else refused."""
    mode = cfg.get("pooling_mode")
    if isinstance(mode, (list, tuple)) and len(mode) == 1:
        mode = mode[0]
    if mode is not None:
        if not isinstance(mode, str) or mode not in _ST_POOLING_NAMES:
            raise ConfigError(f"sentence-transformers pooling {mode!r} is not supported "
                              f"(contrastkit runs one of {', '.join(_ST_POOLING_NAMES)})")
        return _ST_POOLING_NAMES[mode]
    on = [k for k, v in cfg.items() if k.startswith("pooling_mode_") and v is True]
    names = {"pooling_mode_cls_token": "cls", "pooling_mode_mean_tokens": "mean", "pooling_mode_lasttoken": "last_token"}
    if len(on) != 1 or on[0] not in names:
        raise ConfigError(f"sentence-transformers pooling with {on or 'no mode'} is not supported "
                          "(contrastkit runs exactly one of cls, mean or lasttoken pooling)")
    return names[on[0]]
