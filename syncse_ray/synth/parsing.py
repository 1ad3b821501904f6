"""Turning raw LLM answers into sentences: strip preambles, labels, numbering, quotes and trailing
explanations; split numbered lists (scratch). Pure Python."""

from __future__ import annotations

import re

_PREAMBLE = re.compile(
    r"^(?:sure|okay|ok|certainly|of course|absolutely|here(?:'s| is| are)|below is)\b[^:\n]{0,100}:\s*",
    re.IGNORECASE,
)
_LABEL = re.compile(
    r"^(?:output|answer|response|result|assistant|paraphrase[d]?|rewritten(?: sentence)?|rewrite|"
    r"edited(?: sentence)?|changed(?: sentence)?|modified(?: sentence)?|new sentence|sentence|"
    r"positive|hard negative|negative|contradiction|opposite|entailment|summary)\s*[:\-–]\s*",
    re.IGNORECASE,
)
_NUMBERING = re.compile(r"^\s*(?:\(?\d{1,3}[.):]|[-*•])\s+")
_TRAILING_NOTE = re.compile(
    r"\s*(?:\((?:note|this|here|i |changed|explanation|original|the )[^)]*\)"
    r"|\s(?:note|explanation|reasoning)\s*:.*)\s*$",
    re.IGNORECASE,
)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"“'(]?[A-Z0-9])")
_QUOTE_PAIRS = (('"', '"'), ("'", "'"), ("“", "”"), ("‘", "’"), ("«", "»"), ("`", "`"))


def _strip_quotes(text: str) -> str:
    text = text.strip()
    changed = True
    while changed and len(text) >= 2:
        changed = False
        for left, right in _QUOTE_PAIRS:
            if text.startswith(left) and text.endswith(right) and left not in text[1:-1]:
                text, changed = text[1:-1].strip(), True
    return text


def _clean_line(line: str) -> str:
    line = _NUMBERING.sub("", line.strip())
    line = _PREAMBLE.sub("", line)
    line = _LABEL.sub("", line)
    line = _TRAILING_NOTE.sub("", line)
    line = line.strip().strip("*").strip()  # markdown bold around an answer
    return _strip_quotes(line)


def _is_preamble_line(line: str) -> bool:
    """A line that only introduces the answer ("Sure! Here is a paraphrase:")."""
    stripped = line.strip()
    return stripped.endswith(":") and (_PREAMBLE.match(stripped) is not None or len(stripped.split()) <= 8)


def clean_generation(text: str) -> str:
    """The one sentence an annotation answer holds: its first real line, cleaned; '' if none."""
    for line in text.strip().splitlines():
        if not line.strip() or _is_preamble_line(line):
            continue
        return _clean_line(line)
    return ""


def split_sentence_list(text: str) -> list[str]:
    """Sentences of a scratch answer: the numbered items if there are any, else the sentences of every
    non-empty line (small models often answer with a paragraph instead of a list)."""
    lines = [ln for ln in text.strip().splitlines() if ln.strip() and not _is_preamble_line(ln)]
    numbered = [ln for ln in lines if _NUMBERING.match(ln)]
    if numbered:
        items = [_clean_line(ln) for ln in numbered]
    else:
        items = [_clean_line(part) for ln in lines for part in _SENTENCE_END.split(ln.strip())]
    return [s for s in items if s]
