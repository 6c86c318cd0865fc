"""BM25 over chunks with a tokenizer that understands filings' numbers and periods.

``FY2018`` yields ``fy2018``, ``fy`` and ``2018``; ``1,234.5`` yields ``1234.5``;
``10-K`` yields ``10k``, ``10`` and ``k``; plurals are folded (``margins`` -> ``margin``).

The per-chunk term counts (:class:`TermCounts`) are what tokenising costs; they are saved
with each index version so that loading one rebuilds BM25 with numpy alone, an added
document tokenises only its own chunks, and a deleted one drops rows without tokenising.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import sparse

K1 = 1.2
B = 0.75
# Bump whenever tokenize() changes: saved term counts of another version are then ignored
# (the index re-tokenises) instead of silently mixing two tokenizations.
TOKENIZER_VERSION = 1
COUNTS_FORMAT = 1

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


class InvalidTermCounts(Exception):
    """Saved term counts are missing, of another tokenizer or inconsistent with the chunks."""


@dataclass(frozen=True, slots=True)
class TermCounts:
    """Term frequency of every chunk: a CSR matrix (row = chunk, column = term id).

    ``vocabulary`` maps term -> column and lists the terms in column order. Instances are
    treated as immutable: :meth:`append` and :meth:`take` return new ones.
    """

    vocabulary: dict[str, int]
    indptr: npt.NDArray[np.int64]
    indices: npt.NDArray[np.int32]
    counts: npt.NDArray[np.int32]

    @property
    def rows(self) -> int:
        """Number of chunks (matrix rows)."""
        return len(self.indptr) - 1

    @classmethod
    def empty(cls) -> TermCounts:
        """Return counts of no chunks."""
        return cls({}, np.zeros(1, np.int64), np.zeros(0, np.int32), np.zeros(0, np.int32))

    @classmethod
    def from_texts(cls, texts: Iterable[str]) -> TermCounts:
        """Tokenise ``texts`` (one per chunk) and count their terms."""
        return cls.empty().append(texts)

    def append(self, texts: Iterable[str]) -> TermCounts:
        """Return these counts followed by rows for ``texts``; only ``texts`` are tokenised.

        Terms not seen before get new columns after the existing ones, so the existing
        rows stay valid as they are.
        """
        vocabulary = dict(self.vocabulary)
        lengths: list[int] = []
        indices: list[int] = []
        counts: list[int] = []
        for text in texts:
            tf: dict[int, int] = {}
            for term in tokenize(text):
                term_id = vocabulary.setdefault(term, len(vocabulary))
                tf[term_id] = tf.get(term_id, 0) + 1
            indices.extend(tf.keys())
            counts.extend(tf.values())
            lengths.append(len(tf))
        offsets = self.indptr[-1] + np.cumsum(np.asarray(lengths, np.int64))
        return TermCounts(
            vocabulary,
            np.concatenate((self.indptr, offsets)).astype(np.int64, copy=False),
            np.concatenate((self.indices, np.asarray(indices, np.int32))),
            np.concatenate((self.counts, np.asarray(counts, np.int32))),
        )

    def take(self, rows: npt.NDArray[np.int64]) -> TermCounts:
        """Return the counts of ``rows`` only (in that order), dropping terms none of them uses."""
        rows = np.asarray(rows, np.int64)
        lengths = np.diff(self.indptr)[rows]
        indptr = np.concatenate(([0], np.cumsum(lengths))).astype(np.int64)
        positions = np.repeat(self.indptr[rows] - indptr[:-1], lengths) \
            + np.arange(indptr[-1], dtype=np.int64)
        indices = self.indices[positions]
        used = np.zeros(len(self.vocabulary), bool)
        used[indices] = True
        column = (np.cumsum(used) - 1).astype(np.int32)
        terms = np.asarray(list(self.vocabulary), dtype=object)[used].tolist()
        vocabulary = {term: i for i, term in enumerate(terms)}
        return TermCounts(vocabulary, indptr, column[indices], self.counts[positions])

    def save(self, folder: Path) -> None:
        """Write the counts into the new directory ``folder`` (.npy arrays + terms.json)."""
        folder.mkdir()
        np.save(folder / "indptr.npy", self.indptr)
        np.save(folder / "indices.npy", self.indices)
        np.save(folder / "counts.npy", self.counts)
        meta = {"format": COUNTS_FORMAT, "tokenizer": TOKENIZER_VERSION, "rows": self.rows,
                "terms": list(self.vocabulary)}
        (folder / "terms.json").write_text(json.dumps(meta))

    @classmethod
    def load(cls, folder: Path, rows: int) -> TermCounts:
        """Read counts saved by :meth:`save` for a chunk table of ``rows`` rows.

        The arrays are memory-mapped. Raises :class:`InvalidTermCounts` saying why when
        they are missing, of another tokenizer version or do not fit ``rows`` chunks.
        """
        try:
            meta: dict[str, Any] = json.loads((folder / "terms.json").read_text())
            arrays = [np.load(folder / f"{name}.npy", mmap_mode="r", allow_pickle=False)
                      for name in ("indptr", "indices", "counts")]
        except FileNotFoundError as exc:
            raise InvalidTermCounts(f"missing {Path(exc.filename or folder).name}") from exc
        except (OSError, ValueError) as exc:
            raise InvalidTermCounts(f"unreadable: {exc}") from exc
        if meta.get("format") != COUNTS_FORMAT or meta.get("tokenizer") != TOKENIZER_VERSION:
            raise InvalidTermCounts(
                f"format {meta.get('format')} / tokenizer {meta.get('tokenizer')}, "
                f"expected {COUNTS_FORMAT} / {TOKENIZER_VERSION}")
        indptr, indices, counts = arrays
        terms = meta.get("terms")
        if not isinstance(terms, list):
            raise InvalidTermCounts("terms.json has no term list")
        _check_shape(indptr, indices, counts, len(terms), rows)
        vocabulary = {str(term): i for i, term in enumerate(terms)}
        if len(vocabulary) != len(terms):
            raise InvalidTermCounts("repeated terms")
        return cls(vocabulary, indptr, indices, counts)


def _check_shape(indptr: Any, indices: Any, counts: Any, n_terms: int, rows: int) -> None:
    if indptr.dtype != np.int64 or indices.dtype != np.int32 or counts.dtype != np.int32:
        raise InvalidTermCounts("unexpected array types")
    if len(indptr) != rows + 1:
        raise InvalidTermCounts(f"{len(indptr) - 1} rows for {rows} chunks")
    if indptr[0] != 0 or indptr[-1] != len(indices) or len(indices) != len(counts):
        raise InvalidTermCounts("row pointers do not match the entries")
    if rows and np.any(np.diff(indptr) < 0):
        raise InvalidTermCounts("row pointers decrease")
    if len(indices) and (int(indices.min()) < 0 or int(indices.max()) >= n_terms):
        raise InvalidTermCounts("term ids outside the vocabulary")


class BM25Index:
    """Okapi BM25 (k1=1.2, b=0.75) with per-term weights precomputed in a sparse matrix."""

    def __init__(self, texts: Iterable[str]) -> None:
        self._fit(TermCounts.from_texts(texts))

    @classmethod
    def from_counts(cls, counts: TermCounts) -> BM25Index:
        """Return the index of chunks whose terms were counted already (no tokenising)."""
        index = cls.__new__(cls)
        index._fit(counts)
        return index

    def _fit(self, counts: TermCounts) -> None:
        """Compute idf and length-normalised weights from the counts, vectorised."""
        self.vocabulary = counts.vocabulary
        n_docs = counts.rows
        shape = (n_docs, max(1, len(counts.vocabulary)))
        indptr = np.asarray(counts.indptr, np.int64)
        indices = np.asarray(counts.indices, np.int32)
        data = np.asarray(counts.counts, np.float32)
        rows = np.repeat(np.arange(n_docs), np.diff(indptr))
        lengths = np.bincount(rows, weights=data, minlength=n_docs)  # terms per chunk
        average = float(lengths.mean()) if n_docs else 1.0
        doc_freq = np.bincount(indices, minlength=shape[1])
        idf = np.log1p((n_docs - doc_freq + 0.5) / (doc_freq + 0.5)).astype(np.float32)
        norm = (K1 * (1 - B + B * lengths / max(average, 1e-9))).astype(np.float32)
        weights = idf[indices] * data * (K1 + 1) / (data + norm[rows])
        self._weights = sparse.csr_matrix(
            (weights.astype(np.float32), indices, indptr), shape=shape
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
