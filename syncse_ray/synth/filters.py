"""Quality filters: each rejection has a named reason, so drops can be counted and inspected. Pure Python."""

from __future__ import annotations

import hashlib
import re
from collections import defaultdict

# Reasons, in the order they are checked. Input-level reasons are decided before any LLM call.
EMPTY_INPUT = "empty_input"
DUPLICATE = "duplicate"
NEAR_DUPLICATE = "near_duplicate"
TOO_LONG_FOR_CONTEXT = "too_long_for_context"
EMPTY = "empty"
REFUSAL = "refusal"
PROMPT_ECHO = "prompt_echo"
ANCHOR_COPY = "anchor_copy"
POSITIVE_EQUALS_NEGATIVE = "positive_equals_negative"
TOO_SHORT = "too_short"
TOO_LONG = "too_long"
SENTENCE_TOO_LONG = "sentence_too_long"  # scratch: a written sentence over max_sentence_words
NO_SENTENCES = "no_sentences"  # scratch: a writing request whose answer held no usable sentence
EVAL_OVERLAP = "eval_overlap"  # matches an evaluation sentence (decontamination)

_PUNCT = re.compile(r"[^\w\s]", re.UNICODE)
_SPACE = re.compile(r"\s+")
_REFUSAL = re.compile(
    r"^(?:i'?m sorry|sorry,|i apologi[sz]e|i (?:cannot|can ?not|can't|am unable|won't|will not)|"
    r"as an ai|as a language model|i'?m (?:just )?an ai|unfortunately,? i)"
    r"|\b(?:as an ai(?: language)? model|i cannot (?:fulfill|complete|help|provide)|"
    r"i'?m not able to (?:help|provide|complete))\b",
    re.IGNORECASE,
)


def normalize(text: str) -> str:
    """Lower case, punctuation removed, whitespace collapsed: the form copies and duplicates are compared in."""
    return _SPACE.sub(" ", _PUNCT.sub(" ", text.lower())).strip()


def word_count(text: str) -> int:
    return len(text.split())


def text_hash(text: str) -> int:
    """64-bit hash of the normalized text (a set of these dedupes millions of rows in little memory)."""
    return int.from_bytes(hashlib.blake2b(normalize(text).encode(), digest_size=8).digest(), "big")


def word_ngrams(text: str, n: int = 3) -> set[tuple[str, ...]]:
    words = normalize(text).split()
    if len(words) < n:
        return {tuple(words)} if words else set()
    return {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}


def jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


def is_refusal(text: str) -> bool:
    return bool(_REFUSAL.search(text))


def candidate_drop_reason(anchor: str, text: str, *, echo_texts: frozenset[str], min_words: int,
                          max_words: int) -> str | None:
    """Why one parsed candidate (positive or hard negative) is unusable, or None if it passes."""
    norm = normalize(text)
    if not norm:
        return EMPTY
    if is_refusal(text):
        return REFUSAL
    if norm in echo_texts:
        return PROMPT_ECHO
    if norm == normalize(anchor):
        return ANCHOR_COPY
    words = word_count(text)
    if words < min_words:
        return TOO_SHORT
    if words > max_words:
        return TOO_LONG
    return None


class NgramIndex:
    """Texts indexed by their word n-grams; `match` finds an indexed text whose n-gram Jaccard with a query
    is >= threshold, scoring only candidates that share enough n-grams to reach it."""

    def __init__(self, threshold: float, n: int = 3):
        self.threshold, self.n = threshold, n
        self._grams: list[set] = []
        self._index: dict[tuple, list[int]] = defaultdict(list)

    def __len__(self) -> int:
        return len(self._grams)

    def clear(self) -> None:
        self._grams.clear()
        self._index.clear()

    def add(self, text: str) -> None:
        grams = word_ngrams(text, self.n)
        k = len(self._grams)
        self._grams.append(grams)
        for g in grams:
            self._index[g].append(k)

    def match(self, text: str) -> bool:
        grams = word_ngrams(text, self.n)
        shared: dict[int, int] = defaultdict(int)
        for g in grams:
            for j in self._index.get(g, ()):
                shared[j] += 1
        # Jaccard >= t needs |A & B| >= t * |A|; only those candidates are scored.
        return any(n >= self.threshold * len(grams) and jaccard(grams, self._grams[j]) >= self.threshold
                   for j, n in shared.items())


class Deduplicator:
    """Exact duplicates across everything it has seen (64-bit hashes of normalized text) and near duplicates
    (Jaccard of word 3-grams >= threshold) within the current window."""

    def __init__(self, near_threshold: float):
        self.near_threshold = near_threshold
        self._seen: set[int] = set()
        self._window = NgramIndex(near_threshold)

    def new_window(self) -> None:
        """Forget near-duplicate candidates (bounded memory on long inputs); exact hashes are kept."""
        self._window.clear()

    def check(self, text: str) -> str | None:
        """DUPLICATE / NEAR_DUPLICATE if an earlier text matches, else None (and remember this one)."""
        h = text_hash(text)
        if h in self._seen:
            return DUPLICATE
        if self._window.match(text):
            return NEAR_DUPLICATE
        self._seen.add(h)
        self._window.add(text)
        return None


def distinct_n(texts: list[str], n: int = 2) -> float:
    """Distinct n-grams over all n-grams (Li et al. 2016): 1.0 means no n-gram repeats."""
    total, seen = 0, set()
    for t in texts:
        words = normalize(t).split()
        grams = [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]
        total += len(grams)
        seen.update(grams)
    return len(seen) / total if total else 0.0


def duplicate_rate(texts: list[str]) -> float:
    """Share of texts whose normalized form already occurred earlier in the list."""
    seen, dups = set(), 0
    for t in texts:
        h = normalize(t)
        dups += h in seen
        seen.add(h)
    return dups / len(texts) if texts else 0.0
