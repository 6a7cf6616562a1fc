"""Shared fixtures: a tiny random BERT built in the test run (no hub, no download)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
"""The benchmark data beside the checkout, as CI has it (a user's fresh clone has none)."""
HAVE_SHARED_DATA = (SHARED_DATA / "senteval").is_dir()
needs_shared_data = pytest.mark.skipif(
    not HAVE_SHARED_DATA, reason=f"needs the real SentEval benchmark data at {SHARED_DATA} (absent in a fresh clone)")

WORDS = ("a man woman child dog cat is are was playing eating running sleeping guitar piano food in on the "
         "park house street big small red blue green happy sad fast slow car bike tree river sky sun rain "
         "reads writes book letter music song dance field ball game plays with and of to").split()


def build_tiny_bert(path: Path, *, hidden: int = 32, layers: int = 2, seed: int = 0) -> Path:
    """Write a random 2-layer BERT with a word-level vocabulary to ``path``."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizer

    path.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
    (path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    # BertTokenizer(vocab=...) really loads the word list (transformers 5's BertTokenizerFast(vocab_file=...)
    # ignores it and maps every word to [UNK]).
    tok = BertTokenizer(vocab=str(path / "vocab.txt"), do_lower_case=True)
    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=len(vocab), hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=2,
                     intermediate_size=hidden * 2, max_position_embeddings=64)
    BertModel(cfg).save_pretrained(str(path))
    tok.save_pretrained(str(path))
    return path


def build_tiny_llama(path: Path, *, layers: int = 2, seed: int = 0, tie: bool = True,
                     texts: tuple[str, ...] | list[str] = ()) -> Path:
    """Write a random LlamaForCausalLM (GQA) with a word-level tokenizer that adds BOS to ``path``.

    The vocabulary holds the special tokens, '_' (LLM2Vec's mask token), the tiny words and every
    whitespace/punctuation piece of ``texts`` (e.g. prompt templates).
    """
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    pre = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    vocab = {"<pad>": 0, "<unk>": 1, "<s>": 2, "</s>": 3, "_": 4}
    for text in (" ".join(WORDS), *texts):
        for piece, _ in pre.pre_tokenize_str(text):
            vocab.setdefault(piece, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 2)])
    tok.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                   unk_token="<unk>", model_max_length=512)
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=layers, num_attention_heads=4,
                      num_key_value_heads=2, intermediate_size=64, max_position_embeddings=512,
                      tie_word_embeddings=tie, pad_token_id=0, bos_token_id=2, eos_token_id=3)
    LlamaForCausalLM(cfg).save_pretrained(str(path))
    fast.save_pretrained(str(path))
    return path


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Directory of a tiny random BERT (session-wide; do not modify)."""
    return build_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


def make_sentences(n: int, seed: int = 0) -> list[str]:
    """Deterministic pseudo-sentences over the tiny vocabulary."""
    import random

    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 9))) for _ in range(n)]


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a module: on a busy two-core machine more threads make tiny models much slower."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def synthetic_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data root holding a tiny synthetic SentEval layout (pass it as ``data_dir``; see senteval_fixture)."""
    from senteval_fixture import write_synthetic_senteval

    return write_synthetic_senteval(tmp_path_factory.mktemp("synthetic-data"))


@contextlib.contextmanager
def serving(app: Any) -> Iterator[str]:
    """Serve ``app`` with uvicorn on a free loopback port in a thread; yields its base URL."""
    import threading
    import time

    import uvicorn

    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="critical"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    for _ in range(500):
        if srv.started:
            break
        time.sleep(0.02)
    assert srv.started
    port = srv.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        srv.should_exit = True
        thread.join(timeout=10)


class Killed(RuntimeError):
    """Raised by :func:`count_calls` to stand for a run killed mid-way."""


def count_calls(monkeypatch: pytest.MonkeyPatch, module: Any, name: str, kill_after: int | None = None) -> list[int]:
    """Wrap ``module.name`` (a loss) to count its calls in the returned one-item list; with ``kill_after``, the
    next call raises :class:`Killed` (a run killed in the middle of a step)."""
    calls = [0]
    original = getattr(module, name)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if kill_after is not None and calls[0] >= kill_after:
            raise Killed(f"killed at call {calls[0] + 1} of {name}")
        calls[0] += 1
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, wrapper)
    return calls


def check_kill_and_resume(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], module: Any,
                          loss: str, run: Any, tmp_path: Path, start: dict[str, Any]) -> None:
    """``run(run_dir, resume)`` trains 6 steps (checkpoint_every 2, log_every 1) and returns the final weights.

    An uninterrupted run is the reference; a second run is killed in step 5 (at the 5th call of ``module.loss``)
    and resumed by a fresh ``run(..., resume=True)``: it must continue from step 4 (2 loss calls, not 6) and end
    with bit-identical weights (tolerance 0), which differ from the starting weights ``start``.
    """
    import json

    import torch

    want = run(tmp_path / "ref", False)
    count_calls(monkeypatch, module, loss, kill_after=4)
    with pytest.raises(Killed):
        run(tmp_path / "run", False)
    monkeypatch.undo()
    assert (tmp_path / "run" / "checkpoints" / "latest").read_text().strip() == "step-00000004"
    capsys.readouterr()
    calls = count_calls(monkeypatch, module, loss)
    got = run(tmp_path / "run", True)
    assert "continuing from step-00000004" in capsys.readouterr().out
    assert calls == [2]  # steps 5 and 6 only: continued, not started over
    logged = [json.loads(x)["step"] for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert logged == [1, 2, 3, 4, 5, 6]
    assert want.keys() == got.keys() and any(not torch.equal(want[k], start[k]) for k in want)
    for k in want:
        assert torch.equal(want[k], got[k]), k
