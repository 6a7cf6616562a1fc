"""Worker for tests/test_cross_device.py, launched with torchrun (2 processes, gloo on CPU).

argv: TINY_BERT_DIR OUT_DIR. Writes, per rank, the loss and the gradients of one cross-device step for
each batch kind (synchronised by DistributedDataParallel), and the weights after a short Trainer.fit run.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

torch.set_num_threads(1)

from contrastkit.config import TrainConfig  # noqa: E402
from contrastkit.encoders import Encoder  # noqa: E402
from contrastkit.samplers import RandomBatches  # noqa: E402
from contrastkit.training.distributed import DataParallel  # noqa: E402
from contrastkit.training.negatives import CrossDeviceNegatives  # noqa: E402
from contrastkit.training.trainer import Trainer  # noqa: E402
from contrastkit.views import embed_batch  # noqa: E402
from test_cross_device import BATCHES, embed, loss_fn  # noqa: E402


def main() -> None:
    model, out = sys.argv[1], Path(sys.argv[2])
    rank = int(os.environ["RANK"])
    torch.manual_seed(0)
    enc = Encoder.from_pretrained(model, dropout=0.0)
    enc.train()
    src = CrossDeviceNegatives()
    src.setup(enc)
    ddp_embed = DataParallel(enc).wrap(embed)  # DDP averages; the source scales its loss by the world size
    result = {}
    for kind, batch in BATCHES.items():
        enc.zero_grad()
        loss = src.loss_and_backward(enc, batch, ddp_embed, loss_fn, 1.0)
        result[kind] = loss
        save_file({k: p.grad.contiguous() for k, p in enc.named_parameters() if p.grad is not None},
                  str(out / f"{kind}-rank{rank}.safetensors"))
    (out / f"losses-rank{rank}.json").write_text(json.dumps(result))

    cfg = TrainConfig(output_dir=str(out / "run"), batch_size=6, lr=1e-3, progress=False, max_steps=3,
                      precision="fp32", seed=1, log_every=1, checkpoint_every=1)
    torch.manual_seed(0)
    enc = Encoder.from_pretrained(model, dropout=0.0)
    Trainer(enc, loss_fn, embed_batch, cfg, negatives=CrossDeviceNegatives()).fit(
        RandomBatches(BATCHES["triplets"] * 3, 6, seed=2))
    save_file({k: v.contiguous() for k, v in enc.state_dict().items()}, str(out / f"trained-rank{rank}.safetensors"))


if __name__ == "__main__":
    main()
