"""SQuAD-style answer normalisation and token overlap, shared by the evaluators."""

from __future__ import annotations

import re
import string
from collections import Counter

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = str.maketrans("", "", string.punctuation)


def normalize(text: str) -> str:
    """Lower case, no punctuation, no articles, single spaces (the SQuAD evaluation convention)."""
    return " ".join(_ARTICLES.sub(" ", text.lower().translate(_PUNCT)).split())


def tokens(text: str) -> list[str]:
    return normalize(text).split()


def token_f1(prediction: str, reference: str) -> tuple[float, float, float]:
    """(precision, recall, F1) of the normalised tokens of ``prediction`` against ``reference``."""
    pred, ref = tokens(prediction), tokens(reference)
    if not pred or not ref:
        same = float(pred == ref)
        return same, same, same
    common = sum((Counter(pred) & Counter(ref)).values())
    if common == 0:
        return 0.0, 0.0, 0.0
    precision, recall = common / len(pred), common / len(ref)
    return precision, recall, 2 * precision * recall / (precision + recall)
