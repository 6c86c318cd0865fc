"""Read a PDF's text page by page with pypdf, refusing documents that cannot be indexed.

A refused document raises :class:`BadDocument` with a short human reason (corrupt,
encrypted, empty, no text layer, too large); callers record the reason and go on.
"""

from __future__ import annotations

import hashlib
import io
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from pypdf import PdfReader
from pypdf.errors import PyPdfError

logger = logging.getLogger(__name__)

# pypdf logs a warning per odd object in real-world filings; they are noise here.
logging.getLogger("pypdf").setLevel(logging.ERROR)

DEFAULT_MAX_BYTES = 100 * 1024 * 1024
DEFAULT_MAX_PAGES = 2_000
MIN_TEXT_CHARS_PER_DOCUMENT = 20


class BadDocument(Exception):
    """The document cannot be indexed; ``reason`` says why in a few words."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(slots=True)
class ExtractedDocument:
    """Raw text of each page (index 0 is page 1) plus the PDF's own title, if any."""

    content_hash: str
    pages: list[str]
    pdf_title: str | None = None
    empty_pages: list[int] = field(default_factory=list)


def content_hash(data: bytes) -> str:
    """Return the SHA-256 hex digest that identifies a document's bytes."""
    return hashlib.sha256(data).hexdigest()


def document_id_for(digest: str) -> str:
    """Return the stable document id derived from a content hash (16 hex chars)."""
    return digest[:16]


def check_size(size_bytes: int, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
    """Raise :class:`BadDocument` when a file is larger than ``max_bytes``."""
    if size_bytes == 0:
        raise BadDocument("empty file")
    if size_bytes > max_bytes:
        raise BadDocument(
            f"too large: {size_bytes / 1e6:.1f} MB exceeds the {max_bytes / 1e6:.0f} MB limit"
        )


PageReader = Callable[[PdfReader, bytes], list[str]]
"""``(open reader, pdf bytes) -> text of every page``: how :func:`extract_pdf` reads pages."""


def open_pdf(
    data: bytes,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_pages: int = DEFAULT_MAX_PAGES,
) -> PdfReader:
    """Return a reader for the PDF in ``data`` after the checks that need no text.

    Raises :class:`BadDocument` for files that are not PDFs, corrupt, encrypted with a
    password, without pages, or over ``max_pages``/``max_bytes``.
    """
    check_size(len(data), max_bytes)
    if not data.lstrip()[:5].startswith(b"%PDF"):
        raise BadDocument("not a PDF (no %PDF header)")
    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        if reader.is_encrypted:
            try:
                unlocked = reader.decrypt("")
            except (PyPdfError, NotImplementedError, ValueError) as exc:
                raise BadDocument(f"encrypted: {exc}") from exc
            if not unlocked:
                raise BadDocument("encrypted with a password")
        page_count = len(reader.pages)
    except BadDocument:
        raise
    except Exception as exc:  # noqa: BLE001 - pypdf raises many types on broken files
        raise BadDocument(f"corrupt PDF: {type(exc).__name__}: {exc}"[:200]) from exc
    if page_count == 0:
        raise BadDocument("empty: the PDF has no pages")
    if page_count > max_pages:
        raise BadDocument(f"too large: {page_count} pages exceeds the {max_pages}-page limit")
    return reader


def page_texts(reader: PdfReader, start: int = 0, stop: int | None = None) -> list[str]:
    """Return the text of pages ``start`` to ``stop`` (0-based, end excluded) of ``reader``.

    A page that fails on its own comes back as empty text.
    """
    texts: list[str] = []
    for number in range(start, len(reader.pages) if stop is None else stop):
        try:
            text = reader.pages[number].extract_text() or ""
        except Exception as exc:  # noqa: BLE001 - one broken page must not lose the document
            logger.warning("page %d unreadable: %s", number + 1, exc)
            text = ""
        texts.append(text)
    return texts


def page_range_texts(data: bytes, start: int, stop: int) -> list[str]:
    """Return the text of pages ``start`` to ``stop`` of a PDF :func:`open_pdf` accepted.

    For workers that extract one range of a large document in parallel with others.
    """
    reader = PdfReader(io.BytesIO(data), strict=False)
    if reader.is_encrypted:
        reader.decrypt("")
    return page_texts(reader, start, stop)


def extract_pdf(
    data: bytes,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_pages: int = DEFAULT_MAX_PAGES,
    read_pages: PageReader | None = None,
) -> ExtractedDocument:
    """Return the text of every page of the PDF in ``data``.

    Raises :class:`BadDocument` as :func:`open_pdf` does, and for documents without any
    text layer (scanned images). ``read_pages`` replaces the page loop in this process,
    e.g. with one that extracts page ranges in parallel; it must return one text per page.
    """
    reader = open_pdf(data, max_bytes=max_bytes, max_pages=max_pages)
    page_count = len(reader.pages)
    pages = page_texts(reader) if read_pages is None else read_pages(reader, data)
    if len(pages) != page_count:
        raise ValueError(f"read_pages returned {len(pages)} texts for {page_count} pages")
    empty = [number for number, text in enumerate(pages, start=1) if not text.strip()]
    if sum(len(p.strip()) for p in pages) < MIN_TEXT_CHARS_PER_DOCUMENT:
        raise BadDocument("no extractable text (scanned images or blank pages)")

    title = None
    try:
        meta = reader.metadata
        if meta is not None and meta.title and str(meta.title).strip():
            title = str(meta.title).strip()
    except Exception:  # noqa: BLE001 - broken metadata is not a reason to refuse text
        title = None
    return ExtractedDocument(
        content_hash=content_hash(data), pages=pages, pdf_title=title, empty_pages=empty
    )
