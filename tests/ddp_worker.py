"""Worker for tests/test_ddp.py, launched by torchrun as 2 processes (gloo on CPU), e.g. as 2 "nodes".

argv: TINY_BERT_DIR OUT_DIR. Per rank: trains with cross-device negatives and gradient accumulation under
DistributedDataParallel (the Trainer's), records which examples this rank read, then resumes a copy of
the run from its step-2 checkpoint and trains it to the same end; last, trains through a step loss
(``Trainer.for_step_loss``, each rank's loss over its own rows).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

torch.set_num_threads(1)

import torch.distributed as dist  # noqa: E402

from contrastkit.encoders import Encoder  # noqa: E402
from contrastkit.samplers import RandomBatches  # noqa: E402
from contrastkit.training.negatives import CrossDeviceNegatives  # noqa: E402
from contrastkit.training.trainer import Trainer  # noqa: E402
from contrastkit.views import embed_batch  # noqa: E402
from test_ddp import BATCH, EXAMPLES, SEED, Recording, loss_fn, step_loss, train_config  # noqa: E402


def weights(enc: Encoder) -> dict[str, torch.Tensor]:
    return {k: v.detach().contiguous() for k, v in enc.state_dict().items()}


def main() -> None:
    model, out = sys.argv[1], Path(sys.argv[2])
    rank = int(os.environ["RANK"])
    examples = Recording(EXAMPLES)
    torch.manual_seed(0)
    enc = Encoder.from_pretrained(model, dropout=0.0)
    Trainer(enc, loss_fn, embed_batch, train_config(out / "run"), negatives=CrossDeviceNegatives()).fit(
        RandomBatches(examples, BATCH, seed=SEED))
    save_file(weights(enc), str(out / f"trained-rank{rank}.safetensors"))
    (out / f"read-rank{rank}.json").write_text(json.dumps(examples.read))

    # resume: a copy of the run holding only its step-2 checkpoint continues to step 3
    again = out / "resumed"
    if rank == 0:
        (again / "checkpoints").mkdir(parents=True)
        shutil.copytree(out / "run" / "checkpoints" / "step-00000002", again / "checkpoints" / "step-00000002")
        (again / "checkpoints" / "latest").write_text("step-00000002\n")
    dist.barrier()
    torch.manual_seed(0)
    enc = Encoder.from_pretrained(model, dropout=0.0)
    Trainer(enc, loss_fn, embed_batch, train_config(again), negatives=CrossDeviceNegatives()).fit(
        RandomBatches(EXAMPLES, BATCH, seed=SEED), resume=True)
    save_file(weights(enc), str(out / f"resumed-rank{rank}.safetensors"))

    # a step loss (a model that is not handed to a loss as embeddings): each rank's loss over its own rows
    torch.manual_seed(0)
    enc = Encoder.from_pretrained(model, dropout=0.0)
    Trainer.for_step_loss(enc, step_loss, train_config(out / "step-loss"), save=enc.save).fit(
        RandomBatches(EXAMPLES, BATCH, seed=SEED))
    save_file(weights(enc), str(out / f"step-loss-rank{rank}.safetensors"))


if __name__ == "__main__":
    main()
