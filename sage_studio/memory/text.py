"""Small text helpers shared by the keyword (``kv``) and entity-graph (``graph``) backends."""

from __future__ import annotations

import re

# Function words that carry no topic: matching on them would recall every dialog.
STOPWORDS = frozenset(
    """
    a about above after again against all also am an and any are as at be because been before being below between
    both but by can could did do does doing done down during each else even ever every few for from further get got
    had has have having he her here hers herself him himself his how i if in into is it its itself just know let like
    me mine more most my myself no nor not now of off on once only or other our ours ourselves out over own please
    really same say said she should so some still such tell than that the their theirs them themselves then there
    these they this those through to too under until up us very want was we were what when where which while who whom
    why will with would yes yet you your yours yourself yourselves hi hello hey thanks thank ok okay sure one two
    """.split()
)

_WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)?", re.UNICODE)
# A run of capitalised words ("New York", "Marie Curie"), the usual shape of a named entity in English text.
_PROPER = re.compile(r"\b[A-Z][\w-]*(?:\s+[A-Z][\w-]*)*")


def _normalise(word: str) -> str:
    word = word.lower().replace("’", "'")
    if word.endswith("'s"):
        word = word[:-2]
    # Crude plural folding so "cats" matches "cat"; short words and "-ss" words ("class") keep their s.
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        word = word[:-1]
    return word


def keywords(text: str) -> list[str]:
    """Lower-cased content words of ``text`` (stopwords and 1-letter words dropped), in order, with repeats."""
    words = (_normalise(w) for w in _WORD.findall(text))
    return [w for w in words if len(w) > 1 and w not in STOPWORDS]


def entities(text: str) -> set[str]:
    """Entity keys of ``text``: capitalised names (multi-word kept whole) and content words, lower-cased.

    A dependency-free heuristic: good enough to link "Rex" in one dialog with "Rex" in another, and "dog" with "dog".
    """
    found: set[str] = set()
    for match in _PROPER.finditer(text):
        words = [w for w in match.group(0).split() if w.lower() not in STOPWORDS]
        if len(words) > 1:
            found.add(" ".join(_normalise(w) for w in words))
    found.update(keywords(text))
    return found
