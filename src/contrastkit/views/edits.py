"""Discrete text edits that make a positive view of a sentence (or, for DeCLUTR, of a document).

Every edit is a pure function ``(text, rng, **params) -> str``: all randomness comes from the
``random.Random`` passed in, so a seeded ``rng`` gives the same output every time. Words are
whitespace-split and re-joined with single spaces; words an edit does not touch keep their exact
text (no lower-casing, punctuation kept). Empty or whitespace-only input raises ``ValueError``,
and no edit returns an empty string.

Sources: word/span deletion, reordering and synonym substitution are CLEAR's augmentations (Wu et
al., 2020); word repetition is ESimCSE's (Wu et al., 2022); crop is SimCSE's ablation (Gao et al.,
2021); span sampling is DeCLUTR's (Giorgi et al., 2021). Synonyms come from the WordNet 3.0
database files of the Debian package ``wordnet-base`` (read directly, offline; no NLTK).
"""

from __future__ import annotations

import functools
import os
import random
import re
from collections.abc import Callable
from pathlib import Path

WORDNET_ENV = "CONTRASTKIT_WORDNET_DIR"
DEFAULT_WORDNET_DIR = "/usr/share/wordnet"
_POS = ("noun", "verb", "adj", "adv")

# Function words never substituted: WordNet lists many of them as rare nouns ("a" -> "vitamin A",
# "in" -> "inch"), which would make nonsense views.
_STOPWORDS = frozenset("""
a about above after again against all am an and any are as at be because been before being below
between both but by can could did do does doing down during each few for from further had has have
having he her here hers herself him himself his how i if in into is it its itself just me more most
my myself no nor not now of off on once only or other our ours ourselves out over own same she should
so some such than that the their theirs them themselves then there these they this those through to
too under until up very was we were what when where which while who whom why will with would you
your yours yourself yourselves
""".split())

_WORD_RE = re.compile(r"^(\W*)(.*?)(\W*)$", re.UNICODE)


class WordNetUnavailableError(RuntimeError):
    """WordNet database files are missing (install the Debian package ``wordnet-base``)."""


# -- helpers -------------------------------------------------------------------------------------
def _words(text: str) -> list[str]:
    if not isinstance(text, str):
        raise TypeError(f"expected a str, got {type(text).__name__}")
    words = text.split()
    if not words:
        raise ValueError("cannot edit an empty text")
    return words


def _check_prob(name: str, value: float, *, upper_inclusive: bool = True) -> None:
    ok = 0.0 <= value <= 1.0 if upper_inclusive else 0.0 <= value < 1.0
    if not ok:
        raise ValueError(f"{name} must be in [0, 1{']' if upper_inclusive else ')'}, got {value}")


def _edit_count(n: int, ratio: float) -> int:
    """Words an edit of ``ratio`` removes from ``n``: round(ratio*n), at least 1 when ratio > 0, at most n-1."""
    if ratio <= 0 or n <= 1:
        return 0
    return min(n - 1, max(1, round(ratio * n)))


# -- CLEAR ---------------------------------------------------------------------------------------
def word_deletion(text: str, rng: random.Random, p: float = 0.1) -> str:
    """Delete each word with probability ``p``, keeping at least one (CLEAR, Wu et al., 2020)."""
    _check_prob("p", p)
    words = _words(text)
    kept = [w for w in words if rng.random() >= p]
    if not kept:
        kept = [words[rng.randrange(len(words))]]
    return " ".join(kept)


def span_deletion(text: str, rng: random.Random, ratio: float = 0.1) -> str:
    """Delete one contiguous span of about ``ratio`` of the words (CLEAR, Wu et al., 2020)."""
    _check_prob("ratio", ratio, upper_inclusive=False)
    words = _words(text)
    k = _edit_count(len(words), ratio)
    start = rng.randrange(len(words) - k + 1)
    return " ".join(words[:start] + words[start + k:])


def reorder(text: str, rng: random.Random, ratio: float = 0.1) -> str:
    """Swap max(1, round(ratio*n/2)) random pairs of words (CLEAR's reordering, Wu et al., 2020)."""
    _check_prob("ratio", ratio)
    words = _words(text)
    n = len(words)
    if n < 2 or ratio == 0:
        return " ".join(words)
    pairs = min(n // 2, max(1, round(ratio * n / 2)))
    positions = rng.sample(range(n), 2 * pairs)
    for i, j in zip(positions[::2], positions[1::2]):
        words[i], words[j] = words[j], words[i]
    return " ".join(words)


class WordNet:
    """Minimal lazy, cached reader of the WordNet 3.0 ``index.*``/``data.*`` files (Miller, 1995)."""

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = Path(root or os.environ.get(WORDNET_ENV) or DEFAULT_WORDNET_DIR)
        self._index: dict[str, dict[str, list[int]]] = {}
        self._synset_cache: dict[tuple[str, int], list[str]] = {}

    def _path(self, kind: str, pos: str) -> Path:
        path = self.root / f"{kind}.{pos}"
        if not path.is_file():
            raise WordNetUnavailableError(
                f"WordNet file {path} not found: install the Debian package 'wordnet-base' "
                f"(apt-get install -y wordnet-base) or point ${WORDNET_ENV} at a WordNet 3.0 dict directory")
        return path

    def _load_index(self, pos: str) -> dict[str, list[int]]:
        if pos not in self._index:
            index: dict[str, list[int]] = {}
            with self._path("index", pos).open(encoding="utf-8", errors="replace") as fh:
                for line in fh:
                    if line.startswith(" "):  # license header
                        continue
                    f = line.split()
                    # lemma pos synset_cnt p_cnt [ptr...] sense_cnt tagsense_cnt offset*synset_cnt
                    n_synsets = int(f[2])
                    index[f[0]] = [int(o) for o in f[len(f) - n_synsets:]]
            self._index[pos] = index
        return self._index[pos]

    def _synset_words(self, pos: str, offset: int) -> list[str]:
        key = (pos, offset)
        if key not in self._synset_cache:
            with self._path("data", pos).open("rb") as fh:
                fh.seek(offset)
                f = fh.readline().decode("utf-8", errors="replace").split()
            n = int(f[3], 16)  # synset_offset lex_filenum ss_type w_cnt (word lex_id)*w_cnt ...
            words = [re.sub(r"\([a-z]+\)$", "", w) for w in f[4:4 + 2 * n:2]]  # drop adj markers "(a)"
            self._synset_cache[key] = [w.replace("_", " ") for w in words]
        return self._synset_cache[key]

    def synonyms(self, lemma: str, senses: int = 1) -> list[str]:
        """Words sharing one of the first ``senses`` synsets of each part of speech of ``lemma``."""
        key = lemma.lower().replace(" ", "_")
        out: list[str] = []
        for pos in _POS:
            for offset in self._load_index(pos).get(key, [])[:senses]:
                for w in self._synset_words(pos, offset):
                    if w.lower() != lemma.lower() and w not in out:
                        out.append(w)
        return out


@functools.lru_cache(maxsize=4)
def get_wordnet(root: str | None = None) -> WordNet:
    """The shared WordNet reader for ``root`` (default ``$CONTRASTKIT_WORDNET_DIR`` or /usr/share/wordnet)."""
    return WordNet(root)


def _match_case(src: str, repl: str) -> str:
    if len(src) > 1 and src.isupper():
        return repl.upper()
    if src[:1].isupper():
        return repl[:1].upper() + repl[1:]
    return repl


def synonym_substitution(text: str, rng: random.Random, p: float = 0.1, senses: int = 1,
                         wordnet: WordNet | None = None) -> str:
    """Replace each content word that has WordNet synonyms, with probability ``p`` (CLEAR, Wu et al., 2020).

    A synonym comes from the word's first ``senses`` synsets per part of speech; stop words and
    words absent from WordNet as written (no lemmatisation) are left alone; surrounding punctuation
    and capitalisation are kept. Multi-word synonyms ("motor vehicle") add words.
    """
    _check_prob("p", p)
    words = _words(text)
    wn = wordnet or get_wordnet()
    out = []
    for w in words:
        m = _WORD_RE.match(w)
        pre, core, post = (m.group(1), m.group(2), m.group(3)) if m else ("", w, "")
        if (len(core) > 1 and core.lower() not in _STOPWORDS and rng.random() < p
                and (cands := wn.synonyms(core, senses))):
            out.append(pre + _match_case(core, rng.choice(cands)) + post)
        else:
            out.append(w)
    return " ".join(out)


# -- ESimCSE, SimCSE -----------------------------------------------------------------------------
def word_repetition(text: str, rng: random.Random, dup_rate: float = 0.32) -> str:
    """Duplicate dup_len ~ U{0..max(2, int(dup_rate*n))} random words in place (ESimCSE, Wu et al., 2022).

    As in the paper, dup_len may be 0, so the output can equal the input.
    """
    _check_prob("dup_rate", dup_rate)
    words = _words(text)
    n = len(words)
    dup_len = rng.randint(0, max(2, int(dup_rate * n)))
    dup = set(rng.sample(range(n), min(dup_len, n)))
    out: list[str] = []
    for i, w in enumerate(words):
        out.append(w)
        if i in dup:
            out.append(w)
    return " ".join(out)


def crop(text: str, rng: random.Random, ratio: float = 0.1) -> str:
    """Keep a random contiguous run of n - max(1, round(ratio*n)) words (SimCSE's crop ablation, Gao et al., 2021)."""
    _check_prob("ratio", ratio, upper_inclusive=False)
    words = _words(text)
    keep = len(words) - _edit_count(len(words), ratio)
    start = rng.randrange(len(words) - keep + 1)
    return " ".join(words[start:start + keep])


# -- DeCLUTR -------------------------------------------------------------------------------------
def span_sampling(text: str, rng: random.Random, max_span_len: int = 512, min_span_len: int = 32,
                  strategy: str | None = None) -> tuple[str, str]:
    """Sample an (anchor, positive) pair of word spans from one document (DeCLUTR, Giorgi et al., 2021).

    Anchor length = int(Beta(4, 2) * (max - min) + min) (skewed long), positive length =
    int(Beta(2, 4) * (max - min) + min) (skewed short); the anchor starts uniformly in the
    document and the positive starts within [anchor_start - positive_len, anchor_end], so it
    overlaps, is adjacent to, or is subsumed by the anchor. ``strategy`` 'subsuming' or 'adjacent'
    forces one relation (as in the DeCLUTR code). DeCLUTR needs documents of >= 2 * max_span_len
    words; here shorter documents shrink the bounds instead: max_span_len <- max(1, n // 2),
    min_span_len <- min(min_span_len, max_span_len).
    """
    if strategy not in (None, "subsuming", "adjacent"):
        raise ValueError(f"strategy must be None, 'subsuming' or 'adjacent', got {strategy!r}")
    if min_span_len < 1 or max_span_len < min_span_len:
        raise ValueError(f"need 1 <= min_span_len <= max_span_len, got {min_span_len}, {max_span_len}")
    tokens = _words(text)
    n = len(tokens)
    hi = min(max_span_len, max(1, n // 2))
    lo = min(min_span_len, hi)
    a_len = int(rng.betavariate(4, 2) * (hi - lo) + lo)
    a_start = rng.randint(0, n - a_len)
    a_end = a_start + a_len
    if strategy == "subsuming":
        p_len = int(rng.betavariate(2, 4) * (a_len - lo) + lo)  # a_len >= lo: fits inside the anchor
        p_start = rng.randint(a_start, a_end - p_len)
    elif strategy == "adjacent":
        room = max(a_start, n - a_end)
        if room == 0:
            raise ValueError("document too short for an adjacent positive span")
        p_hi = min(hi, room)
        p_lo = min(lo, p_hi)
        p_len = int(rng.betavariate(2, 4) * (p_hi - p_lo) + p_lo)
        starts = ([a_start - p_len] if a_start - p_len >= 0 else []) + ([a_end] if a_end + p_len <= n else [])
        p_start = rng.choice(starts)
    else:
        p_len = int(rng.betavariate(2, 4) * (hi - lo) + lo)
        p_start = rng.randint(max(0, a_start - p_len), min(a_end, n - p_len))
    return " ".join(tokens[a_start:a_end]), " ".join(tokens[p_start:p_start + p_len])


TextEdit = Callable[..., str]

TEXT_EDITS: dict[str, TextEdit] = {
    "word_deletion": word_deletion,
    "span_deletion": span_deletion,
    "reorder": reorder,
    "synonym_substitution": synonym_substitution,
    "word_repetition": word_repetition,
    "crop": crop,
}
"""Single-text edits ``(text, rng, **params) -> str`` by registry name."""

PAIR_SAMPLERS: dict[str, Callable[..., tuple[str, str]]] = {"span_sampling": span_sampling}
"""Document -> (anchor, positive) samplers ``(text, rng, **params)`` by registry name."""

__all__ = ["PAIR_SAMPLERS", "TEXT_EDITS", "WordNet", "WordNetUnavailableError", "crop", "get_wordnet", "reorder",
           "span_deletion", "span_sampling", "synonym_substitution", "word_deletion", "word_repetition"]
