"""Token counting for `usage`: each input counts the tokens the model actually sees, i.e. after truncation to
its max tokens (special tokens included)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class TokenCounts:
    per_input: list[int]  # tokens embedded for each input, after truncation
    truncated: int  # how many inputs were longer than max_tokens and cut

    @property
    def total(self) -> int:
        return sum(self.per_input)


def count_tokens(tokenizer: Any, texts: list[str], max_tokens: int) -> TokenCounts:
    """Count tokens with a Hugging Face tokenizer; inputs over `max_tokens` count as `max_tokens`."""
    lengths = [len(ids) for ids in tokenizer(texts, add_special_tokens=True, truncation=False,
                                             verbose=False)["input_ids"]]
    return TokenCounts(per_input=[min(n, max_tokens) for n in lengths],
                       truncated=sum(n > max_tokens for n in lengths))
