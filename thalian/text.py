"""Text that ends up in one-line places: e-mail subjects, ticket summaries, CSV cells, page headings."""

from __future__ import annotations

import unicodedata


def single_line(text: str | None) -> str:
    """`text` on one line: line breaks, tabs and other whitespace runs become one space, control and format
    characters go, and the ends are trimmed. A title with CR/LF would otherwise break e-mail headers."""
    kept = "".join(ch for ch in text or "" if ch.isspace() or not _invisible(ch))
    return " ".join(kept.split())


def _invisible(ch: str) -> bool:
    return unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Cn")
