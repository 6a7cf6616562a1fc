"""``contrastkit index build | add | delete | search``: manage a vector store (contrastkit.search.Store).

Input files: a text file (one document per line, read with contrastkit.data's text reader) or
JSONL with one object per line: ``text`` (required), ``id`` (a non-empty string or an integer,
unique; on every line or on none) and ``metadata`` (an object) optional. Any other top-level key
is kept as metadata too (``{"id": "a", "text": "...", "lang": "en"}`` is found by ``--where
lang=en``); a key given both at the top level and inside ``metadata`` is refused.

``build`` is atomic: it reads and encodes everything, writes the store under a temporary name
and renames it into place, so bad input leaves nothing behind. The store records the model
(an absolute path when it is a local one) and its fingerprint; ``add``, ``search`` (and
``serve``) refuse another model unless ``--force`` is given.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contrastkit.errors import ConfigError, DataError

_RESERVED = ("text", "id", "metadata")


@dataclass
class Documents:
    """Documents read from an index input file, with the line each came from (None for text files)."""

    path: str
    texts: list[str]
    ids: list[str] | None = None
    metadata: list[dict[str, Any]] | None = None
    lines: list[int] | None = None


def _read_jsonl(path: str) -> Documents:
    from contrastkit.data.readers import iter_json_objects

    docs = Documents(path, [], [], [], [])
    first_line: dict[str, int] = {}
    no_id: list[int] = []
    for line_no, obj in iter_json_objects(path):
        text = obj.get("text")
        if not isinstance(text, str) or not text.strip():
            raise DataError("expected an object with a non-empty string 'text' (and optional 'id', 'metadata')",
                            path=path, line=line_no)
        meta = obj.get("metadata", {})
        if not isinstance(meta, dict):
            raise DataError(f"'metadata' must be an object, found {type(meta).__name__}", path=path, line=line_no)
        extra = {k: v for k, v in obj.items() if k not in _RESERVED}
        clash = sorted(set(extra) & set(meta))
        if clash:
            raise DataError(f"key(s) {clash} given both at the top level and inside 'metadata'", path=path,
                            line=line_no)
        doc_id = obj.get("id")
        if doc_id is None:
            no_id.append(line_no)
        elif isinstance(doc_id, bool) or not isinstance(doc_id, (str, int)) or doc_id == "":
            raise DataError(f"'id' must be a non-empty string or an integer, found {doc_id!r}", path=path,
                            line=line_no)
        else:
            doc_id = str(doc_id)
            if doc_id in first_line:
                raise DataError(f"id {doc_id!r} repeats the id of line {first_line[doc_id]}", path=path,
                                line=line_no)
            first_line[doc_id] = line_no
        docs.texts.append(text)
        docs.ids.append(doc_id)  # type: ignore[union-attr]
        docs.metadata.append({**meta, **extra})  # type: ignore[union-attr]
        docs.lines.append(line_no)  # type: ignore[union-attr]
    if not docs.texts:
        raise DataError("file is empty: no documents found", path=path)
    if no_id and first_line:
        raise DataError(f"{len(no_id)} of {len(docs.texts)} lines lack an 'id' (line {no_id[0]} is the first): "
                        f"give every line an id or none", path=path, line=no_id[0])
    if no_id:
        docs.ids = None
    return docs


def read_documents(path: str) -> Documents:
    """The documents of a text or JSONL input file; bad input raises DataError naming the file and line."""
    from contrastkit.data import iter_examples
    from contrastkit.data.readers import check_file, infer_format

    check_file(path)
    fmt = infer_format(path) if Path(path).suffix else "text"
    if fmt == "jsonl":
        return _read_jsonl(path)
    if fmt != "text":
        raise ConfigError(f"{path}: index input must be a text file (one document per line) or JSONL")
    return Documents(path, [ex.texts[0] for ex in iter_examples(path, format="text")])


def _model_name(model: str) -> str:
    """What the store records: an absolute path for a local model, else the name as given."""
    return str(Path(model).resolve()) if Path(model).exists() else model


def _encoder(model: str) -> Any:
    from contrastkit.encoders import Encoder

    return Encoder.from_pretrained(model)


def _encode(enc: Any, docs: Documents, batch_size: int, progress: bool) -> Any:
    return enc.encode(docs.texts, batch_size=batch_size, show_progress=progress)


def _cmd_build(args: argparse.Namespace) -> int:
    from contrastkit.search import Store
    from contrastkit.search.store import model_fingerprint

    params = {}
    for item in args.param:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--param expects KEY=VALUE, got {item!r}")
        try:
            params[key] = json.loads(value)
        except json.JSONDecodeError:
            params[key] = value
    store_dir = Path(args.store)
    if store_dir.exists() and (not store_dir.is_dir() or any(store_dir.iterdir())):
        raise ConfigError(f"{store_dir}: already exists and is not an empty directory; pick a new --store "
                          f"(or use 'contrastkit index add' to add to a store)")
    docs = read_documents(args.input)  # bad input fails before any model is loaded or file written
    enc = _encoder(args.model)
    emb = _encode(enc, docs, args.batch_size, args.progress)
    store = Store.build(store_dir, enc.dim, args.kind, texts=docs.texts, embeddings=emb, ids=docs.ids,
                        metadata=docs.metadata, metric=args.metric, index_params=params,
                        model=_model_name(args.model), fingerprint=model_fingerprint(enc), backend=args.backend)
    with store:
        print(f"built {args.backend} {args.kind} store {args.store} with {len(store)} documents (dim {enc.dim})")
    return 0


def _open(args: argparse.Namespace) -> tuple[Any, Any]:
    from contrastkit.search import Store
    from contrastkit.search.store import model_fingerprint

    store = Store.open(args.store)
    try:
        model = args.model or store.model
        if not model:
            raise ConfigError(f"{args.store}: the store records no model; pass --model")
        enc = _encoder(model)
        store.check_model(model, model_fingerprint(enc), force=args.force)
        if store.fingerprint is None:
            print(f"warning: {args.store} records no model fingerprint (built by an older contrastkit); "
                  f"cannot check that {model} built it", file=sys.stderr)
    except BaseException:
        store.close()
        raise
    store.encoder = lambda texts: enc.encode(texts)
    return store, enc


def _cmd_add(args: argparse.Namespace) -> int:
    docs = read_documents(args.input)
    store, enc = _open(args)
    with store:
        if docs.ids is not None:
            taken = {d.id for d in store.get(docs.ids) if d is not None}
            if taken:
                line = next(n for i, n in zip(docs.ids, docs.lines or []) if i in taken)
                raise DataError(f"{len(taken)} id(s) already in the store {args.store}, e.g. "
                                f"{sorted(taken)[:5]}; delete them first", path=docs.path, line=line)
        emb = _encode(enc, docs, args.batch_size, args.progress)
        store.add(docs.texts, emb, ids=docs.ids, metadata=docs.metadata)  # one transaction
        print(f"added {len(docs.texts)} documents; the store holds {len(store)}")
    return 0


def _cmd_delete(args: argparse.Namespace) -> int:
    from contrastkit.data.readers import check_file
    from contrastkit.search import Store

    ids = list(args.ids or [])
    if args.ids_file:
        check_file(args.ids_file)
        try:
            lines = Path(args.ids_file).read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as e:
            raise DataError(f"cannot read ids: {e}", path=args.ids_file) from None
        ids += [line.strip() for line in lines if line.strip()]
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


def _positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def register(sub: argparse._SubParsersAction, groups: dict[str, argparse._SubParsersAction]) -> None:
    """Add ``index build | add | delete | search``."""
    from contrastkit.search import INDEX_KINDS, METRICS

    fmt = argparse.ArgumentDefaultsHelpFormatter
    p = sub.add_parser("index", help="build and query a vector store (SQLite + FAISS/exact index)")
    isub = p.add_subparsers(dest="index_command", required=True)

    b = isub.add_parser("build", help="create a store from a text or JSONL file (atomically)", formatter_class=fmt)
    b.add_argument("--model", required=True, help="model dir, hub name or alias (recorded in the store)")
    b.add_argument("--input", required=True,
                   help="text file (one document per line) or JSONL (text, id, metadata; other keys become metadata)")
    b.add_argument("--store", required=True, help="new store directory (must not exist, or be empty)")
    b.add_argument("--kind", choices=INDEX_KINDS, default="exact", help="vector index kind")
    b.add_argument("--metric", choices=METRICS, default="cosine", help="similarity the index ranks by")
    b.add_argument("--backend", choices=["sqlite", "lancedb"], default="sqlite",
                   help="sqlite: SQLite rows + the --kind index (default); lancedb: an embedded LanceDB table, "
                        "exact search only (pip install 'contrastkit[vectordb]')")
    b.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                   help="index parameter, e.g. --param ef_search=256 (repeatable)")
    b.add_argument("--batch-size", type=_positive_int, default=64, help="texts per model forward pass")
    b.add_argument("--no-progress", dest="progress", action="store_false", help="hide the encoding progress bar")
    b.set_defaults(func=_cmd_build)

    a = isub.add_parser("add", help="add documents from a file to a store (one transaction)", formatter_class=fmt)
    a.add_argument("--store", required=True, help="store directory")
    a.add_argument("--input", required=True, help="text or JSONL file, as for 'index build'")
    a.add_argument("--model", help="override the model recorded in the store")
    a.add_argument("--force", action="store_true",
                   help="add with --model even when its fingerprint differs from the store's model (else refused)")
    a.add_argument("--batch-size", type=_positive_int, default=64, help="texts per model forward pass")
    a.add_argument("--no-progress", dest="progress", action="store_false", help="hide the encoding progress bar")
    a.set_defaults(func=_cmd_add)

    d = isub.add_parser("delete", help="delete documents by id", formatter_class=fmt)
    d.add_argument("--store", required=True, help="store directory")
    d.add_argument("--ids", nargs="+", help="ids to delete")
    d.add_argument("--ids-file", help="file with one id per line")
    d.set_defaults(func=_cmd_delete)

    s = isub.add_parser("search", help="search a store with query texts; prints one JSON line per query",
                        formatter_class=fmt)
    s.add_argument("--store", required=True, help="store directory")
    s.add_argument("--query", action="append", required=True, help="query text (repeatable)")
    s.add_argument("-k", type=_positive_int, default=10, help="hits per query (at most the store's size)")
    s.add_argument("--where", action="append", default=[], metavar="KEY=VALUE",
                   help="metadata filter; VALUE is JSON when it parses (5, true, null), else a string")
    s.add_argument("--model", help="override the model recorded in the store")
    s.add_argument("--force", action="store_true",
                   help="use --model even when its fingerprint differs from the store's model (else refused)")
    s.set_defaults(func=_cmd_search)
