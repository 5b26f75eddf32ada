"""Free text that people send (comments, notes, tags) is refused when it carries characters that
hide or rewrite what a reader sees: control characters, bidirectional overrides, lone surrogates."""

from __future__ import annotations

import unicodedata

# Newline and tab are text; every other C0 control, DEL and the C1 block (U+0080–U+009F) are not.
ALLOWED_CONTROLS = frozenset("\n\t")
# Embeddings, overrides and isolates reorder what is displayed ("Trojan Source").
BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def forbidden_character(text: str) -> str | None:
    """A description of the first character `text` may not hold, or None when it is clean."""
    for position, char in enumerate(text):
        code = ord(char)
        if char in ALLOWED_CONTROLS:
            continue
        if code < 0x20 or 0x7F <= code <= 0x9F:
            kind = "a control character"
        elif char in BIDI_CONTROLS:
            kind = "a bidirectional override"
        elif 0xD800 <= code <= 0xDFFF:
            kind = "an unpaired surrogate"
        else:
            continue
        name = unicodedata.name(char, "")
        label = f"U+{code:04X}" + (f" {name}" if name else "")
        return f"{kind} ({label}) at position {position}"
    return None


def normalize_newlines(text: str) -> str:
    """CRLF and lone CR (what browsers send from a text area) as plain newlines."""
    return text.replace("\r\n", "\n").replace("\r", "\n")


def check_text(field: str, text: str) -> str | None:
    """The message refusing `text` for `field`, or None when it may be stored."""
    problem = forbidden_character(text)
    if problem is None:
        return None
    return f"{field} contains {problem}: remove it (newlines and tabs are allowed)"
