"""``contrastkit index build | add | delete | search``: manage a vector store (contrastkit.search.Store).

Input files: a text file (one document per line, read with contrastkit.data's text reader) or
JSONL with one object per line: ``text`` (required), ``id`` and ``metadata`` (a dict) optional.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from contrastkit.errors import ConfigError, DataError

_ADD_CHUNK = 10_000


def _read_jsonl(path: str) -> tuple[list[str], list[Any] | None, list[Any] | None]:
    from contrastkit.data.readers import iter_json_objects

    texts: list[str] = []
    ids: list[Any] = []
    metas: list[Any] = []
    for line_no, obj in iter_json_objects(path):
        if not isinstance(obj.get("text"), str) or not obj["text"].strip():
            raise DataError("expected an object with a non-empty string 'text' (and optional 'id', 'metadata')",
                            path=path, line=line_no)
        if "metadata" in obj and not isinstance(obj["metadata"], dict):
            raise DataError(f"'metadata' must be an object, found {type(obj['metadata']).__name__}",
                            path=path, line=line_no)
        texts.append(obj["text"])
        ids.append(obj.get("id"))
        metas.append(obj.get("metadata"))
    if not texts:
        raise DataError("file is empty: no documents found", path=path)
    has_ids = [i is not None for i in ids]
    if any(has_ids) and not all(has_ids):
        raise DataError(f"{has_ids.count(False)} of {len(ids)} lines lack an 'id': give every line an id or none",
                        path=path)
    return texts, (ids if all(has_ids) else None), (metas if any(m is not None for m in metas) else None)


def read_documents(path: str) -> tuple[list[str], list[Any] | None, list[Any] | None]:
    """Texts, ids (or None) and metadata (or None) of a text or JSONL input file."""
    from contrastkit.data import iter_examples
    from contrastkit.data.readers import _check_file, infer_format

    _check_file(path)
    fmt = infer_format(path) if Path(path).suffix else "text"
    if fmt == "jsonl":
        return _read_jsonl(path)
    if fmt != "text":
        raise ConfigError(f"{path}: index input must be a text file (one document per line) or JSONL")
    return [ex.texts[0] for ex in iter_examples(path, format="text")], None, None


def _encoder(model: str) -> Any:
    from contrastkit.encoders import Encoder

    return Encoder.from_pretrained(model)


def _add_file(store: Any, enc: Any, path: str, batch_size: int, progress: bool) -> int:
    texts, ids, metas = read_documents(path)
    emb = enc.encode(texts, batch_size=batch_size, show_progress=progress)
    for s in range(0, len(texts), _ADD_CHUNK):
        e = slice(s, s + _ADD_CHUNK)
        store.add(texts[e], emb[e], ids=None if ids is None else ids[e], metadata=None if metas is None else metas[e])
    return len(texts)


def _cmd_build(args: argparse.Namespace) -> int:
    from contrastkit.search import Store

    params = {}
    for item in args.param:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--param expects KEY=VALUE, got {item!r}")
        try:
            params[key] = json.loads(value)
        except json.JSONDecodeError:
            params[key] = value
    enc = _encoder(args.model)
    store = Store.create(args.store, enc.dim, args.kind, metric=args.metric, index_params=params, model=args.model)
    with store:
        n = _add_file(store, enc, args.input, args.batch_size, args.progress)
        print(f"built {args.kind} store {args.store} with {n} documents (dim {enc.dim})")
    return 0


def _open(args: argparse.Namespace) -> tuple[Any, Any]:
    from contrastkit.search import Store

    store = Store.open(args.store)
    model = args.model or store.model
    if not model:
        raise ConfigError(f"{args.store}: the store records no model; pass --model")
    enc = _encoder(model)
    store.encoder = lambda texts: enc.encode(texts)
    return store, enc


def _cmd_add(args: argparse.Namespace) -> int:
    store, enc = _open(args)
    with store:
        n = _add_file(store, enc, args.input, args.batch_size, args.progress)
        print(f"added {n} documents; the store holds {len(store)}")
    return 0


def _cmd_delete(args: argparse.Namespace) -> int:
    from contrastkit.search import Store

    ids = list(args.ids or [])
    if args.ids_file:
        ids += [line.strip() for line in Path(args.ids_file).read_text().splitlines() if line.strip()]
    if not ids:
        raise ConfigError("give ids to delete with --ids or --ids-file")
    with Store.open(args.store) as store:
        n = store.delete(ids)
        print(f"deleted {n} of {len(ids)} ids; the store holds {len(store)}")
    return 0


def _parse_where(items: list[str]) -> dict[str, Any]:
    where: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--where expects KEY=VALUE, got {item!r}")
        try:
            parsed = json.loads(value)  # numbers, true/false/null, "quoted strings"
        except json.JSONDecodeError:
            parsed = value
        where[key] = parsed if isinstance(parsed, (str, int, float, bool)) or parsed is None else value
    return where


def _cmd_search(args: argparse.Namespace) -> int:
    store, _ = _open(args)
    with store:
        results = store.search(list(args.query), args.k, _parse_where(args.where))
        for q, hits in zip(args.query, results):
            print(json.dumps({"query": q, "hits": [{"id": h.id, "score": round(h.score, 6), "text": h.text,
                                                    "metadata": h.metadata} for h in hits]}, ensure_ascii=False))
    return 0


def register(sub: argparse._SubParsersAction, groups: dict[str, argparse._SubParsersAction]) -> None:
    """Add ``index build | add | delete | search``."""
    from contrastkit.search import INDEX_KINDS, METRICS

    p = sub.add_parser("index", help="build and query a vector store (SQLite + FAISS/exact index)")
    isub = p.add_subparsers(dest="index_command", required=True)

    b = isub.add_parser("build", help="create a store from a text or JSONL file")
    b.add_argument("--model", required=True, help="model dir, hub name or alias (recorded in the store)")
    b.add_argument("--input", required=True, help="text file (one document per line) or JSONL (text, id, metadata)")
    b.add_argument("--store", required=True, help="new store directory")
    b.add_argument("--kind", choices=INDEX_KINDS, default="exact")
    b.add_argument("--metric", choices=METRICS, default="cosine")
    b.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                   help="index parameter, e.g. --param ef_search=256 (repeatable)")
    b.add_argument("--batch-size", type=int, default=64)
    b.add_argument("--no-progress", dest="progress", action="store_false")
    b.set_defaults(func=_cmd_build)

    a = isub.add_parser("add", help="add documents from a file to a store")
    a.add_argument("--store", required=True)
    a.add_argument("--input", required=True)
    a.add_argument("--model", help="override the model recorded in the store")
    a.add_argument("--batch-size", type=int, default=64)
    a.add_argument("--no-progress", dest="progress", action="store_false")
    a.set_defaults(func=_cmd_add)

    d = isub.add_parser("delete", help="delete documents by id")
    d.add_argument("--store", required=True)
    d.add_argument("--ids", nargs="+", help="ids to delete")
    d.add_argument("--ids-file", help="file with one id per line")
    d.set_defaults(func=_cmd_delete)

    s = isub.add_parser("search", help="search a store with query texts; prints one JSON line per query")
    s.add_argument("--store", required=True)
    s.add_argument("--query", action="append", required=True, help="query text (repeatable)")
    s.add_argument("-k", type=int, default=10)
    s.add_argument("--where", action="append", default=[], metavar="KEY=VALUE",
                   help="metadata filter; VALUE is JSON when it parses (5, true, null), else a string")
    s.add_argument("--model", help="override the model recorded in the store")
    s.set_defaults(func=_cmd_search)
