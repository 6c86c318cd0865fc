"""BM25 over chunks with a tokenizer that understands filings' numbers and periods.

``FY2018`` yields ``fy2018``, ``fy`` and ``2018``; ``1,234.5`` yields ``1234.5``;
``10-K`` yields ``10k``, ``10`` and ``k``; plurals are folded (``margins`` -> ``margin``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

import numpy as np
import numpy.typing as npt
from scipy import sparse

K1 = 1.2
B = 0.75

STOPWORDS = frozenset(
    " ".join(
        (
            "a an and are as at be been but by can could did do does for from had has have",
            "how i if in into is it its itself of on or our over per such than that the",
            "their them then there these they this those to was we were what when where",
            "which while who whom why will with would you your any all also about more most",
            "other same some so very not no nor only own between during before after above",
            "below up down out off again further once here both each few s t just should now",
        )
    ).split()
)
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}\b)")
_WORD = re.compile(r"[a-z0-9]+(?:[.\-/&'][a-z0-9]+)*")
_LETTER_DIGIT = re.compile(r"[a-z]+|\d+(?:\.\d+)?")


def _fold(word: str) -> str:
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def tokenize(text: str) -> list[str]:
    """Return BM25 terms for ``text`` (lower-case, numbers normalised, periods split)."""
    text = _THOUSANDS.sub("", text.lower())
    terms: list[str] = []
    for word in _WORD.findall(text):
        if word.replace(".", "").isdigit():
            terms.append(word.strip("."))
            continue
        parts = re.split(r"[.\-/&']", word)
        joined = "".join(parts)
        pieces = _LETTER_DIGIT.findall(joined)
        if len(parts) > 1 or len(pieces) > 1:
            terms.append(joined)
            for part in parts:
                terms.extend(_LETTER_DIGIT.findall(part))
        else:
            terms.append(joined)
    return [_fold(t) for t in terms if t not in STOPWORDS and len(t) > 0]


class BM25Index:
    """Okapi BM25 (k1=1.2, b=0.75) with per-term weights precomputed in a sparse matrix."""

    def __init__(self, texts: Iterable[str]) -> None:
        vocabulary: dict[str, int] = {}
        indptr = [0]
        indices: list[int] = []
        counts: list[int] = []
        for text in texts:
            tf: dict[int, int] = {}
            for term in tokenize(text):
                term_id = vocabulary.setdefault(term, len(vocabulary))
                tf[term_id] = tf.get(term_id, 0) + 1
            indices.extend(tf.keys())
            counts.extend(tf.values())
            indptr.append(len(indices))
        self.vocabulary = vocabulary
        n_docs = len(indptr) - 1
        tf_matrix = sparse.csr_matrix(
            (np.asarray(counts, np.float32), np.asarray(indices, np.int64), np.asarray(indptr)),
            shape=(n_docs, max(1, len(vocabulary))),
        )
        lengths = np.asarray(tf_matrix.sum(axis=1)).ravel()
        average = float(lengths.mean()) if n_docs else 1.0
        doc_freq = np.bincount(np.asarray(indices, np.int64), minlength=tf_matrix.shape[1])
        idf = np.log1p((n_docs - doc_freq + 0.5) / (doc_freq + 0.5)).astype(np.float32)
        norm = (K1 * (1 - B + B * lengths / max(average, 1e-9))).astype(np.float32)
        rows = np.repeat(np.arange(n_docs), np.diff(tf_matrix.indptr))
        data = tf_matrix.data
        weights = idf[tf_matrix.indices] * data * (K1 + 1) / (data + norm[rows])
        self._weights = sparse.csr_matrix(
            (weights.astype(np.float32), tf_matrix.indices, tf_matrix.indptr), shape=tf_matrix.shape
        ).tocsc()
        self.size = n_docs

    def scores(self, query: str) -> npt.NDArray[np.float32]:
        """Return the BM25 score of every chunk for ``query`` (zeros when no term matches)."""
        ids: dict[int, int] = {}
        for term in tokenize(query):
            term_id = self.vocabulary.get(term)
            if term_id is not None:
                ids[term_id] = ids.get(term_id, 0) + 1
        if not ids or self.size == 0:
            return np.zeros(self.size, np.float32)
        columns = self._weights[:, list(ids)]
        return np.asarray(columns @ np.asarray(list(ids.values()), np.float32)).ravel()

    def search(
        self, query: str, k: int, candidates: Sequence[int] | npt.NDArray[np.int64] | None = None
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
        """Return (scores, rows) of the top ``k`` chunks with a positive score, best first."""
        scores = self.scores(query)
        rows = np.arange(self.size, dtype=np.int64) if candidates is None \
            else np.asarray(candidates, np.int64)
        if len(rows) == 0:
            return np.zeros(0, np.float32), rows
        subset = scores[rows]
        positive = subset > 0
        subset, rows = subset[positive], rows[positive]
        part = np.argpartition(-subset, k - 1)[:k] if len(subset) > k else np.arange(len(subset))
        order = part[np.argsort(-subset[part], kind="stable")]
        return subset[order], rows[order]
