"""ONNX Runtime inference for an Encoder: export the backbone, quantize it to int8, run it.

Layout (the one sentence-transformers' ONNX backend and Optimum also read)::

    <model_dir>/onnx/model.onnx        fp32 backbone: input_ids, attention_mask[, token_type_ids]
                                       -> last_hidden_state (batch, seq, dim)
    <model_dir>/onnx/model_int8.onnx   the same with int8 weights (dynamic quantization)
    <model_dir>/onnx/export.json       export metadata: deviation from torch, STS delta, sizes

Only the transformer backbone is in the graph; pooling stays in torch after it
(``contrastkit.encoders.pooling.pool``), so one exported file serves every pooler
(``first_last_avg`` adds a ``first_hidden_state`` output). Batch and sequence axes are
dynamic, so a batch is padded to its own longest text only.

Int8 uses ONNX Runtime's dynamic quantization (weights int8, activations quantized per
batch at run time: Jacob et al., "Quantization and Training of Neural Networks for
Efficient Integer-Arithmetic-Only Inference", CVPR 2018).
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor, nn

from ..errors import ConfigError
from ..fsutil import atomic_write_bytes

if TYPE_CHECKING:
    from ..evaluation.senteval import STSTask
    from .encoder import Encoder

log = logging.getLogger("contrastkit.encoders")

ONNX_DIR = "onnx"
EXPORT_META = "export.json"
BACKEND_FILES = {"onnx": "model.onnx", "onnx-int8": "model_int8.onnx"}
BACKENDS = ("auto", "torch", *BACKEND_FILES)
BACKEND_ENV_VAR = "CONTRASTKIT_BACKEND"
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
OPSET = 17


def resolve_backend(backend: str) -> str:
    """Map 'auto' to ``$CONTRASTKIT_BACKEND`` or 'torch'; reject unknown names."""
    if backend == "auto":
        backend = os.environ.get(BACKEND_ENV_VAR, "").strip() or "torch"
        where = f"${BACKEND_ENV_VAR}"
    else:
        where = "backend"
    if backend not in BACKENDS or backend == "auto":
        raise ConfigError(f"{where}='{backend}' is not a backend; use one of {', '.join(BACKENDS[1:])}")
    return backend


def onnx_file(model_dir: str | Path, backend: str) -> Path:
    """Path of the exported file for ``backend`` in ``model_dir``; a clear error when it is missing."""
    path = Path(model_dir) / ONNX_DIR / BACKEND_FILES[backend]
    if not path.is_file():
        flag = " --quantize int8" if backend == "onnx-int8" else ""
        raise ConfigError(f"backend '{backend}' needs {path}, which does not exist; "
                          f"create it with: contrastkit export --model {model_dir} --format onnx{flag}")
    return path


class _Backbone(nn.Module):
    """The traced graph: backbone inputs -> last (and, if asked, first-layer) hidden states."""

    def __init__(self, backbone: nn.Module, input_names: Sequence[str], first_layer: bool) -> None:
        super().__init__()
        self.backbone = backbone
        self.input_names = list(input_names)
        self.first_layer = first_layer

    def forward(self, *inputs: Tensor) -> Tensor | tuple[Tensor, Tensor]:
        out = self.backbone(**dict(zip(self.input_names, inputs)), output_hidden_states=self.first_layer,
                            return_dict=True)
        if self.first_layer:
            return out.last_hidden_state, out.hidden_states[1]
        return out.last_hidden_state


def export_onnx(encoder: Encoder, path: str | Path, *, opset: int = OPSET) -> Path:
    """Export ``encoder``'s backbone to ONNX at ``path`` (dynamic batch and sequence axes)."""
    from .pooling import needs_all_hidden_states

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sample = encoder.tokenize(["a short text", "a somewhat longer text that pads the short one"])
    names = [k for k in INPUT_NAMES if k in sample]
    first = needs_all_hidden_states(encoder.pooling)
    outputs = ["last_hidden_state", "first_hidden_state"] if first else ["last_hidden_state"]
    axes = {k: {0: "batch", 1: "sequence"} for k in [*names, *outputs]}
    was_training = encoder.training
    encoder.eval()
    wrapper = _Backbone(encoder.backbone, names, first).eval()
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # tracer chatter about shapes treated as constants
            # The TorchScript exporter: the dynamo one needs onnxscript and, on torch 2.13, gives
            # no faster graph for these encoders.
            torch.onnx.export(wrapper, tuple(sample[k] for k in names), str(tmp), input_names=names,
                              output_names=outputs, dynamic_axes=axes, opset_version=opset, dynamo=False)
        tmp.replace(path)
    except Exception as err:  # the exporter raises many kinds; name the model and the cause
        tmp.unlink(missing_ok=True)
        raise ConfigError(f"ONNX export of {type(encoder.backbone).__name__} failed: {err}") from err
    finally:
        encoder.train(was_training)  # torch.onnx.export restores train mode on the wrapper's children
    return path


def quantize_int8(src: str | Path, dst: str | Path, *, per_channel: bool = True,
                  reduce_range: bool = True) -> Path:
    """Write ``dst``: ``src`` with int8 weights (ONNX Runtime dynamic quantization of MatMul/Gemm/Gather).

    Defaults measured on all-MiniLM-L6-v2 (STS-B test, fp32 82.03): per-channel with
    reduce_range 81.98; per-tensor 81.97; per-channel without reduce_range 81.73 (7-bit weights
    avoid the u8 x s8 saturation of x86 int8 kernels without VNNI). Quantizing Gather stores the
    token embeddings in int8 too (file 23 MB instead of 59 MB).
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    src, dst = Path(src), Path(dst)
    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "pre.onnx"
        try:
            quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)  # symbolic: fails on HF graphs
        except Exception as err:  # pre-processing is an optimisation; quantize the raw graph instead
            log.info("quantization pre-processing skipped: %s", err)
            pre = src
        quantize_dynamic(str(pre), str(dst), weight_type=QuantType.QInt8, per_channel=per_channel,
                         reduce_range=reduce_range, op_types_to_quantize=["MatMul", "Gemm", "Gather"])
    return dst


def session_options() -> Any:
    """ORT options for one single-threaded run (parallelism comes from concurrent runs: see OnnxBackbone)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return opts


class OnnxBackbone:
    """An ONNX Runtime session standing in for the torch backbone at inference time.

    The session runs each batch on one thread; ``workers`` (default: torch's thread count)
    batches run at once from a thread pool (``Encoder.encode`` does this; ORT's ``run`` is
    thread-safe and releases the GIL). On MiniLM-sized models and short texts, batch-level
    parallelism beats ORT's intra-op threads: the matrices of one batch are too small to split
    well, and ORT's spinning intra-op threads contend with torch's (benchmarks/encode_throughput.py).
    """

    def __init__(self, path: str | Path, *, threads: int | None = None) -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise ConfigError("the ONNX backends need onnxruntime: pip install 'contrastkit[onnx]'") from None

        self.path = Path(path)
        self.workers = max(1, threads or torch.get_num_threads())
        try:
            self.session = ort.InferenceSession(str(self.path), session_options(),
                                                providers=["CPUExecutionProvider"])
        except Exception as err:
            raise ConfigError(f"cannot load ONNX model {self.path}: {err}") from err
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]

    def __call__(self, features: dict[str, Tensor | np.ndarray]) -> dict[str, Tensor]:
        """Run the graph on a tokenized batch; returns its outputs as float32 torch tensors."""
        feed = {}
        for name in self.input_names:
            if name not in features:
                raise ConfigError(f"ONNX model {self.path} needs input '{name}', which the tokenizer does not give")
            value = features[name]
            feed[name] = (value.cpu().numpy() if isinstance(value, Tensor) else np.asarray(value)).astype(np.int64)
        outs = self.session.run(self.output_names, feed)
        return {n: torch.from_numpy(o) for n, o in zip(self.output_names, outs)}


def file_mb(path: Path) -> float:
    """Size of a file in MB (10^6 bytes)."""
    return round(path.stat().st_size / 1e6, 2)


def write_export_meta(onnx_dir: Path, update: dict[str, Any]) -> Path:
    """Merge ``update`` into ``onnx_dir/export.json`` (atomic write)."""
    meta_path = onnx_dir / EXPORT_META
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    meta.update(update)
    atomic_write_bytes(meta_path, json.dumps(meta, indent=2).encode())
    return meta_path


# Fixed sample for the export check: varied lengths, punctuation, digits.
CHECK_TEXTS = (
    "A man is playing a guitar.", "the dog runs in the park", "Two kids are eating ice cream on a sunny day.",
    "Stocks fell 3.5% on Tuesday after the central bank raised interest rates again.", "ok",
    "She reads a book by the river while the rain falls on the old wooden bridge nearby.",
    "a woman is slicing an onion", "The cat sleeps.", "What time does the next train to the airport leave?",
    "Researchers found that sleep improves memory consolidation in adults and children alike, "
    "according to a study of 1,200 participants published last year.",
    "red car, blue bike", "He plays the piano and she sings a song with the band in the small club downtown.",
)


def max_deviation(reference: np.ndarray, other: np.ndarray) -> dict[str, float]:
    """Max abs difference and min cosine between two embedding matrices of the same texts."""
    ref, oth = np.asarray(reference, np.float64), np.asarray(other, np.float64)
    cos = (ref * oth).sum(1) / np.maximum(np.linalg.norm(ref, axis=1) * np.linalg.norm(oth, axis=1), 1e-12)
    return {"max_abs_dev": float(np.abs(ref - oth).max()), "min_cosine": float(cos.min())}


def export_model(model: str, *, output: str | Path | None = None, quantize: str | None = None,
                 check_sts: bool = False, data_dir: str | None = None, opset: int = OPSET) -> dict[str, Any]:
    """Export ``model`` to ``<dir>/onnx/`` (fp32, and int8 if ``quantize='int8'``), check it, write export.json.

    ``dir`` is ``output`` (the whole model is saved there first) or the model's own directory.
    The check embeds :data:`CHECK_TEXTS` with torch fp32 and with each ONNX file; with
    ``check_sts`` it also reports the STS-B test Spearman of each and its change; without STS-B data the
    export still happens and ``report["stsb_check_skipped"]`` says why (None otherwise).
    """
    import onnxruntime as ort

    from .backbones import resolve_alias
    from .encoder import Encoder

    if opset < OPSET:
        raise ConfigError(f"--opset {opset} is too old; the export needs opset >= {OPSET}")
    if quantize not in (None, "int8"):
        raise ConfigError(f"--quantize '{quantize}' is not supported; use int8")
    source = Path(resolve_alias(model))
    if output is None and not source.is_dir():
        raise ConfigError(f"model '{model}' is not a local directory; give --output DIR to export into")
    enc = Encoder.from_pretrained(model, backend="torch").eval()
    target = Path(output) if output is not None else source
    if output is not None and target.resolve() != source.resolve():
        enc.save(target)
    onnx_dir = target / ONNX_DIR
    files = {"onnx": export_onnx(enc, onnx_dir / BACKEND_FILES["onnx"], opset=opset)}
    if quantize == "int8":
        files["onnx-int8"] = quantize_int8(files["onnx"], onnx_dir / BACKEND_FILES["onnx-int8"])
    texts = list(CHECK_TEXTS)
    reference = enc.encode(texts, batch_size=4, precision="fp32")
    report: dict[str, Any] = {"source": str(model), "onnxruntime": ort.__version__, "torch": torch.__version__,
                              "opset": opset, "graph": "backbone only; pooling in torch after it",
                              "pooling": enc.pooling, "check_texts": len(texts), "files": {},
                              "stsb_check_skipped": None}
    sts: dict[str, float] = {}
    stsb = None
    if check_sts:
        from ..evaluation.senteval import DataNotFoundError, load_sts_task

        try:
            stsb = load_sts_task("STSBenchmark", data_dir)
        except DataNotFoundError as err:
            report["stsb_check_skipped"] = str(err).splitlines()[0] + " (pass --data-dir DIR)"
            log.warning("STS-B check skipped: %s", report["stsb_check_skipped"])
    if stsb is not None:
        sts["torch"] = _stsb(enc, stsb)
    for backend, path in files.items():
        entry: dict[str, Any] = {"file": path.name, "size_mb": file_mb(path)}
        enc.use_onnx(path)
        entry.update(max_deviation(reference, enc.encode(texts, batch_size=4)))
        if stsb is not None:
            sts[backend] = _stsb(enc, stsb)
            entry["stsb_test_spearman"] = sts[backend]
            entry["stsb_delta_vs_torch"] = sts[backend] - sts["torch"]
        report["files"][backend] = entry
        enc.use_onnx(None)
    if stsb is not None:
        report["stsb_test_spearman_torch_fp32"] = sts["torch"]
    write_export_meta(onnx_dir, report)
    report["dir"] = str(target)
    return report


def _stsb(enc: Encoder, task: STSTask) -> float:
    from ..evaluation.sts import evaluate_sts

    res = evaluate_sts(lambda t: enc.encode(t, batch_size=64, precision="fp32"), tasks=[task])
    return float(res.tasks["STSBenchmark"].spearman)
