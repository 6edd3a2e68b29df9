"""Personal data in text: e-mail addresses, phone numbers, personal tokens in URLs and the
persona's blocked words. One set of patterns both replaces them (`raft fetch --scrub`) and
finds them (`raft check`)."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import NamedTuple

from raft.errors import UsageError
from raft.paths import Persona

PLACEHOLDERS = {"email": "[email]", "phone": "[phone]", "token": "[token]", "blocked": "[blocked]"}
KINDS = {
    "email": "an e-mail address",
    "phone": "a phone number",
    "token": "a personal token in a URL",
    "blocked": "a blocked word",
}

EMAIL = re.compile(
    r"(?<![\w.%+-])[A-Za-z0-9][\w.%+-]*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b"
)

# Phone numbers are told from other numbers by their shape, and then by their digit count:
# international (+ country code), North American (555-123-4567, (555) 123-4567) and national
# numbers with a trunk 0 (020 7946 0958, 01 23 45 67 89). Years, dates (at most 8 digits),
# ISBNs (no trunk 0 group of 2+ digits, no +), prices and plain digit runs fit none.
_GROUPS = r"(?:[ .-]?\(?\d{1,5}\)?){1,6}"
PHONE = re.compile(
    r"(?<![\w+.-])(?:"
    rf"\+\d{{1,3}}{_GROUPS}"  # +44 20 7946 0958, +1-555-123-4567, +49 (0)30 1234567
    r"|(?:\(\d{3}\) ?|\d{3}[-. ])\d{3}[-. ]\d{4}"  # (555) 123-4567, 555.123.4567
    r"|\(0\d{1,4}\) ?\d{3,8}(?:[ -]\d{3,4})?"  # (020) 7946 0958
    r"|0\d{1,4}(?:[ .-]\d{2,8}){1,4}"  # 020 7946 0958, 07700 900123, 01 23 45 67 89
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
_QUERY_PARAM = re.compile(r"[?&;]([^=&#;\s]+)=([^&#;\s]*)")


class Found(NamedTuple):
    kind: str
    start: int  # what scrubbing replaces: text[start:end]
    end: int
    shown: int  # where the match as reported starts (a token's parameter name)


def blocked_pattern(words: tuple[str, ...]) -> re.Pattern[str] | None:
    """Any of the words or phrases, whole, in any case; the spaces of a phrase match any."""
    phrases = sorted({" ".join(w.split()) for w in words if w.strip()}, key=len, reverse=True)
    if not phrases:
        return None
    alternatives = "|".join(r"\s+".join(map(re.escape, p.split())) for p in phrases)
    return re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)", re.I)


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
    e-mail addresses, phone numbers and blocked words outside them."""
    emails = [Found("email", m.start(), m.end(), m.start()) for m in EMAIL.finditer(text)]
    taken: list[Found] = []
    for candidate in [*_tokens(text), *emails, *_phones(text), *_blocked(text, blocked)]:
        if all(candidate.end <= t.start or candidate.start >= t.end for t in taken):
            taken.append(candidate)
    return sorted(taken, key=lambda f: f.start)


def find_private(text: str, blocked_words: tuple[str, ...] | list[str]) -> list[tuple[str, str]]:
    """(kind, matched text) for each piece of personal data; a token comes with its name."""
    spans = find_spans(text, blocked_pattern(tuple(blocked_words)))
    return [(f.kind, text[f.shown : f.end]) for f in spans]


def hint(kind: str, matched: str) -> str:
    """Enough of a match to find it again, without repeating it."""
    if kind == "email":
        local, _, domain = matched.partition("@")
        return f"{local[:1]}…@…{domain[domain.rfind('.') :]}"
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
    from raft.config import load_config

    words = load_config(persona).get("blocked_words", [])
    if not isinstance(words, list) or not all(isinstance(w, str) for w in words):
        raise UsageError(
            f"{persona.config}: `blocked_words` must be a list of strings, "
            'e.g. blocked_words = ["Jo Park", "Elm Street"]'
        )
    return tuple(words)


def scrubber_for(persona: Persona) -> Scrubber:
    """A scrubber with the persona's blocked words."""
    return Scrubber(blocked_words(persona))


def chosen_scrubber(persona: Persona, asked: bool) -> Scrubber | None:
    """The scrubber for what comes into the persona: once `--scrub` is given, persona.toml
    records `scrub = true`, so every later fetch or import is scrubbed too (a refresh
    without the flag never lets personal data in)."""
    from raft.config import load_config, save_config

    config = load_config(persona)
    if asked and config.get("scrub") is not True:
        save_config(persona, config | {"scrub": True})
    return scrubber_for(persona) if asked or config.get("scrub") is True else None


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
