"""The training loop: AdamW, warmup + linear decay, clipping, accumulation, bf16, eval, checkpoints.

The trainer knows nothing about any particular loss: it receives ``loss_fn(anchor,
positive, negatives, **extras) -> scalar`` and an ``embed`` function that turns a batch of
examples into an :class:`~contrastkit.training.batch.Embedded` (or the legacy 3-tuple). "Loss of a
micro-batch and backward" is delegated to a negative source (``training.negatives``: in-batch,
cached/GradCache, cross-device, momentum queue), whose state is checkpointed. Gradient
accumulation averages gradients over ``grad_accumulation`` batches; it does NOT enlarge the set
of in-batch negatives (each micro-batch still contrasts only against itself); use a larger batch
with the cached or cross-device source for that. Under ``torchrun`` only rank 0 writes metrics,
checkpoints, evaluations and the model; every rank's random state is checkpointed.

Under ``torchrun`` (``WORLD_SIZE`` > 1) the trainer joins the process group (gloo on CPU, nccl on
CUDA), wraps the encoder in PyTorch ``DistributedDataParallel`` (:class:`~.distributed.DataParallel`:
bucketed all-reduces overlapped with the backward pass, ``no_sync`` on all but the last micro-batch of
an accumulation) and gives each rank only its own rows of every global batch
(:class:`~contrastkit.samplers.ShardedBatches`; ``train.batch_size`` is the global batch). DDP averages
gradients over ranks: with in-batch (or cached, momentum) negatives each rank contrasts its own rows and
the step follows the mean of the ranks' losses; with cross-device negatives every rank computes the
loss of the whole global batch and the step equals one process on the concatenated batch.

Checkpoints are written every ``checkpoint_every`` steps and whenever ``checkpoint_minutes`` passed since
the last one. A checkpoint is written only when it is sane (finite weights and gradients, the weights'
norm within ``MAX_NORM_GROWTH`` times the run's starting norm), so the latest checkpoint is always a good
one to resume from; an insane one stops the run naming the last good checkpoint.

The model need not be a sentence :class:`~contrastkit.encoders.Encoder`: any ``nn.Module`` with a ``device``
(a cross-encoder, a causal LM) trains through :meth:`Trainer.for_step_loss`, whose ``step_loss(model, batch)``
computes a micro-batch's whole loss (optionally with named parts, which are logged), and a ``save`` function
that writes the final model.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from pydantic import ValidationError
from torch import Tensor

from ..config import TrainConfig, _format_validation_error
from ..encoders.encoder import Encoder, autocast
from ..errors import ConfigError, TrainingError
from ..samplers import BatchSource, ShardedBatches
from . import distributed
from .batch import Embedded, EmbedFn, as_embedded
from .checkpoint import latest_checkpoint, load_checkpoint, rng_state, save_checkpoint, set_rng_state
from .negatives import InBatchNegatives, NegativeSource
from .step_loss import StepLoss, WholeLoss

log = logging.getLogger("contrastkit.training")

LossFn = Callable[..., Tensor]
EvalFn = Callable[[Encoder], dict[str, float]]
SaveFn = Callable[[Path], Any]

MAX_NORM_GROWTH = 100.0
"""A checkpoint whose trainable weights' L2 norm exceeds this multiple of the run's starting norm is refused."""


def linear_warmup_decay(total_steps: int, warmup_steps: int) -> Callable[[int], float]:
    """LR multiplier: linear warm-up to 1, then linear decay to 0 at ``total_steps``."""

    def factor(step: int) -> float:
        if warmup_steps and step < warmup_steps:
            return (step + 1) / warmup_steps
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))

    return factor


@dataclass
class TrainResult:
    """What a finished run produced."""

    output_dir: Path
    model_dir: Path
    steps: int
    best_score: float | None
    history: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0


class Trainer:
    """Runs an optimisation loop over a resumable batch source."""

    def __init__(self, encoder: Encoder, loss_fn: LossFn | None, embed: EmbedFn | StepLoss, config: TrainConfig,
                 *, eval_fn: EvalFn | None = None, eval_every: int | None = None, select_best: bool = True,
                 negatives: NegativeSource | None = None, save_max_length: int | None = None,
                 find_unused_parameters: bool = True, save: SaveFn | None = None) -> None:
        """``save_max_length``: the max_seq_length the saved model gets (default: the encoder's training one).
        ``find_unused_parameters``: DDP's option under torchrun (True: trainable parameters without a gradient,
        such as BERT's pooler, are allowed; False is a little faster when every one gets a gradient).
        ``save(path)`` writes the model to a directory (default: ``encoder.save``)."""
        self.encoder = encoder
        self.save = save if save is not None else encoder.save
        self.loss_fn = loss_fn
        self.embed = embed
        self.negatives: NegativeSource = negatives if negatives is not None else InBatchNegatives()
        self.cfg = config
        self.eval_fn = eval_fn
        self.eval_every = eval_every
        self.select_best = select_best
        self.save_max_length = save_max_length
        self.find_unused_parameters = find_unused_parameters
        self.data_parallel: distributed.DataParallel | None = None
        self.output_dir = Path(config.output_dir)
        self.ckpt_dir = self.output_dir / "checkpoints"

    @classmethod
    def for_step_loss(cls, model: Any, step_loss: StepLoss, config: TrainConfig, *, save: SaveFn,
                      **kwargs: Any) -> Trainer:
        """A trainer for a model that is not a sentence encoder: ``step_loss(model, batch)`` is the micro-batch's
        loss, or named losses with the total under ``'loss'`` (each is logged); ``save(path)`` writes the model."""
        return cls(model, None, step_loss, config, negatives=WholeLoss(), save=save, **kwargs)

    def _embed_float(self, encoder: Any, batch: Sequence[Any]) -> Embedded | dict[str, Tensor]:
        """The user's embed function (or step loss) under the configured autocast, outputs as float32."""
        with autocast(self.cfg.precision, self.encoder.device):
            out = self.embed(encoder, batch)
        if isinstance(out, (Tensor, dict)):  # a step loss: the total, or named losses
            return {k: v.float() for k, v in ({"loss": out} if isinstance(out, Tensor) else out).items()}
        return as_embedded(out).float()

    def _optimizer(self) -> torch.optim.Optimizer:
        decay, no_decay = [], []
        for name, p in self.encoder.named_parameters():
            if p.requires_grad:
                (no_decay if p.ndim < 2 or "norm" in name.lower() else decay).append(p)
        groups = [{"params": decay, "weight_decay": self.cfg.weight_decay},
                  {"params": no_decay, "weight_decay": 0.0}]
        # The fused kernel (CPU and CUDA) is several times faster than the per-tensor loop.
        return torch.optim.AdamW(groups, lr=self.cfg.lr, fused=True)

    def total_steps(self, source: BatchSource[Any]) -> int:
        """Optimizer steps the run will take: ``max_steps`` when set (the data loops over as many epochs as
        needed, as in Hugging Face's Trainer), else ``epochs`` full epochs."""
        per_epoch = source.batches_per_epoch // self.cfg.grad_accumulation
        if per_epoch == 0:
            raise TrainingError(
                f"an epoch has {source.batches_per_epoch} batches, fewer than grad_accumulation="
                f"{self.cfg.grad_accumulation}")
        return self.cfg.max_steps or per_epoch * self.cfg.epochs

    def fit(self, source: BatchSource[Any], *, resume: bool = False) -> TrainResult:
        """Train; with ``resume`` continue exactly from the latest checkpoint of ``output_dir``."""
        cfg = self.cfg
        if distributed.launched():
            distributed.init_process_group(self.encoder.device)
        main = distributed.is_main()
        torch.manual_seed(cfg.seed + distributed.rank())
        self.negatives.setup(self.encoder)
        if distributed.is_distributed() and not isinstance(source, ShardedBatches):
            source = ShardedBatches(source, distributed.rank(), distributed.world_size())
        total = self.total_steps(source)
        opt = self._optimizer()
        sched = torch.optim.lr_scheduler.LambdaLR(opt, linear_warmup_decay(total, cfg.warmup_for(total)))
        state: dict[str, Any] = {"step": 0, "epoch": 0, "batch": 0, "best_score": None, "samples": 0}
        self.output_dir.mkdir(parents=True, exist_ok=True)
        metrics_path = self.output_dir / "metrics.jsonl"
        if resume:
            ckpt = latest_checkpoint(self.ckpt_dir)
            if ckpt is None:
                print(f"resume: no checkpoint found in {self.ckpt_dir}; starting from step 0")
            else:
                saved = load_checkpoint(ckpt, self.encoder)
                opt.load_state_dict(saved["optimizer"])
                sched.load_state_dict(saved["scheduler"])
                self._apply_hyperparameters(opt, sched)
                ranks = saved.get("rng_ranks")
                set_rng_state(ranks[distributed.rank()] if ranks else saved["rng"])
                self.negatives.load_state_dict(saved.get("negatives") or {})
                state = saved["trainer"]
                print(f"resume: continuing from {ckpt.name} (step {state['step']}, epoch {state['epoch']}, "
                      f"batch {state['batch']})")
                if main:
                    _truncate_metrics(metrics_path, state["step"])
        elif latest_checkpoint(self.ckpt_dir) is not None:
            raise TrainingError(f"{self.output_dir} already holds checkpoints; pass --resume to continue "
                                "or choose another train.output_dir")
        elif main:
            metrics_path.unlink(missing_ok=True)
        if state.get("start_param_norm") is None:  # the reference for the sanity check of checkpoints
            state["start_param_norm"] = _param_norm(self.encoder)

        embed = self._embed_float
        if distributed.is_distributed():  # after loading: DDP broadcasts rank 0's weights once
            self.data_parallel = distributed.DataParallel(self.encoder,
                                                          find_unused_parameters=self.find_unused_parameters)
            embed = self.data_parallel.wrap(self._embed_float)
        history: list[dict[str, Any]] = []
        start_time = time.perf_counter()
        last_ckpt_time = start_time
        grad_norm_ok: Tensor | bool = True
        self.encoder.train()
        bar = None
        if cfg.progress and main:
            from tqdm.auto import tqdm

            bar = tqdm(total=total, initial=state["step"], desc="train", unit="step", dynamic_ncols=True)
        window_losses: dict[str, float] = {}
        window_batches, window_samples, window_start = 0, 0, time.perf_counter()
        accum = 0
        with open(metrics_path if main else os.devnull, "a", encoding="utf-8") as mlog:
            while state["step"] < total:
                seen_batch = False
                for batch in source.batches(state["epoch"], state["batch"]):
                    seen_batch = True
                    # DDP all-reduces during the backward of the last micro-batch of a step only
                    with (self.data_parallel.sync(accum + 1 >= cfg.grad_accumulation)
                          if self.data_parallel is not None else contextlib.nullcontext()):
                        losses = self.negatives.loss_and_backward(self.encoder, batch, embed, self.loss_fn,
                                                                  1.0 / cfg.grad_accumulation)
                    losses = losses if isinstance(losses, dict) else {"loss": losses}
                    loss = losses["loss"]
                    if _agree(not math.isfinite(loss), self.encoder.device):  # every rank stops together
                        raise TrainingError(
                            f"loss became {loss} at step {state['step'] + 1} (epoch {state['epoch']}, "
                            f"batch {state['batch']}); stopped without saving. {self._last_good()} Try a "
                            "lower train.lr, a higher loss.temperature or train.precision=fp32.")
                    accum += 1
                    state["batch"] += 1
                    rows = getattr(batch, "global_size", len(batch))  # a rank's shard counts its global batch
                    state["samples"] += rows
                    for name, value in losses.items():
                        window_losses[name] = window_losses.get(name, 0.0) + value
                    window_batches += 1
                    window_samples += rows
                    if accum < cfg.grad_accumulation:
                        continue
                    accum = 0
                    self.negatives.before_optimizer_step(self.encoder)
                    grads = [p.grad for p in self.encoder.parameters() if p.grad is not None]
                    grad_norm = (torch.nn.utils.clip_grad_norm_(self.encoder.parameters(), cfg.max_grad_norm)
                                 if cfg.max_grad_norm else torch.nn.utils.get_total_norm(grads))
                    grad_norm_ok = grad_norm_ok & torch.isfinite(grad_norm)  # no device sync per step
                    opt.step()
                    if isinstance(self.encoder, Encoder):
                        self.encoder.weights_changed()  # the fused step leaves version counters alone
                    sched.step()
                    opt.zero_grad(set_to_none=True)
                    self.negatives.after_optimizer_step(self.encoder)
                    state["step"] += 1
                    step = state["step"]
                    if step % cfg.log_every == 0 or step == total:
                        elapsed = time.perf_counter() - window_start
                        means = _rank_mean({name: value / window_batches for name, value in window_losses.items()},
                                           self.encoder.device)
                        row = {"step": step, "epoch": state["epoch"], **means,
                               "lr": sched.get_last_lr()[0], "sentences_per_s": window_samples / elapsed,
                               "elapsed_s": time.perf_counter() - start_time}
                        mlog.write(json.dumps(row) + "\n")
                        mlog.flush()
                        history.append(row)
                        if bar is not None:
                            bar.set_postfix(loss=f"{row['loss']:.4f}", lr=f"{row['lr']:.2e}",
                                            sent_s=f"{row['sentences_per_s']:.0f}")
                        window_losses, window_batches, window_samples = {}, 0, 0
                        window_start = time.perf_counter()
                    if bar is not None:
                        bar.update(1)
                    if main and self.eval_fn is not None and self.eval_every and step % self.eval_every == 0 \
                            and step < total:
                        self._evaluate(state, mlog, history)
                    now = time.perf_counter()
                    out_of_time = _agree(cfg.max_minutes is not None and now - start_time >= cfg.max_minutes * 60,
                                         self.encoder.device)
                    ckpt_due = _agree(cfg.checkpoint_minutes is not None and
                                      now - last_ckpt_time >= cfg.checkpoint_minutes * 60, self.encoder.device)
                    if step % cfg.checkpoint_every == 0 or step == total or out_of_time or ckpt_due:
                        self._checkpoint(state, opt, sched, bool(grad_norm_ok))
                        last_ckpt_time, grad_norm_ok = time.perf_counter(), True
                    if out_of_time:
                        print(f"train.max_minutes={cfg.max_minutes} reached at step {step}/{total}; stopping "
                              "(--resume continues)")
                    if step >= total or out_of_time:
                        break
                else:
                    if not seen_batch and state["batch"] == 0:
                        raise TrainingError(f"epoch {state['epoch']} yielded no batch; the data source is empty")
                    # micro-batches left over at the end of an epoch do not make a step
                    opt.zero_grad(set_to_none=True)
                    accum = 0
                    state["epoch"] += 1
                    state["batch"] = 0
                    continue
                break
            evaluated_now = bool(history) and "eval" in history[-1] and history[-1]["step"] == state["step"]
            if main and self.eval_fn is not None and not evaluated_now:  # a time limit can stop on an eval step
                self._evaluate(state, mlog, history)
        if bar is not None:
            bar.close()
        self.data_parallel = None
        model_dir = self._finalize(state) if main else self.output_dir / "model"
        return TrainResult(self.output_dir, model_dir, state["step"], state["best_score"], history,
                           time.perf_counter() - start_time)

    def _evaluate(self, state: dict[str, Any], mlog: Any, history: list[dict[str, Any]]) -> None:
        assert self.eval_fn is not None
        scores = self.eval_fn(self.encoder)
        self.encoder.train()
        primary = sum(scores.values()) / len(scores)
        row = {"step": state["step"], "eval": scores, "primary": primary}
        mlog.write(json.dumps(row) + "\n")
        mlog.flush()
        history.append(row)
        best = state["best_score"]
        if best is None or primary > best:
            state["best_score"] = primary
            state["best_step"] = state["step"]
            if self.select_best:
                self._save_model(self.output_dir / "best")
        log.info("step %d: eval %s (best %.4f)", state["step"], scores, state["best_score"])

    def _save_model(self, path: Path) -> None:
        """Save the model with the inference ``save_max_length`` (training truncation is not kept)."""
        if self.save_max_length is None:
            self.save(path)
            return
        train_length = self.encoder.max_length
        self.encoder.max_length = self.save_max_length
        try:
            self.save(path)
        finally:
            self.encoder.max_length = train_length

    def _apply_hyperparameters(self, opt: torch.optim.Optimizer, sched: Any) -> None:
        """After loading a checkpoint: the config's lr and weight decay replace the saved ones (a resume
        with an allowed change of ``train.lr`` must train at the new lr, on the same schedule)."""
        sched.base_lrs = [self.cfg.lr for _ in opt.param_groups]
        factor = sched.lr_lambdas[0](sched.last_epoch)
        for group, decay in zip(opt.param_groups, (self.cfg.weight_decay, 0.0)):
            group["initial_lr"] = self.cfg.lr
            group["lr"] = self.cfg.lr * factor
            group["weight_decay"] = decay
        sched._last_lr = [g["lr"] for g in opt.param_groups]

    def _last_good(self) -> str:
        ckpt = latest_checkpoint(self.ckpt_dir)
        if ckpt is None:
            return "No checkpoint was written before (nothing to resume from)."
        return (f"Last good checkpoint: {ckpt} (weights checked finite and sane when written); continue from it "
                f"with a lower lr: --resume {self.output_dir} --set train.lr=LR --allow-change train.lr on the "
                "command that started the run (e.g. contrastkit train).")

    def _check_sane(self, state: dict[str, Any], grad_norm_ok: bool) -> None:
        """Refuse to checkpoint weights that blew up: stop naming why and the last good checkpoint."""
        norm, start = _param_norm(self.encoder), state["start_param_norm"]
        why = None
        if not grad_norm_ok:
            why = "a gradient norm was not finite since the last checkpoint"
        elif not math.isfinite(norm):
            why = f"the weights are not finite (norm {norm})"
        elif start > 0 and norm > MAX_NORM_GROWTH * start:
            why = (f"the weights' norm grew from {start:.4g} to {norm:.4g} (more than {MAX_NORM_GROWTH:g}x; "
                   "the learning rate is likely far too high)")
        if _agree(why is not None, self.encoder.device):  # every rank stops together
            raise TrainingError(f"step {state['step']}: {why or 'another rank found insane weights'}; this "
                                f"checkpoint was not written and the run stopped. {self._last_good()}")

    def _checkpoint(self, state: dict[str, Any], opt: torch.optim.Optimizer, sched: Any,
                    grad_norm_ok: bool = True) -> None:
        self._check_sane(state, grad_norm_ok)
        training_state = {"optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "rng": rng_state(),
                          "trainer": dict(state), "negatives": self.negatives.state_dict()}
        if distributed.is_distributed():  # every rank's dropout stream, so a resumed run stays exact
            ranks: list[Any] = [None] * distributed.world_size()
            torch.distributed.all_gather_object(ranks, rng_state())
            training_state["rng_ranks"] = ranks
        if distributed.is_main():
            save_checkpoint(self.ckpt_dir, state["step"], self.encoder, training_state, self.cfg.keep_checkpoints)

    def _finalize(self, state: dict[str, Any]) -> Path:
        """Write ``model/``: the best dev checkpoint when selection is on, else the final weights."""
        model_dir = self.output_dir / "model"
        best = self.output_dir / "best"
        if self.select_best and best.is_dir():
            tmp = self.output_dir / ".model.tmp"
            shutil.rmtree(tmp, ignore_errors=True)
            shutil.copytree(best, tmp)
            shutil.rmtree(model_dir, ignore_errors=True)
            tmp.rename(model_dir)
        else:
            self._save_model(model_dir)
        (self.output_dir / "train_state.json").write_text(json.dumps(
            {k: state[k] for k in ("step", "epoch", "best_score", "samples") if k in state} |
            {"best_step": state.get("best_step")}, indent=2))
        return model_dir


def fit_in(make: Callable[[TrainConfig], Trainer], source: BatchSource[Any], run_dir: str | Path | None, *,
           resume: bool = False, **train: Any) -> TrainResult:
    """Fit ``make(config)`` on ``source``, ``config`` being a TrainConfig of ``train`` with output_dir ``run_dir``.

    For Python APIs that take training keywords: without ``run_dir`` the run (checkpoints, metrics) lives in a
    temporary directory removed afterwards, so there is nothing to resume.
    """
    if resume and run_dir is None:
        raise ConfigError("resume needs the run_dir of the run to continue")
    with contextlib.ExitStack() as stack:
        out = run_dir if run_dir is not None else stack.enter_context(tempfile.TemporaryDirectory(prefix="ck-run-"))
        try:
            config = TrainConfig(output_dir=str(out), **train)
        except ValidationError as err:
            raise ConfigError(_format_validation_error(err, "training keywords")) from None
        return make(config).fit(source, resume=resume)


def _param_norm(model: torch.nn.Module) -> float:
    """L2 norm of all trainable parameters together."""
    with torch.no_grad():
        norms = [p.detach().float().norm() for p in model.parameters() if p.requires_grad]
        return float(torch.linalg.vector_norm(torch.stack(norms))) if norms else 0.0


def _agree(flag: bool, device: torch.device) -> bool:
    """True on every rank when it is true on any (so that all ranks stop at the same step)."""
    if not distributed.is_distributed():
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
    return bool(t.item())


def _rank_mean(values: dict[str, float], device: torch.device) -> dict[str, float]:
    """The mean of each value over the ranks (the loss the step followed; rank 0 alone sees only its rows)."""
    if not distributed.is_distributed() or not values:
        return values
    t = torch.tensor(list(values.values()), dtype=torch.float64, device=device)
    torch.distributed.all_reduce(t)
    return dict(zip(values, (t / distributed.world_size()).tolist()))


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop metric rows logged after the checkpoint we resume from (they will be redone)."""
    if not path.is_file():
        return
    keep = [ln for ln in path.read_text(encoding="utf-8").splitlines()
            if ln.strip() and json.loads(ln).get("step", 0) <= step]
    path.write_text("".join(ln + "\n" for ln in keep), encoding="utf-8")


__all__ = ["EmbedFn", "EvalFn", "LossFn", "SaveFn", "StepLoss", "Trainer", "TrainResult", "fit_in",
           "linear_warmup_decay"]
