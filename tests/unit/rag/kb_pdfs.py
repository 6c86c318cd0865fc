"""PDF fixtures written with fpdf2: known running heads, footers, hyphenation and a table."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
from fpdf import FPDF

HEADER = "Acme Widgets Inc. - Annual Report 2023"
FOOTER_NOTE = "Confidential draft"


class _Report(FPDF):
    def header(self) -> None:
        self.set_font("Helvetica", "", 9)
        self.cell(0, 8, HEADER, align="C")
        self.ln(12)

    def footer(self) -> None:
        self.set_y(-18)
        self.set_font("Helvetica", "", 9)
        self.cell(0, 5, FOOTER_NOTE, align="L")
        self.ln(5)
        self.cell(0, 5, f"Page {self.page_no()}", align="C")


def report_pdf(pages: list[list[str]] | None = None, *, title: str | None = None,
               table: bool = True) -> bytes:
    """Return a PDF: one list of lines per page, a hyphenated word, and a table on page 2."""
    pages = pages or default_pages()
    pdf = _Report()
    if title:
        pdf.set_title(title)
    pdf.set_auto_page_break(False)
    for number, lines in enumerate(pages, start=1):
        pdf.add_page()
        pdf.set_font("Helvetica", "", 11)
        for line in lines:
            pdf.cell(0, 7, line, new_x="LMARGIN", new_y="NEXT")
        if table and number == 2:
            pdf.ln(4)
            for row in (("Metric", "2023", "2022"), ("Net sales", "3,226.8", "2,729.4"),
                        ("Gross profit", "1,210.5", "1,020.1")):
                for cell in row:
                    pdf.cell(50, 7, cell, border=1)
                pdf.ln(7)
    return bytes(pdf.output())


def default_pages() -> list[list[str]]:
    """Three pages of distinct text; page 1 has ``finan-``/``cial`` split over two lines."""
    return [
        ["FORM 10-K", "Acme Widgets Inc.", "(Exact name of registrant as specified in its charter)",
         "For the fiscal year ended December 31, 2023",
         "The company reported strong finan-", "cial results driven by widget demand.",
         "Management expects the flagship widget line to keep growing next year."],
        ["Results of operations", "Net sales rose because sprocket shipments doubled.",
         "The table below compares the two fiscal years."],
        ["Legal proceedings", "Acme is a defendant in a patent lawsuit about gear teeth.",
         "The company believes the claims are without merit."],
    ]


def blank_pdf(pages: int = 2) -> bytes:
    """Return a PDF whose pages carry only a drawn rectangle (like a scan without OCR)."""
    pdf = FPDF()
    for _ in range(pages):
        pdf.add_page()
        pdf.rect(20, 20, 100, 100, style="F")
    return bytes(pdf.output())


def encrypted_pdf() -> bytes:
    """Return a PDF that needs a user password to open."""
    pdf = FPDF()
    pdf.set_encryption(owner_password="owner-secret", user_password="user-secret")
    pdf.add_page()
    pdf.set_font("Helvetica", "", 12)
    pdf.cell(0, 10, "Secret numbers inside.")
    return bytes(pdf.output())


def corrupt_pdf() -> bytes:
    """Return bytes that start like a PDF but are truncated garbage."""
    head = b"%PDF-1.7\n1 0 obj << /Type /Catalog /Pages 2 0 R >>\nendobj\n"
    return head + b"\x00\x13garbage" * 50


def write(path: Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` and return the path."""
    path.write_bytes(data)
    return path


class HashingModel:
    """Stand-in for the MiniLM model: hashed bag of words, normalised (no download, fast)."""

    def __init__(self, dimension: int = 384) -> None:
        self.dimension = dimension

    def encode(self, texts: list[str], **_: Any) -> np.ndarray:
        vectors = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in text.lower().split():
                word = word.strip(".,;:()?!\"'")
                if word:
                    digest = hashlib.blake2b(word.encode(), digest_size=4).digest()
                    vectors[row, int.from_bytes(digest, "little") % self.dimension] += 1.0
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors / np.maximum(norms, 1e-9)
