"""Turn one PDF's bytes into chunk rows ready to embed: extract, clean, describe, chunk.

This is the per-document work shared by the Ray Data pipeline, the sequential baseline
and uploads ingested by the knowledge service.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rag.chunking import (
    DEFAULT_MAX_TOKENS,
    DEFAULT_OVERLAP_TOKENS,
    Chunk,
    TokenCounter,
    approximate_token_count,
    chunk_pages,
)
from rag.clean import clean_pages
from rag.metadata import DocumentMetadata, extract_metadata
from rag.pdf import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_PAGES,
    PageReader,
    document_id_for,
    extract_pdf,
)

CHUNK_COLUMNS = (
    "chunk_id", "document_id", "ordinal", "page", "text", "embed_text",
    "title", "uri", "company", "ticker", "doc_type", "period", "fiscal_year",
)


@dataclass(slots=True)
class ProcessedDocument:
    """A parsed document: identity, metadata, page count and chunks."""

    document_id: str
    content_hash: str
    uri: str
    metadata: DocumentMetadata
    page_count: int
    chunks: list[Chunk]

    def record(self) -> dict[str, Any]:
        """Return the document's catalogue entry (what GET /documents lists)."""
        return {
            "document_id": self.document_id,
            "content_hash": self.content_hash,
            "uri": self.uri,
            "pages": self.page_count,
            "chunks": len(self.chunks),
            **self.metadata.as_dict(),
        }

    def rows(self) -> list[dict[str, Any]]:
        """Return one row per chunk with the text to embed (context header + passage)."""
        meta = self.metadata
        header = context_header(meta)
        return [
            {
                "chunk_id": f"{self.document_id}:{chunk.ordinal}",
                "document_id": self.document_id,
                "ordinal": chunk.ordinal,
                "page": chunk.page,
                "text": chunk.text,
                "embed_text": f"{header}\n{chunk.text}",
                "title": meta.title,
                "uri": self.uri,
                "company": meta.company or "",
                "ticker": meta.ticker or "",
                "doc_type": meta.doc_type,
                "period": meta.period or "",
                "fiscal_year": meta.fiscal_year or 0,
            }
            for chunk in self.chunks
        ]


def context_header(meta: DocumentMetadata) -> str:
    """Return the line prefixed to every chunk before embedding (company, type, period)."""
    return meta.title


def process_document(
    data: bytes,
    uri: str,
    count_tokens: TokenCounter = approximate_token_count,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_pages: int = DEFAULT_MAX_PAGES,
    max_tokens: int = DEFAULT_MAX_TOKENS,
    overlap_tokens: int = DEFAULT_OVERLAP_TOKENS,
    read_pages: PageReader | None = None,
) -> ProcessedDocument:
    """Return the document parsed and chunked; raises ``rag.pdf.BadDocument`` when unusable.

    ``read_pages`` replaces the in-process page loop (see ``rag.pdf.extract_pdf``).
    """
    extracted = extract_pdf(data, max_bytes=max_bytes, max_pages=max_pages,
                            read_pages=read_pages)
    pages = clean_pages(extracted.pages)
    metadata = extract_metadata(uri, pages, extracted.pdf_title)
    chunks = chunk_pages(pages, count_tokens, max_tokens=max_tokens, overlap_tokens=overlap_tokens)
    return ProcessedDocument(
        document_id=document_id_for(extracted.content_hash),
        content_hash=extracted.content_hash,
        uri=uri,
        metadata=metadata,
        page_count=len(pages),
        chunks=chunks,
    )


def rows_to_columns(rows: Sequence[dict[str, Any]]) -> dict[str, list[Any]]:
    """Return chunk rows as columns (the layout Arrow tables and Ray Data batches use)."""
    return {name: [row[name] for row in rows] for name in CHUNK_COLUMNS}
