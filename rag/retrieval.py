"""Hybrid retrieval: dense (FAISS) and BM25 fused by weighted reciprocal rank.

Before ranking, the query is read for the company, period and document type it means
(``rag.metadata.parse_query``) against the companies the index knows. A named company
narrows the candidates to its documents; a named fiscal year or quarter boosts the
filings of that period. Explicit ``filters`` (company, ticker, doc_type, period,
document_id) always narrow. Results keep the best passage per page.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from core.errors import InvalidInput
from core.models import Source
from rag.glossary import expand_query
from rag.index import IndexSnapshot
from rag.lexical import BM25Index
from rag.metadata import compact, parse_query

Mode = Literal["hybrid", "dense", "lexical"]
QueryEmbedder = Callable[[str], npt.NDArray[np.float32]]
FILTER_KEYS = ("company", "ticker", "doc_type", "period", "document_id")
_DOC_TYPE_ALIASES = {"10k": "10-K", "10q": "10-Q", "8k": "8-K", "earnings": "earnings",
                     "earningsrelease": "earnings", "other": "other"}


@dataclass(frozen=True, slots=True)
class RetrievalConfig:
    """Knobs of the hybrid retriever (defaults are the method's, not tuned per data set)."""

    candidates: int = 100  # passages each retriever contributes to fusion
    rrf_k: int = 60
    dense_weight: float = 1.0
    lexical_weight: float = 1.0
    expand_lexical: bool = True  # add a named metric's statement line items to BM25's query
    use_query_metadata: bool = True
    period_boost: float = 0.5  # multiplier bonus for a filing of the period the query names
    one_per_page: bool = True


class HybridRetriever:
    """Search one :class:`IndexSnapshot` densely, lexically or both; pure, no I/O."""

    def __init__(
        self,
        snapshot: IndexSnapshot,
        embed_query: QueryEmbedder | None = None,
        config: RetrievalConfig | None = None,
    ) -> None:
        self.snapshot = snapshot
        self.embed_query = embed_query
        self.config = config or RetrievalConfig()
        # Counts saved with the version (the store checked they fit): no tokenising.
        if snapshot.term_counts is not None:
            self.bm25 = BM25Index.from_counts(snapshot.term_counts)
        else:  # a version saved without counts (the store logged why): tokenise its chunks
            self.bm25 = BM25Index(snapshot.column("embed_text") if len(snapshot) else [])
        documents = snapshot.documents
        self._doc_position = {d["document_id"]: i for i, d in enumerate(documents)}
        doc_ids = snapshot.column("document_id") if len(snapshot) else np.array([], object)
        self._row_doc = np.fromiter((self._doc_position.get(d, -1) for d in doc_ids),
                                    np.int64, len(doc_ids))
        # Rows of each document, ascending: a filter's candidates without a scan of all rows.
        by_document = np.argsort(self._row_doc, kind="stable")
        bounds = np.searchsorted(self._row_doc[by_document], np.arange(len(documents) + 1))
        self._doc_rows = [by_document[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
        self._alias_docs: dict[str, set[int]] = {}
        for position, document in enumerate(documents):
            for alias in document.get("aliases") or []:
                self._alias_docs.setdefault(alias, set()).add(position)

    def search(
        self,
        query: str,
        k: int = 5,
        filters: dict[str, Any] | None = None,
        *,
        mode: Mode = "hybrid",
        query_vector: npt.NDArray[np.float32] | None = None,
    ) -> list[Source]:
        """Return up to ``k`` passages for ``query``, best first, as ``Source`` models.

        ``query_vector`` skips embedding (the serving layer embeds queries in batches).
        """
        if not query.strip():
            raise InvalidInput("query must not be empty")
        if len(self.snapshot) == 0:
            return []
        allowed, boost = self._documents_for(query, filters or {})
        candidates = None if allowed is None else self._rows_of(allowed)
        depth = max(self.config.candidates, k * 4)
        ranked: list[tuple[float, npt.NDArray[np.int64]]] = []
        if mode in ("hybrid", "dense"):
            if query_vector is None:
                if self.embed_query is None:
                    raise InvalidInput("dense search needs a query embedder")
                query_vector = self.embed_query(query)
            _, rows = self.snapshot.dense_search(query_vector, depth, candidates)
            ranked.append((self.config.dense_weight, rows))
        if mode in ("hybrid", "lexical"):
            lexical_query = expand_query(query) if self.config.expand_lexical else query
            _, rows = self.bm25.search(lexical_query, depth, candidates)
            ranked.append((self.config.lexical_weight, rows))
        fused: dict[int, float] = {}
        for weight, rows in ranked:
            for rank, row in enumerate(rows.tolist()):
                fused[row] = fused.get(row, 0.0) + weight / (self.config.rrf_k + rank + 1)
        if boost:
            for row in fused:
                fused[row] *= 1.0 + boost.get(int(self._row_doc[row]), 0.0)
        order = sorted(fused, key=lambda r: (-fused[r], r))
        return self._sources(order, fused, k)

    def _rows_of(self, documents: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        """Return the chunk rows of the documents at these positions, ascending."""
        if len(documents) == 0:
            return np.zeros(0, np.int64)
        rows: npt.NDArray[np.int64] = np.sort(np.concatenate(
            [self._doc_rows[p] for p in documents.tolist()]))
        return rows

    def _documents_for(
        self, query: str, filters: dict[str, Any]
    ) -> tuple[npt.NDArray[np.int64] | None, dict[int, float]]:
        documents = self.snapshot.documents
        allowed = set(range(len(documents)))
        explicit = False
        for key, value in filters.items():
            if value in (None, ""):
                continue
            if key not in FILTER_KEYS:
                expected = ", ".join(FILTER_KEYS)
                raise InvalidInput(f"unknown filter {key!r}; expected one of {expected}")
            allowed &= {i for i, d in enumerate(documents) if _matches(d, key, str(value))}
            explicit = True
        boost: dict[int, float] = {}
        if self.config.use_query_metadata:
            intent = parse_query(query, set(self._alias_docs))
            named = set().union(*(self._alias_docs[a] for a in intent.aliases)) \
                if intent.aliases else set()
            if named and named & allowed:
                allowed &= named
                explicit = True
            boost = self._period_boost(intent.years, intent.quarter, intent.doc_type, allowed)
        return (np.asarray(sorted(allowed), np.int64) if explicit else None), boost

    def _period_boost(
        self, years: list[int], quarter: int | None, doc_type: str | None, allowed: set[int]
    ) -> dict[int, float]:
        if not (years or quarter or doc_type) or self.config.period_boost <= 0:
            return {}
        boost: dict[int, float] = {}
        latest = max(years) if years else None
        for position in allowed:
            document = self.snapshot.documents[position]
            score = 0.0
            if latest is not None and document.get("fiscal_year") == latest:
                score += 1.0
            if quarter is not None and document.get("fiscal_quarter") == quarter:
                score += 0.5
            if doc_type is not None and document.get("doc_type") == doc_type:
                score += 0.5
            if score:
                boost[position] = self.config.period_boost * score
        return boost

    def _sources(self, order: list[int], scores: dict[int, float], k: int) -> list[Source]:
        column = self.snapshot.column
        seen_pages: set[tuple[str, int]] = set()
        results: list[Source] = []
        for row in order:
            document_id = str(column("document_id")[row])
            page = int(column("page")[row])
            if self.config.one_per_page:
                if (document_id, page) in seen_pages:
                    continue
                seen_pages.add((document_id, page))
            results.append(
                Source(
                    document_id=document_id,
                    title=str(column("title")[row]),
                    uri=str(column("uri")[row]),
                    page=page,
                    score=round(float(scores[row]), 6),
                    text=str(column("text")[row]),
                )
            )
            if len(results) == k:
                break
        return results


def _matches(document: dict[str, Any], key: str, value: str) -> bool:
    wanted = compact(value)
    if key == "company":
        name = compact(document.get("company") or "")
        return bool(wanted) and (wanted in (document.get("aliases") or []) or wanted in name)
    if key == "ticker":
        return (document.get("ticker") or "").upper() == value.strip().upper()
    if key == "doc_type":
        return document.get("doc_type") == _DOC_TYPE_ALIASES.get(wanted, value)
    if key == "period":
        period = compact(document.get("period") or "")
        year = str(document.get("fiscal_year") or "")
        return bool(period) and (period == wanted or period.startswith(wanted) or wanted == year)
    return str(document.get("document_id")) == value
