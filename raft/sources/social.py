"""Social archives: an X/Twitter archive's `tweets.js`, a Mastodon `outbox.json`, a Bluesky
repository `.car`.

Only the author's own posts are kept (no retweets, boosts or reposts). A post replying to
the author's own post continues that post's thread, and a thread is one document dated by
its first post; a reply to someone else is a document of its own.
"""

from __future__ import annotations

import functools
import html
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from raft.dates import normalize_date
from raft.sources import Document, Failure, Item, read_text

TITLE_CHARS = 60
PUBLIC = {"https://www.w3.org/ns/activitystreams#Public", "as:Public", "Public"}
X_PARTS = re.compile(r"tweets?(-part\d+)?\.js", re.I)  # tweet.js in older archives
_LEADING_MENTIONS = re.compile(r"\A(?:\s*@[\w.-]+(?:@[\w.-]+)?)+\s*")
_EPOCH = datetime.min.replace(tzinfo=UTC)


@dataclass
class _Post:
    id: str
    parent: str  # the id of the post it replies to; "" when none
    when: datetime | None
    text: str
    link: str
    order: str = ""  # breaks ties between posts of the same instant


# -- threads ---------------------------------------------------------------------------------


def _sort_key(post: _Post) -> tuple:
    return (post.when is None, post.when or _EPOCH, post.order, post.id)


def _threads(posts: Iterable[_Post]) -> list[list[_Post]]:
    """The posts grouped into threads, each in time order, threads ordered by their start.

    A post joins the thread of its parent when the parent is one of `posts`; anything else
    starts a thread of its own."""
    by_id = {post.id: post for post in posts}
    children: dict[str, list[_Post]] = {}
    for post in by_id.values():
        if post.parent and post.parent in by_id and post.parent != post.id:
            children.setdefault(post.parent, []).append(post)
    roots = [p for p in by_id.values() if not (p.parent in by_id and p.parent != p.id)]
    seen: set[str] = set()
    threads = []
    # Posts caught in a reply loop have no root; they start threads after the rest.
    for root in sorted(roots, key=_sort_key) + sorted(by_id.values(), key=_sort_key):
        if root.id in seen:
            continue
        thread, stack = [], [root]
        while stack:
            post = stack.pop()
            if post.id in seen:
                continue
            seen.add(post.id)
            thread.append(post)
            stack.extend(children.get(post.id, []))
        threads.append(sorted(thread, key=_sort_key))
    return sorted(threads, key=lambda thread: _sort_key(thread[0]))


def _title(text: str) -> str:
    """The start of a post, about TITLE_CHARS characters, cut on a word boundary."""
    words = " ".join(text.split())
    if len(words) <= TITLE_CHARS:
        return words
    cut = words.rfind(" ", 0, TITLE_CHARS + 1)
    return words[: cut if cut > TITLE_CHARS // 2 else TITLE_CHARS].rstrip(" ,;:-") + "…"


def _thread_documents(
    posts: Iterable[_Post], source: str, starts: set[str] | None = None
) -> Iterator[Document]:
    """One document per thread; with `starts`, only the threads whose first post is in it.

    A post without text (a photo alone) still links its thread, but adds nothing to it."""
    for thread in _threads(posts):
        first = thread[0]
        texts = [post.text.strip() for post in thread if post.text.strip()]
        if not texts or (starts is not None and first.id not in starts):
            continue
        yield Document(
            title=_title(texts[0]),
            link=first.link,
            date=first.when.date().isoformat() if first.when else "",
            content="\n\n".join(texts),
            source=source,
        )


def _parse_time(value: object) -> datetime | None:
    """An aware datetime from an ISO 8601 or Twitter timestamp; None when unreadable."""
    if not isinstance(value, str) or not value.strip():
        return None
    for parse in (
        lambda v: datetime.fromisoformat(v),
        lambda v: datetime.strptime(v, "%a %b %d %H:%M:%S %z %Y"),
    ):
        try:
            when = parse(value.strip())
        except ValueError:
            continue
        return when if when.tzinfo else when.replace(tzinfo=UTC)
    iso = normalize_date(value)
    return datetime.fromisoformat(iso).replace(tzinfo=UTC) if iso else None


# -- X / Twitter -----------------------------------------------------------------------------


def _parse_ytd(text: str) -> object:
    """The JSON of an archive file: `window.YTD.<name>.partN = [...]`."""
    text = text.strip()
    if not text.startswith(("[", "{")):
        head, equals, text = text.partition("=")
        if not equals or not head.strip().startswith("window."):
            raise ValueError("no `window.YTD... = [...]` assignment")
    return _json(text.strip().rstrip(";"))


def _json(text: str) -> object:
    """`json.loads`, where JSON nested too deeply for its decoder is a ValueError like any
    other bad JSON, so the file is reported and the rest of a folder still read."""
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError("nested too deeply") from None


def _x_account(folder: Path) -> tuple[str, str]:
    """(account id, username) from the archive's `account.js`, or ("", "") without one."""
    try:
        data = _parse_ytd((folder / "account.js").read_text(encoding="utf-8-sig"))
        account = data[0]["account"] if isinstance(data, list) else data["account"]
        return str(account.get("accountId") or ""), str(account.get("username") or "")
    except (OSError, ValueError, KeyError, IndexError, TypeError, AttributeError):
        return "", ""


def _x_tweets(path: Path) -> list[dict] | str:
    """The tweet objects of one `tweets.js` part, or why it cannot be read."""
    text = read_text(path)
    if isinstance(text, Failure):
        return text.reason
    try:
        data = _parse_ytd(text)
    except ValueError as exc:
        return f"not an X archive tweets file: {exc}"
    if not isinstance(data, list):
        return "not an X archive tweets file: expected a list of tweets"
    tweets = [row.get("tweet", row) if isinstance(row, dict) else None for row in data]
    if any(not isinstance(t, dict) or "id_str" not in t for t in tweets):
        return "not an X archive tweets file: an entry is not a tweet with an `id_str`"
    return tweets


def _stamp(path: Path) -> tuple[str, int, int]:
    try:
        stat = path.stat()
    except OSError:
        return (str(path), 0, 0)
    return (str(path), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=1)
def _x_archive(stamps: tuple[tuple[str, int, int], ...]) -> dict[str, list[dict] | str]:
    """Every part of one archive, read once however many of its parts are fetched."""
    return {name: _x_tweets(Path(name)) for name, _, _ in stamps}


def _tweet_text(tweet: dict, is_reply: bool) -> str:
    text = str(tweet.get("full_text") or tweet.get("text") or "")
    start = (tweet.get("display_text_range") or [0])[0]
    try:
        start = int(start)
    except (TypeError, ValueError):
        start = 0
    if 0 < start <= len(text) and _LEADING_MENTIONS.fullmatch(text[:start] + " "):
        text = text[start:]  # the @names a reply is addressed to are not its text
    elif is_reply:
        text = _LEADING_MENTIONS.sub("", text, count=1)
    entities = {**(tweet.get("entities") or {}), **(tweet.get("extended_entities") or {})}
    for url in entities.get("urls") or []:
        if isinstance(url, dict) and url.get("url") and url.get("expanded_url"):
            text = text.replace(str(url["url"]), str(url["expanded_url"]))
    for media in entities.get("media") or []:
        if isinstance(media, dict) and media.get("url"):
            text = text.replace(str(media["url"]), "")  # a link to a photo is not writing
    return html.unescape(text).strip()


def _is_retweet(tweet: dict) -> bool:
    text = str(tweet.get("full_text") or tweet.get("text") or "")
    return text.startswith("RT @") or tweet.get("retweeted") in (True, "true")


def x_documents(file: Path, source: str) -> Iterator[Item]:
    """The author's tweets and threads from an X/Twitter archive's `tweets.js`.

    Threads may run across the archive's parts (`tweets-part1.js`, ...): each part yields
    the threads that start in it."""
    folder = file.parent.resolve()
    try:
        # A part linked from outside the archive's folder is not read, as in a folder fetch.
        parts = sorted(
            p
            for p in file.parent.iterdir()
            if X_PARTS.fullmatch(p.name) and p.resolve().is_relative_to(folder)
        )
    except OSError:
        parts = []
    if file not in parts:
        parts.append(file)
    archive = _x_archive(tuple(_stamp(p) for p in parts))
    mine = archive[str(file)]
    if isinstance(mine, str):
        yield Failure(str(file), mine)
        return
    account_id, username = _x_account(file.parent)
    tweets = {
        str(tweet["id_str"]): (name, tweet)
        for name, part in archive.items()
        if not isinstance(part, str)
        for tweet in part
        if not _is_retweet(tweet)
    }
    posts = []
    for tweet_id, (name, tweet) in tweets.items():
        parent = str(tweet.get("in_reply_to_status_id_str") or "")
        to_user = str(tweet.get("in_reply_to_user_id_str") or "")
        own_parent = parent in tweets and (not account_id or not to_user or to_user == account_id)
        link = f"https://x.com/{username or 'i'}/status/{tweet_id}"
        post = _Post(
            tweet_id,
            parent if own_parent else "",
            _parse_time(tweet.get("created_at")),
            _tweet_text(tweet, bool(parent)),
            link,
            order=tweet_id.rjust(24, "0"),  # ids grow with time
        )
        posts.append((name, post))
    starts = {post.id for name, post in posts if name == str(file)}
    yield from _thread_documents((post for _, post in posts), source, starts)


# -- Mastodon --------------------------------------------------------------------------------


def _html_text(content: str) -> str:
    from raft.sources.pages import html_to_text

    # A line break inside a paragraph separates words that text_content() would join.
    return html_to_text(re.sub(r"(?i)<br\s*/?>", "\n", content))


def _addressees(*objects: dict) -> set[str]:
    found: set[str] = set()
    for obj in objects:
        for field in ("to", "cc"):
            value = obj.get(field)
            values = value if isinstance(value, list) else [value]
            found.update(v for v in values if isinstance(v, str))
    return found


def _object_id(value: object) -> str:
    if isinstance(value, dict):
        value = value.get("id")
    return value if isinstance(value, str) else ""


def mastodon_documents(file: Path, source: str) -> Iterator[Item]:
    """The author's public posts and threads from a Mastodon (ActivityPub) `outbox.json`.

    Boosts are left out, and so are posts not addressed to the public (direct messages,
    followers-only posts): they are not writing the author published."""
    text = read_text(file)
    if isinstance(text, Failure):
        yield text
        return
    try:
        outbox = _json(text)
    except ValueError as exc:
        yield Failure(str(file), f"not JSON: {exc}")
        return
    items = outbox.get("orderedItems") if isinstance(outbox, dict) else None
    if not isinstance(items, list):
        yield Failure(str(file), "not an ActivityPub outbox (no `orderedItems` list)")
        return
    posts, private = [], 0
    for number, activity in enumerate(items):
        if not isinstance(activity, dict) or activity.get("type") != "Create":
            continue  # Announce (a boost), Like, Follow, ...
        note = activity.get("object")
        if not isinstance(note, dict) or note.get("type") not in {"Note", "Question", "Article"}:
            continue
        if not _addressees(note, activity) & PUBLIC:
            private += 1
            continue
        content = note.get("content")
        if not isinstance(content, str):
            content_map = note.get("contentMap")
            content = next(iter(content_map.values()), "") if isinstance(content_map, dict) else ""
        parent = _object_id(note.get("inReplyTo"))
        text = _html_text(str(content))
        if parent:
            text = _LEADING_MENTIONS.sub("", text, count=1)
        note_id = _object_id(note)
        url = note.get("url")
        link = url if isinstance(url, str) else _object_id(url) or note_id
        note_id = note_id or link or f"#{number}"  # ids join threads; each post needs one
        posts.append(_Post(note_id, parent, _parse_time(note.get("published")), text, link))
    if private:
        from raft.console import warn

        posts_word = "post" if private == 1 else "posts"
        warn(f"{file}: left out {private} private {posts_word} (direct messages, followers-only)")
    yield from _thread_documents(posts, source)


# -- Bluesky ---------------------------------------------------------------------------------

POST = "app.bsky.feed.post"


def _link(value: object) -> str:
    """A CID link as its string form; libipld gives links as CID bytes."""
    from libipld import encode_cid

    if isinstance(value, bytes | str):
        return encode_cid(value)
    raise ValueError(f"expected a CID link, got {type(value).__name__}")


def _mst_records(
    blocks: dict[str, object], root: str, missing: set[str]
) -> Iterator[tuple[str, str]]:
    """(key, record CID) for every entry of the Merkle search tree at `root`; the subtrees
    that are not in `blocks` are added to `missing`."""
    seen: set[str] = set()
    stack = [root]
    while stack:
        cid = stack.pop()
        if cid in seen:
            continue
        if cid not in blocks:
            missing.add(cid)  # a partial export may leave subtrees out
            continue
        seen.add(cid)
        node = blocks[cid]
        if not isinstance(node, dict) or not isinstance(node.get("e"), list):
            raise ValueError("a repository tree node is not an MST node")
        if node.get("l") is not None:
            stack.append(_link(node["l"]))
        key = b""
        for entry in node["e"]:
            rest = entry["k"]
            key = key[: int(entry["p"])] + (rest.encode() if isinstance(rest, str) else rest)
            yield key.decode("utf-8"), _link(entry["v"])
            if entry.get("t") is not None:
                stack.append(_link(entry["t"]))


def _bluesky_text(record: dict) -> str:
    """The post's text with each link facet's shortened display replaced by its full URL."""
    text = str(record.get("text") or "")
    raw = text.encode("utf-8")
    spans = []
    for facet in record.get("facets") or []:
        try:
            start, end = int(facet["index"]["byteStart"]), int(facet["index"]["byteEnd"])
            uri = next(
                f["uri"]
                for f in facet["features"]
                if f.get("$type") == "app.bsky.richtext.facet#link" and f.get("uri")
            )
        except (KeyError, TypeError, ValueError, StopIteration, AttributeError):
            continue
        if 0 <= start < end <= len(raw):
            spans.append((start, end, str(uri)))
    last = len(raw) + 1
    for start, end, uri in sorted(spans, reverse=True):
        if end <= last:  # overlapping facets: keep the later one
            raw, last = raw[:start] + uri.encode("utf-8") + raw[end:], start
    return raw.decode("utf-8", errors="replace").strip()


def _bluesky_posts(data: bytes, missing: set[str]) -> list[_Post]:
    """The posts of a repository export; subtrees it leaves out are added to `missing`."""
    from libipld import decode_car

    header, raw_blocks = decode_car(data)
    blocks = {_link(cid): block for cid, block in raw_blocks.items()}
    roots = header.get("roots") if isinstance(header, dict) else None
    if not roots:
        raise ValueError("the CAR header names no root")
    commit = blocks.get(_link(roots[0]))
    if not isinstance(commit, dict) or "data" not in commit or "did" not in commit:
        raise ValueError("the root is not a repository commit (`did`, `data`)")
    did = str(commit["did"])
    posts = []
    for key, cid in _mst_records(blocks, _link(commit["data"]), missing):
        collection, _, rkey = key.partition("/")
        record = blocks.get(cid)
        if collection != POST or not isinstance(record, dict):
            continue  # reposts, likes, follows, ...
        parent = ""
        reply = record.get("reply")
        if isinstance(reply, dict) and isinstance(reply.get("parent"), dict):
            uri = str(reply["parent"].get("uri") or "")
            if uri.startswith(f"at://{did}/{POST}/"):
                parent = uri.rsplit("/", 1)[1]
            elif uri:
                parent = uri  # someone else's post: never one of ours
        posts.append(
            _Post(
                rkey,
                parent,
                _parse_time(record.get("createdAt")),
                _bluesky_text(record),
                f"https://bsky.app/profile/{did}/post/{rkey}",
                order=rkey,  # record keys are timestamp ids
            )
        )
    return posts


def bluesky_documents(file: Path, source: str) -> Iterator[Item]:
    """The author's posts and threads from a Bluesky repository export (`.car`)."""
    missing: set[str] = set()
    try:
        posts = _bluesky_posts(file.read_bytes(), missing)
    except OSError as exc:
        yield Failure(str(file), exc.strerror or str(exc))
        return
    except (ValueError, KeyError, TypeError, IndexError, AttributeError) as exc:
        yield Failure(str(file), f"not a Bluesky repository export: {exc}")
        return
    if missing:
        from raft.console import warn

        nodes = "node" if len(missing) == 1 else "nodes"
        warn(f"{file}: left out the posts under {len(missing)} missing repository tree {nodes}")
    yield from _thread_documents(posts, source)
