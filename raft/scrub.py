"""Personal data in text: e-mail addresses, phone numbers, personal tokens in URLs and the
persona's blocked words. One set of patterns both replaces them (`raft fetch --scrub`) and
finds them (`raft check`), on one normalised copy of the text (`normalise`), so that a
full-width @, a Cyrillic letter or a zero-width space inside a name hides nothing."""

from __future__ import annotations

import re
import unicodedata
from bisect import bisect_right
from collections import Counter
from dataclasses import dataclass, field
from functools import cache
from typing import NamedTuple

from raft.config import load_config
from raft.paths import Persona

PLACEHOLDERS = {"email": "[email]", "phone": "[phone]", "token": "[token]", "blocked": "[blocked]"}
KINDS = {
    "email": "an e-mail address",
    "phone": "a phone number",
    "token": "a personal token in a URL",
    "blocked": "a blocked word",
}

# What normalising changes, one piece at a time: a character with its combining marks, a
# percent-encoded @ (an address in a link's query) or any other non-ASCII character.
_CHANGED = re.compile(
    r"(?s:.)[\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f]+"
    r"|%40|[^\x00-\x7f]"
)
_INVISIBLE = {"\u034f", *map(chr, range(0xFE00, 0xFE10))}  # and every format character (Cf)
_DOTS = {"\u3002", "\uff61"}  # ideographic full stops, which IDNA reads as dots


@dataclass(frozen=True)
class Normalised:
    """A text as the patterns read it, and the way back to the original's offsets: NFKC,
    lower case, no zero-width characters or soft hyphens, dashes as "-", and letters that
    look Latin (Cyrillic а, Greek ο) as the Latin letter."""

    text: str
    # (start, end) in `text`, then (start, end) in the original, of each changed piece.
    pieces: tuple[tuple[int, int, int, int], ...]
    ends: tuple[int, ...]  # each piece's end in `text`, to find a piece by bisection

    def span(self, start: int, end: int) -> tuple[int, int]:
        """Where text[start:end] is in the original: every piece it touches, whole."""
        return self._char(start)[0], self._char(end - 1)[1]

    def _char(self, at: int) -> tuple[int, int]:
        k = bisect_right(self.ends, at)  # the first piece ending after `at`
        if k < len(self.pieces) and self.pieces[k][0] <= at:
            return self.pieces[k][2], self.pieces[k][3]
        # Unchanged text: as far from the end of the piece before as in `text`.
        shift = self.pieces[k - 1][3] - self.pieces[k - 1][1] if k else 0
        return at + shift, at + shift + 1


def normalise(text: str) -> Normalised:
    """The copy of `text` that scrubbing and `raft check` match against."""
    out, pieces, at, length = [], [], 0, 0
    for match in _CHANGED.finditer(text):
        plain = text[at : match.start()].lower()
        folded = _fold(match.group())
        out += [plain, folded]
        length += len(plain)
        if len(folded) != len(match.group()):
            pieces.append((length, length + len(folded), match.start(), match.end()))
        length += len(folded)
        at = match.end()
    out.append(text[at:].lower())
    return Normalised("".join(out), tuple(pieces), tuple(piece[1] for piece in pieces))


@cache
def _fold(piece: str) -> str:
    if piece == "%40":
        return "@"
    # NFKC, but not of symbols: "Hartwell™" would become one word, "hartwelltm".
    kept = unicodedata.category(piece[0]).startswith("S")
    return "".join(map(_fold_char, piece if kept else unicodedata.normalize("NFKC", piece)))


@cache
def _fold_char(char: str) -> str:
    if unicodedata.category(char) == "Cf" or char in _INVISIBLE:
        return ""
    if char in _DOTS:
        return "."
    if unicodedata.category(char) == "Pd" or char == "\u2212":  # dashes, the minus sign
        return "-"
    if char.isascii():
        return char.lower()
    # Cyrillic Н looks like H, but its lower case н like no Latin letter: try both forms.
    for form in (char, char.casefold()):
        if latin := _latin_lookalike(form):
            return latin.lower()
    return unicodedata.normalize("NFC", char.casefold())


def _latin_lookalike(char: str) -> str:
    """The ASCII letter that Unicode's confusables (UTS #39) say `char` can pass for."""
    from confusable_homoglyphs import confusables

    if len(char) != 1:
        return ""
    found = confusables.is_confusable(char, greedy=True, preferred_aliases=["latin"]) or []
    letters = [
        glyph["c"]
        for item in found
        for glyph in item["homoglyphs"]
        if len(glyph["c"]) == 1 and glyph["c"].isascii() and glyph["c"].isalpha()
    ]
    return letters[0] if letters else ""


# Patterns read the normalised text (lower case, NBSP a space, an en dash a hyphen).
# An @ is also "[at]", "(at)", "{at}" or "<at>", a dot "[dot]" and so on; a bare " at "
# is prose ("look at example dot com"). A domain may be an IDN, in any script or punycode.
_AT = r"(?:@|[ \t]*[\[({<][ \t]*at[ \t]*[\])}>][ \t]*)"
_DOT = r"(?:\.|[ \t]*[\[({<][ \t]*dot[ \t]*[\])}>][ \t]*)"
_LABEL = r"(?:[^\W_]|-)+"
EMAIL = re.compile(
    rf"(?<![\w.%+-])\w[\w.%+'-]*{_AT}{_LABEL}(?:{_DOT}{_LABEL})*{_DOT}"
    r"(?:xn--[a-z0-9-]+|[^\W\d_]{2,})\b"
)

# Phone numbers are told from other numbers by their shape, and then by their digit count:
# international (+ country code), North American (555-123-4567, (555) 123-4567) and national
# numbers with a trunk 0 (020 7946 0958, 01 23 45 67 89). Years, dates (at most 8 digits),
# ISBNs (no trunk 0 group of 2+ digits, no +), prices and plain digit runs fit none.
# Groups are apart by a space, dot or hyphen, or by a line break where the text wrapped.
_SEP = r"(?:[ .-]|\r?\n)"
_SPACE = r"(?: |\r?\n)?"
_GROUPS = rf"(?:{_SEP}?\(?\d{{1,5}}\)?){{1,6}}"
PHONE = re.compile(
    r"(?<![\w+.-])(?:"
    rf"\+\d{{1,3}}{_GROUPS}"  # +44 20 7946 0958, +1-555-123-4567, +49 (0)30 1234567
    rf"|(?:\(\d{{3}}\){_SPACE}|\d{{3}}{_SEP})\d{{3}}{_SEP}\d{{4}}"  # (555) 123-4567
    rf"|\(0\d{{1,4}}\){_SPACE}\d{{3,8}}(?:[ -]\d{{3,4}})?"  # (020) 7946 0958
    rf"|0\d{{1,4}}(?:{_SEP}\d{{2,8}}){{1,4}}"  # 020 7946 0958, 07700 900123, 01 23 45 67 89
    r")(?![\w-]|[.,]\d)"
)
PHONE_DIGITS = {"+": (8, 15), "": (9, 12)}  # E.164 allows 15; a national number 9 to 12

# Query parameters that carry who someone is or what lets them in.
TOKEN_NAMES = {
    "token", "access_token", "refresh_token", "id_token", "auth", "auth_token", "authorization",
    "key", "api_key", "apikey", "sig", "signature", "session", "session_id", "sessionid", "sid",
    "email", "e-mail", "mail", "uid", "user_id", "userid", "code", "password", "pass", "pwd",
    "secret", "ticket", "otp", "jwt", "hash", "x-amz-signature", "x-amz-credential",
    "x-amz-security-token", "x-goog-signature", "x-goog-credential",
}  # fmt: skip
_TOKEN_SUFFIX = re.compile(r"(?:token|secret|signature|password|[_-]key)$")
# A URL ends at a space, a quote or a closing bracket, but not at a placeholder put there.
URL = re.compile(r"\bhttps?://(?:\[token\]|[^\s<>\"'`)\]}])+", re.I)
# A fragment's parameters (#access_token=… after an OAuth redirect) count as the query's.
_QUERY_PARAM = re.compile(r"[?&;#]([^=&#;\s]+)=([^&#;\s]*)")


class Found(NamedTuple):
    kind: str
    start: int  # what scrubbing replaces: text[start:end]
    end: int
    shown: int  # where the match as reported starts (a token's parameter name)


@cache
def blocked_pattern(words: tuple[str, ...]) -> re.Pattern[str] | None:
    """Any of the words or phrases, whole, normalised as the text is; the spaces of a phrase
    match any space or hyphen, and a hyphen (or one at a line's end) may split a word."""
    phrases = {" ".join(normalise(w).text.split()) for w in words} - {""}
    if not phrases:
        return None
    split = r"(?:-\r?\n?)?"
    alternatives = "|".join(
        r"[\s-]+".join(split.join(map(re.escape, word)) for word in phrase.split())
        for phrase in sorted(phrases, key=len, reverse=True)
    )
    # Whole: no letter just before or after (a digit may be there: "Hartwell²" a footnote).
    return re.compile(rf"(?<![^\W\d_])(?:{alternatives})(?![^\W\d_])")


def _tokens(text: str) -> list[Found]:
    found = []
    for url in URL.finditer(text):
        for param in _QUERY_PARAM.finditer(url.group()):
            # A sentence's full stop after a URL is not part of the value.
            name, value = param.group(1).lower(), param.group(2).rstrip(".,!?:")
            if (
                value
                and value != PLACEHOLDERS["token"]
                and (name in TOKEN_NAMES or _TOKEN_SUFFIX.search(name))
            ):
                at = url.start() + param.start(2)
                found.append(Found("token", at, at + len(value), url.start() + param.start(1)))
    return found


def _phones(text: str) -> list[Found]:
    found = []
    for match in PHONE.finditer(text):
        number = match.group()
        low, high = PHONE_DIGITS["+" if number.startswith("+") else ""]
        if low <= sum(c.isdigit() for c in number) <= high:
            found.append(Found("phone", match.start(), match.end(), match.start()))
    return found


def _blocked(text: str, pattern: re.Pattern[str] | None) -> list[Found]:
    if pattern is None:
        return []
    found = []
    for match in pattern.finditer(text):
        start, end = match.span()
        # Text scrubbed already: a blocked word that is also a placeholder's name stays put.
        if text[start - 1 : start] == "[" and text[end : end + 1] == "]":
            continue
        found.append(Found("blocked", start, end, start))
    return found


def find_spans(text: str, blocked: re.Pattern[str] | None) -> list[Found]:
    """Every piece of personal data in the text, in order, none overlapping: tokens, then
    e-mail addresses, phone numbers and blocked words outside them. Matched in the
    normalised text; the offsets are the original's, so scrubbing keeps the rest as it is."""
    norm = normalise(text)
    flat = norm.text
    emails = [Found("email", m.start(), m.end(), m.start()) for m in EMAIL.finditer(flat)]
    taken: list[Found] = []  # in order of start; none overlaps, so neighbours tell
    for candidate in [*_tokens(flat), *emails, *_phones(flat), *_blocked(flat, blocked)]:
        k = bisect_right(taken, candidate.start, key=lambda f: f.start)
        if (not k or taken[k - 1].end <= candidate.start) and (
            k == len(taken) or candidate.end <= taken[k].start
        ):
            taken.insert(k, candidate)
    spans, last = [], 0
    for found in taken:
        start, end = norm.span(found.start, found.end)
        start = max(start, last)  # two matches inside one piece ("ß" is "ss"): one replaces it
        if start < end:
            spans.append(Found(found.kind, start, end, norm.span(found.shown, found.end)[0]))
            last = end
    return spans


def find_private(text: str, blocked_words: tuple[str, ...] | list[str]) -> list[tuple[str, str]]:
    """(kind, matched text) for each piece of personal data; a token comes with its name."""
    spans = find_spans(text, blocked_pattern(tuple(blocked_words)))
    return [(f.kind, text[f.shown : f.end]) for f in spans]


def hint(kind: str, matched: str) -> str:
    """Enough of a match to find it again, without repeating it."""
    if kind == "email":
        domain = re.split(_AT, normalise(matched).text, maxsplit=1)[-1]
        return f"{matched[:1]}…@….{re.split(_DOT, domain)[-1]}"
    if kind == "phone":
        return f"…{''.join(c for c in matched if c.isdigit())[-2:]}"
    if kind == "token":
        return f"{matched.partition('=')[0]}=…"
    return f"{matched[:1]}… ({len(matched)} characters)"


@dataclass
class Scrubber:
    """Replaces personal data with placeholders, counting each kind replaced."""

    blocked_words: tuple[str, ...] = ()
    counts: Counter[str] = field(default_factory=Counter)
    _blocked: re.Pattern[str] | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._blocked = blocked_pattern(self.blocked_words)

    def scrub(self, text: str) -> str:
        """The text with every e-mail address, phone number, URL token and blocked word
        replaced by [email], [phone], [token] or [blocked]."""
        pieces, at = [], 0
        for found in find_spans(text, self._blocked):
            pieces += [text[at : found.start], PLACEHOLDERS[found.kind]]
            at = found.end
            self.counts[found.kind] += 1
        return "".join(pieces) + text[at:]


def blocked_words(persona: Persona) -> tuple[str, ...]:
    """`blocked_words = [...]` from persona.toml; anything but a list of strings is refused."""
    return load_config(persona).blocked_words


def scrubber_for(persona: Persona) -> Scrubber:
    """A scrubber with the persona's blocked words."""
    return Scrubber(blocked_words(persona))


def chosen_scrubber(persona: Persona, asked: bool) -> Scrubber | None:
    """The scrubber for what comes into the persona: with `--scrub`, or when persona.toml
    records `scrub = true`, as a fetch or import with `--scrub` does once it has written
    something, so a refresh without the flag never lets personal data in."""
    return scrubber_for(persona) if asked or load_config(persona).scrub else None


def describe_counts(counts: Counter[str]) -> str:
    """The kinds found, counted in words ("2 e-mail addresses, 1 phone number"), or "nothing"."""
    names = {
        "email": ("e-mail address", "e-mail addresses"),
        "phone": ("phone number", "phone numbers"),
        "token": ("URL token", "URL tokens"),
        "blocked": ("blocked word", "blocked words"),
    }
    parts = [
        f"{counts[kind]} {one if counts[kind] == 1 else many}"
        for kind, (one, many) in names.items()
        if counts[kind]
    ]
    return ", ".join(parts) or "nothing"
