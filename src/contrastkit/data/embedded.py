"""Embedded default data: text that the package registries ship, usable offline.

Names accepted by :func:`embedded_pairs` (``(anchor, positive)`` pairs):

* ``bible`` -- every verse of the 66-book Protestant canon as a pair (King James
  Version, World English Bible): 31,095 natural paraphrase pairs (archaic -> modern
  English). The KJV and WEB texts are aligned by verse reference; verses empty in
  either translation (e.g. Acts 8:37 in the WEB) are dropped.
* ``bible-train`` -- the pairs of the training books (every book not in
  :data:`HELDOUT_BOOKS`).
* ``bible-heldout`` -- the pairs of the held-out books :data:`HELDOUT_BOOKS`
  (Ruth, Job, Proverbs, Acts, Hebrews, Revelation: 3,781 verses). The split is by
  book, so no verse of a held-out book is ever a training pair. The held-out books
  avoid the large parallel passages of the canon (Kings/Chronicles, the synoptic
  gospels), so their text is not seen in training in another book's words either.

Names accepted by :func:`embedded_corpus` (single sentences):

* ``bible-kjv`` / ``bible-web`` -- one translation's verses (all books);
* ``bible`` -- both translations (62k sentences);
* ``bible-train`` -- both translations, training books only;
* ``wordnet`` -- WordNet 3.0 glosses and example sentences from Debian's
  ``wordnet-base`` data files (``/usr/share/wordnet/data.*``), when installed.

The Bible text comes from the Debian packages ``sword-text-kjv`` and
``sword-text-web`` (public-domain texts), read with ``diatheke`` (package
``diatheke``); ``scripts/install_system_deps.sh`` installs them. The first call
extracts both translations (about 5 s) and caches the aligned pairs as JSONL under
``contrastkit.encoders.backbones.cache_dir()/embedded/``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ..errors import DataError

__all__ = [
    "BIBLE_MODULES",
    "CORPUS_NAMES",
    "HELDOUT_BOOKS",
    "PAIR_NAMES",
    "Verse",
    "bible_verses",
    "clean_osis",
    "diatheke_verses",
    "embedded_corpus",
    "embedded_pairs",
    "parse_diatheke",
    "wordnet_sentences",
]

PAIR_NAMES: tuple[str, ...] = ("bible", "bible-train", "bible-heldout")
"""Names :func:`embedded_pairs` accepts."""

CORPUS_NAMES: tuple[str, ...] = ("bible", "bible-kjv", "bible-web", "bible-train", "wordnet")
"""Names :func:`embedded_corpus` accepts."""

HELDOUT_BOOKS: tuple[str, ...] = ("Ruth", "Job", "Proverbs", "Acts", "Hebrews", "Revelation of John")
"""Books held out of training (book names as diatheke prints them)."""

# translation -> (preferred SWORD module names, Debian package, description prefix in diatheke's module list)
BIBLE_MODULES: dict[str, tuple[tuple[str, ...], str, str]] = {
    "kjv": (("engKJV2006eb", "KJV"), "sword-text-kjv", "King James"),
    "web": (("engWEB2015eb", "WEB", "engWEBBE2015eb"), "sword-text-web", "World English Bible"),
}

_CACHE_VERSION = 1
_INSTALL_HINT = ("install the Debian packages with scripts/install_system_deps.sh "
                 "(apt-get install diatheke sword-text-kjv sword-text-web)")


@dataclass(frozen=True)
class Verse:
    """One verse in both translations."""

    book: str
    chapter: int
    verse: int
    kjv: str
    web: str

    @property
    def ref(self) -> str:
        """Reference such as ``Genesis 1:1``."""
        return f"{self.book} {self.chapter}:{self.verse}"


# ----------------------------------------------------------------------------- OSIS cleaning
_TITLE = re.compile(r"<title\b[^>]*>.*?</title>", re.S)
_NOTE = re.compile(r"<note\b[^>]*>.*?</note>", re.S)
_BOOK_END = re.compile(r"<div\b[^>]*\beID=\"[^\"]*\"[^>]*\btype=\"book\"[^>]*/>.*", re.S)
_TAG_RUN = re.compile(r"(?:<[^>]*>)+")
_BLOCK_TAG = re.compile(r"<(?:/?(?:l|lg|lb|div|p|chapter|milestone|list|item|br|table|row|cell)\b)")
_WORD_OPEN = re.compile(r"<(?:w|q|transChange|divineName|name|seg|foreign|hi)\b[^/>]*>")
_REF = re.compile(r"^\s*((?:[1-4]|I{1,3}|IV)? ?[A-Z][A-Za-z ()]*?) (\d+):(\d+):(?: |$)")
_MODULE_LINE = re.compile(r"^\([A-Za-z0-9_]+\)$")


def clean_osis(raw: str) -> str:
    """Plain text of one verse of diatheke's OSIS output: no tags, titles, notes, Strong's or pilcrows."""
    s = _NOTE.sub("", _TITLE.sub(" ", raw))

    def tags(m: re.Match[str]) -> str:
        run = m.group(0)
        if _BLOCK_TAG.search(run):
            return " "
        left = s[m.start() - 1] if m.start() > 0 else " "
        right = s[m.end()] if m.end() < len(s) else " "
        # Between two letters a tag run either splits one word (KJV "tha</w>t") or, when it
        # opens a new word element, separates two words (WEB "God</w><w ...>created").
        if left.isalpha() and right.isalpha() and _WORD_OPEN.search(run):
            return " "
        return ""

    s = _TAG_RUN.sub(tags, s)
    s = s.replace("\u00b6", " ").replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
    s = re.sub(r"\s+", " ", s).strip()
    s = re.sub(r"\s+([,;:.!?])", r"\1", s)
    s = re.sub(r"([,;])(?=[A-Za-z])", r"\1 ", s)
    return s


def parse_diatheke(output: str) -> dict[tuple[str, int, int], str]:
    """Parse diatheke's default (OSIS) output of a verse range into ``{(book, chapter, verse): text}``."""
    raw: dict[tuple[str, int, int], list[str]] = {}
    cur: tuple[str, int, int] | None = None
    for line in output.splitlines():
        if _MODULE_LINE.match(line.strip()):
            break  # the trailing "(ModuleName)" line
        line = _BOOK_END.sub("", _TITLE.sub(" ", line))
        bare = re.sub(r"<[^>]*>", "", line)
        m = _REF.match(bare)
        if m:
            cur = (m.group(1).strip(), int(m.group(2)), int(m.group(3)))
            prefix = f"{m.group(1)} {m.group(2)}:{m.group(3)}:"
            at = line.find(prefix)
            raw[cur] = [line[at + len(prefix):] if at >= 0 else bare[m.end():]]
        elif cur is not None:
            raw[cur].append(line)  # a verse spread over several lines (poetry)
    return {key: clean_osis(" ".join(parts)) for key, parts in raw.items()}


# ----------------------------------------------------------------------------- diatheke
def _diatheke() -> str:
    exe = shutil.which("diatheke")
    if exe is None:
        raise DataError(f"embedded 'bible' data needs the 'diatheke' program (Debian package 'diatheke'); "
                        f"{_INSTALL_HINT}")
    return exe


def _module_list(exe: str) -> list[tuple[str, str]]:
    out = subprocess.run([exe, "-b", "system", "-k", "modulelist"], capture_output=True, text=True,
                         timeout=60, check=False).stdout
    mods = []
    for line in out.splitlines():
        if " : " in line:
            name, desc = line.split(" : ", 1)
            mods.append((name.strip(), desc.strip()))
    return mods


def _find_module(translation: str, modules: list[tuple[str, str]]) -> str:
    names, package, desc_prefix = BIBLE_MODULES[translation]
    have = {n for n, _ in modules}
    for n in names:
        if n in have:
            return n
    for n, desc in modules:
        if desc.startswith(desc_prefix):
            return n
    raise DataError(f"the SWORD module of the {desc_prefix} Bible is not installed (Debian package "
                    f"'{package}'); {_INSTALL_HINT}")


def diatheke_verses(translation: str, key: str) -> dict[tuple[str, int, int], str]:
    """Clean text of the verses ``key`` (e.g. ``"John 3:16-18"``) of one translation ('kjv' or 'web')."""
    if translation not in BIBLE_MODULES:
        raise DataError(f"unknown translation '{translation}'; known: {', '.join(BIBLE_MODULES)}")
    exe = _diatheke()
    module = _find_module(translation, _module_list(exe))
    proc = subprocess.run([exe, "-b", module, "-k", key], capture_output=True, text=True, encoding="utf-8",
                          timeout=600, check=False)
    if proc.returncode != 0:
        raise DataError(f"diatheke -b {module} -k {key} failed ({proc.returncode}): {proc.stderr.strip()[:500]}")
    return parse_diatheke(proc.stdout)


def _extract_bible() -> list[Verse]:
    """Run diatheke on both translations (in parallel) and align the verses by reference."""
    exe = _diatheke()
    modules = _module_list(exe)
    names = {t: _find_module(t, modules) for t in ("kjv", "web")}
    procs = {t: subprocess.Popen([exe, "-b", mod, "-k", "Gen 1:1-Rev 22:21"], stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True, encoding="utf-8")
             for t, mod in names.items()}
    texts: dict[str, dict[tuple[str, int, int], str]] = {}
    for t, proc in procs.items():
        out, err = proc.communicate(timeout=600)
        if proc.returncode != 0:
            raise DataError(f"diatheke -b {names[t]} failed ({proc.returncode}): {err.strip()[:500]}")
        texts[t] = parse_diatheke(out)
    kjv, web = texts["kjv"], texts["web"]
    verses = [Verse(book, ch, v, text, web[(book, ch, v)]) for (book, ch, v), text in kjv.items()
              if text and web.get((book, ch, v))]
    if len(verses) < 30000:
        raise DataError(f"diatheke gave only {len(verses)} aligned verses (modules {names['kjv']}, "
                        f"{names['web']}); expected about 31,000")
    return verses


def _cache_file() -> Path:
    from ..encoders.backbones import cache_dir

    return cache_dir() / "embedded" / f"bible-kjv-web-v{_CACHE_VERSION}.jsonl"


def bible_verses(*, refresh: bool = False) -> list[Verse]:
    """All aligned (KJV, WEB) verses in canonical order, extracted once and cached as JSONL."""
    path = _cache_file()
    if path.is_file() and not refresh:
        out = []
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                r = json.loads(line)
                out.append(Verse(r["book"], r["chapter"], r["verse"], r["kjv"], r["web"]))
        return out
    verses = _extract_bible()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as fh:
        for v in verses:
            fh.write(json.dumps({"ref": v.ref, "book": v.book, "chapter": v.chapter, "verse": v.verse,
                                 "kjv": v.kjv, "web": v.web}, ensure_ascii=False) + "\n")
    tmp.replace(path)
    return verses


def _split(verses: list[Verse], split: str) -> list[Verse]:
    if split == "all":
        return verses
    held = set(HELDOUT_BOOKS)
    return [v for v in verses if (v.book in held) == (split == "heldout")]


# ----------------------------------------------------------------------------- WordNet
_WORDNET_DIRS = (Path("/usr/share/wordnet"), Path("/usr/share/wordnet/dict"))


def _wordnet_files() -> list[Path]:
    for d in _WORDNET_DIRS:
        files = [d / f"data.{pos}" for pos in ("noun", "verb", "adj", "adv")]
        if all(f.is_file() for f in files):
            return files
    return []


def wordnet_sentences() -> list[str]:
    """WordNet 3.0 glosses and quoted example sentences from Debian's ``wordnet-base`` files (deduplicated)."""
    files = _wordnet_files()
    if not files:
        raise DataError("embedded 'wordnet' needs the Debian package 'wordnet-base' "
                        "(apt-get install wordnet-base); its data files were not found in "
                        + ", ".join(str(d) for d in _WORDNET_DIRS))
    seen: dict[str, None] = {}
    for f in files:
        with open(f, encoding="latin-1") as fh:
            for line in fh:
                if line.startswith(" ") or " | " not in line:
                    continue  # licence header
                gloss = line.split(" | ", 1)[1].strip()
                examples = re.findall(r'"([^"]+)"', gloss)
                definition = re.split(r';\s*"', gloss, maxsplit=1)[0].strip().rstrip(";").strip()
                for text in (definition, *examples):
                    text = " ".join(text.split())
                    if len(text.split()) >= 3:
                        seen.setdefault(text, None)
    return list(seen)


# ----------------------------------------------------------------------------- public API
def embedded_pairs(name: str) -> list[tuple[str, str]]:
    """(KJV, WEB) verse pairs of an embedded pair set (see the module docstring for names)."""
    splits = {"bible": "all", "bible-train": "train", "bible-heldout": "heldout"}
    if name not in splits:
        raise DataError(f"unknown embedded pair set '{name}'; known: {', '.join(PAIR_NAMES)}")
    return [(v.kjv, v.web) for v in _split(bible_verses(), splits[name])]


def _iter_corpus(name: str) -> Iterator[str]:
    if name == "wordnet":
        yield from wordnet_sentences()
        return
    verses = bible_verses()
    if name == "bible-kjv":
        yield from (v.kjv for v in verses)
    elif name == "bible-web":
        yield from (v.web for v in verses)
    else:
        for v in _split(verses, "train" if name == "bible-train" else "all"):
            yield v.kjv
            yield v.web


def embedded_corpus(name: str) -> list[str]:
    """Single sentences of an embedded corpus (see the module docstring for names)."""
    if name not in CORPUS_NAMES:
        raise DataError(f"unknown embedded corpus '{name}'; known: {', '.join(CORPUS_NAMES)}")
    return list(_iter_corpus(name))
