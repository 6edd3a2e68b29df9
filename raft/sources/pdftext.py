"""The text pypdf extracts from a PDF's pages, made into paragraphs of clean prose.

pypdf gives the lines a page draws, as drawn: ligature glyphs (U+FB00-FB06) where the font
mapped them, a hyphen wherever the typesetter broke a word, and a line break at every line
end. `pdf_text` turns the pages into one text:

- **Ligatures** `ﬀ ﬁ ﬂ ﬃ ﬄ ﬅ ﬆ` become their letters (their NFKC form); no other character
  changes.
- **Lines** of one paragraph are joined by a space. A paragraph ends at a blank line, before a
  list item (`- `, `• `, `1. `, `(a) `...), after a short line (under 4/5 of the document's
  median line length) that ends a sentence (`. ! ? … :`) or is followed by a line that does not
  start in lower case, and around a short line without closing punctuation between a sentence
  end and a line that does not start in lower case (a heading). Consecutive list items are
  kept on consecutive lines. A paragraph runs on across a page break when the page's last
  line does not end a sentence or in a digit (a page number) and the next page starts in lower
  case; the next page then starts inside it. pypdf gives no indents or vertical gaps, so a
  paragraph whose last line happens to be nearly full runs into the next one.
- **Line-end hyphens** (`defi-` / `nition`, the next line starting in lower case): the document
  itself decides. The hyphen is dropped when the joined word (`definition`) occurs elsewhere in
  the document more often than the hyphenated one (`well-known`), and kept when the hyphenated
  one occurs more often. With no evidence either way the hyphen is kept for a compound that
  already has one (`state-of-the-`), an all-capital or one-letter first part (`COVID-`, `e-`;
  typesetters never leave one letter before a break), or when both parts occur elsewhere as
  words of their own (`cross`, `reference`); else it is dropped, since typesetters break
  words far more often than compounds. Known failures, when the document has no other
  occurrence of the word: a closed compound whose parts are common words (`some-` / `thing`
  keeps its hyphen) and a hyphenated compound whose parts do not occur alone (`self-` /
  `aware` loses it). A soft hyphen (U+00AD) at a line end is always dropped; a hyphen between
  digits or before a capital is kept without a space (`1990-1995`, `Smith-Jones`).
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

_LIGATURES = {code: unicodedata.normalize("NFKC", chr(code)) for code in range(0xFB00, 0xFB07)}
_LETTERS = r"[^\W\d_]"
_WORD = re.compile(rf"{_LETTERS}+(?:[-‐]{_LETTERS}+)*")
# The word a line ends in before its hyphen, compounds whole: `state-of-the-` gives `state-of-the`.
_BROKEN = re.compile(rf"({_LETTERS}+(?:[-‐]{_LETTERS}+)*)[-‐]$")
_FIRST_LETTERS = re.compile(rf"{_LETTERS}+")
_SENTENCE_END = re.compile(r"[.!?…:][\"'”’)\]»]*$")
_CLOSING = re.compile(r"[.!?…:;,][\"'”’)\]»]*$")
_LIST_ITEM = re.compile(r"(?:[-*•◦▪‣●○■□·]|\d{1,3}[.)]|\(\d{1,3}\)|\(?[a-z]\))\s")
_LONGEST_WORD = 64
SHORT = 0.8  # a line under this share of the median line length may end a paragraph


@dataclass(frozen=True)
class _Line:
    page: int  # 0-based
    text: str  # "" for a blank line


def pdf_text(pages: list[str]) -> tuple[str, tuple[int, ...]]:
    """The text of a PDF from pypdf's page texts, and where each page starts in it.

    A page without text starts where the next page with text does (or at the end), so no
    character is on it.
    """
    lines = list(_lines(pages))
    words = _word_counts(lines)
    lengths = sorted(len(line.text) for line in lines if line.text)
    short = SHORT * lengths[len(lengths) // 2] if lengths else 0
    parts: list[str] = []  # separators and lines, in turn
    length = 0
    starts: list[int | None] = [None] * len(pages)
    in_list = False
    previous: _Line | None = None
    for number, line in enumerate(lines):
        if not line.text:
            continue
        item = bool(_LIST_ITEM.match(line.text))
        separator = ""
        if previous is None:
            in_list = item
        elif _breaks(lines, number, previous, short):
            separator = "\n" if in_list and item else "\n\n"
            in_list = item
        else:
            drop, separator = _joint(previous.text, line.text, words)
            parts[-1] = parts[-1][: len(parts[-1]) - drop]
            length -= drop
        if starts[line.page] is None:
            starts[line.page] = length + len(separator)
        parts += [separator, line.text]
        length += len(separator) + len(line.text)
        previous = line
    return "".join(parts), _fill(starts, length)


def _lines(pages: list[str]) -> Iterator[_Line]:
    """Each page's lines, ligatures replaced and spaces collapsed; a blank line ends a page."""
    for page, text in enumerate(pages):
        for line in text.strip().translate(_LIGATURES).splitlines():
            yield _Line(page, " ".join(line.split()))
        yield _Line(page, "")


def _broken(line: str) -> str:
    """The word `line` ends in before a hyphen, compounds whole (`state-of-the-` gives
    `state-of-the`); "" when it does not end so. Only its end is read: no word is longer."""
    match = _BROKEN.search(line[-_LONGEST_WORD:])
    return match[1] if match else ""


def _word_counts(lines: list[_Line]) -> Counter[str]:
    """How often each word (lower case, compounds whole) occurs, the parts of words broken at a
    line end left out: they are what is being decided."""
    counts: Counter[str] = Counter()
    broken_before = False
    for line in lines:
        found = _WORD.findall(line.text.lower().replace("‐", "-"))  # U+2010 counts as "-"
        broken = bool(_broken(line.text))
        whole = found[int(broken_before) : len(found) - int(broken)]
        counts.update(whole)
        # The parts of a compound are words too: `twenty-seven` vouches for `twenty-` / `six`.
        counts.update(part for word in whole if "-" in word for part in word.split("-"))
        broken_before = broken
    return counts


def _breaks(lines: list[_Line], number: int, previous: _Line, short: float) -> bool:
    """Whether a paragraph ends between `previous` and `lines[number]` (both with text)."""
    line = lines[number]
    before, after = lines[number - 1], lines[number + 1]
    if not before.text:  # a blank line, or the end of a page
        runs_on = line.page == previous.page + 1 and before.page == previous.page
        return not (runs_on and _runs_on(previous.text, line.text))
    if _LIST_ITEM.match(line.text):
        return True
    if len(previous.text) < short and (
        _SENTENCE_END.search(previous.text) or not line.text[0].islower()
    ):
        return True
    # A heading: a short line without closing punctuation between a sentence end and a line
    # that does not continue it.
    return bool(
        len(line.text) < short
        and (line.text[0].isupper() or line.text[0].isdigit())
        and not _CLOSING.search(line.text)
        and _SENTENCE_END.search(previous.text)
        and not after.text[:1].islower()
    )


def _runs_on(last: str, first: str) -> bool:
    """Whether a page whose last line is `last` runs on into one whose first line is `first`."""
    return not _SENTENCE_END.search(last) and not last[-1].isdigit() and first[0].islower()


def _joint(previous: str, line: str, words: Counter[str]) -> tuple[int, str]:
    """How many characters to drop from the end of `previous`, a line of the paragraph that
    `line` continues, and what to put between them."""
    if previous.endswith("\u00ad"):
        return 1, ""
    head = _broken(previous)
    if head and line[0].islower():
        tail = _FIRST_LETTERS.match(line)
        return (0 if tail and _keeps_hyphen(head, tail[0], words) else 1), ""
    if previous[-1] in "-‐" and previous[-2:-1].isalnum() and line[0].isalnum():
        return 0, ""
    if previous.endswith("—") and not previous[-2:-1].isspace():
        return 0, ""
    return 0, " "


def _keeps_hyphen(head: str, tail: str, words: Counter[str]) -> bool:
    """Whether `head-` at a line end and `tail` at the next line's start form `head-tail`
    rather than `headtail` (see the module's docstring)."""
    head = head.replace("‐", "-")
    joined, compound = f"{head}{tail}".lower(), f"{head}-{tail}".lower()
    if words[joined] != words[compound]:
        return words[compound] > words[joined]
    if len(head) == 1 or head.isupper() or "-" in head:
        return True
    return words[head.lower()] > 0 and words[tail.lower()] > 0


def _fill(starts: list[int | None], end: int) -> tuple[int, ...]:
    """Page starts, a page without text given the start of the next page with text."""
    filled: list[int] = []
    following = end
    for start in reversed(starts):
        following = following if start is None else start
        filled.append(following)
    return tuple(reversed(filled))
