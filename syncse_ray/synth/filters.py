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


def triplet_drop_reason(anchor: str, positive: str, hard_negative: str, *, echo_texts: frozenset[str],
                        min_words: int, max_words: int) -> str | None:
    """Why a parsed (anchor, positive, hard negative) triplet is unusable, or None to keep it."""
    outputs = (positive, hard_negative)
    norms = [normalize(t) for t in outputs]
    if not all(norms):
        return EMPTY
    if any(is_refusal(t) for t in outputs):
        return REFUSAL
    if any(n in echo_texts for n in norms):
        return PROMPT_ECHO
    if normalize(anchor) in norms:
        return ANCHOR_COPY
    if norms[0] == norms[1]:
        return POSITIVE_EQUALS_NEGATIVE
    counts = [word_count(t) for t in outputs]
    if min(counts) < min_words:
        return TOO_SHORT
    if max(counts) > max_words:
        return TOO_LONG
    return None


class Deduplicator:
    """Exact duplicates across everything it has seen (64-bit hashes of normalized text) and near duplicates
    (Jaccard of word 3-grams >= threshold) within the current window, found through an n-gram index."""

    def __init__(self, near_threshold: float):
        self.near_threshold = near_threshold
        self._seen: set[int] = set()
        self._window: list[set] = []
        self._index: dict[tuple, list[int]] = defaultdict(list)

    def new_window(self) -> None:
        """Forget near-duplicate candidates (bounded memory on long inputs); exact hashes are kept."""
        self._window.clear()
        self._index.clear()

    def check(self, text: str) -> str | None:
        """DUPLICATE / NEAR_DUPLICATE if an earlier text matches, else None (and remember this one)."""
        h = text_hash(text)
        if h in self._seen:
            return DUPLICATE
        grams = word_ngrams(text)
        shared: dict[int, int] = defaultdict(int)
        for g in grams:
            for j in self._index.get(g, ()):
                shared[j] += 1
        for j, n in shared.items():
            # Jaccard >= t needs |A & B| >= t * |A|; only those candidates are scored.
            if n >= self.near_threshold * len(grams) and jaccard(grams, self._window[j]) >= self.near_threshold:
                return NEAR_DUPLICATE
        self._seen.add(h)
        k = len(self._window)
        self._window.append(grams)
        for g in grams:
            self._index[g].append(k)
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
