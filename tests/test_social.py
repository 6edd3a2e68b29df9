"""`raft fetch --from` social archives: X/Twitter, Mastodon, Bluesky, each written here in
the shape its service exports."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import libipld

from raft.files import read_jsonl
from tests.helpers import run_cli

OWN_ID, USERNAME = "4242", "lenamarsh"
DID = "did:plc:lenamarsh7rooftop"


def corpus(data_dir: Path) -> list[dict]:
    return list(read_jsonl(data_dir / "author" / "corpus.jsonl"))


def fetch(source: Path):
    result = run_cli("raft", "fetch", "author", "--from", str(source))
    assert result.returncode == 0, result.stderr
    return result


def words(texts) -> int:
    return sum(len(text.split()) for text in texts)


# -- X / Twitter -----------------------------------------------------------------------------

THREAD = [
    "Swarm season starts next week and I am already checking the hives twice a day for "
    "queen cells.",
    "The trick is space: give them a new box before they decide the house is too small.",
    "And if they go anyway, a bucket, a ladder and a lot of patience.",
]


def tweet(id_str: str, text: str, when: str, **fields) -> dict:
    return {"tweet": {"id_str": id_str, "full_text": text, "created_at": when, **fields}}


def self_reply(id_str: str, text: str, when: str, parent: str, **fields) -> dict:
    return tweet(
        id_str,
        text,
        when,
        in_reply_to_status_id_str=parent,
        in_reply_to_user_id_str=OWN_ID,
        in_reply_to_screen_name=USERNAME,
        **fields,
    )


def write_ytd(path: Path, name: str, rows: list) -> None:
    path.write_text(f"window.YTD.{name}.part0 = {json.dumps(rows, indent=2)}")


def write_x_archive(root: Path, account: bool = True) -> Path:
    """An unzipped archive: the first two tweets of the thread in `tweets.js`, newest first
    as X writes them, and the thread's last tweet in `tweets-part1.js`."""
    data = root / "data"
    data.mkdir(parents=True)
    if account:
        account_row = {"account": {"accountId": OWN_ID, "username": USERNAME}}
        write_ytd(data / "account.js", "account", [account_row])
    rows = [
        tweet(
            "1005",
            "@tom_reed I agree, the canal is best at dawn.",
            "Sat Jun 02 06:10:00 +0000 2018",
            in_reply_to_status_id_str="777",
            in_reply_to_user_id_str="555",
            display_text_range=["10", "45"],
        ),
        tweet(
            "1004",
            "RT @beeswax: Someone else's words about wax moths",
            "Fri Jun 01 12:00:00 +0000 2018",
            retweeted=False,
        ),
        self_reply(
            "1010",
            "https://t.co/PhOtO1",  # a photo alone, in the middle of the thread
            "Thu May 31 09:01:30 +0000 2018",
            parent="1003",
            entities={"media": [{"url": "https://t.co/PhOtO1"}]},
        ),
        self_reply("1003", THREAD[1], "Thu May 31 09:01:00 +0000 2018", parent="1002"),
        tweet("1002", THREAD[0], "Thu May 31 09:00:00 +0000 2018"),
        tweet(
            "1001",
            "New post on slow bread https://t.co/AbC123 and a photo https://t.co/PiC999",
            "Tue May 01 18:30:00 +0000 2018",
            entities={
                "urls": [
                    {"url": "https://t.co/AbC123", "expanded_url": "https://lena.example.com/bread"}
                ],
                "media": [{"url": "https://t.co/PiC999"}],
            },
        ),
        tweet("1000", "Bees &amp; bread &lt;3", "Sun Apr 01 23:59:00 +0000 2018"),
    ]
    write_ytd(data / "tweets.js", "tweets", rows)
    part1 = [self_reply("1006", THREAD[2], "Thu May 31 09:02:00 +0000 2018", parent="1010")]
    (data / "tweets-part1.js").write_text(f"window.YTD.tweets.part1 = {json.dumps(part1)}")
    return root


X_EXPECTED = {  # first tweet id -> (date, content)
    "1000": ("2018-04-01", "Bees & bread <3"),
    "1001": ("2018-05-01", "New post on slow bread https://lena.example.com/bread and a photo"),
    "1002": ("2018-05-31", "\n\n".join(THREAD)),
    "1005": ("2018-06-02", "I agree, the canal is best at dawn."),
}


def test_x_archive_keeps_own_tweets_and_joins_threads(data_dir, tmp_path):
    result = fetch(write_x_archive(tmp_path / "archive"))
    assert "4 new" in result.stdout and "0 failed" in result.stdout
    docs = {d["link"]: d for d in corpus(data_dir)}
    assert set(docs) == {f"https://x.com/{USERNAME}/status/{i}" for i in X_EXPECTED}
    for tweet_id, (date, content) in X_EXPECTED.items():
        doc = docs[f"https://x.com/{USERNAME}/status/{tweet_id}"]
        assert (doc["date"], doc["content"]) == (date, content)
    thread = docs[f"https://x.com/{USERNAME}/status/1002"]
    # One document, in order, although its last tweet is in another part of the archive.
    assert thread["title"] == "Swarm season starts next week and I am already checking the…"
    assert not any("wax moths" in d["content"] or "RT @" in d["content"] for d in docs.values())
    assert words(d["content"] for d in docs.values()) == words(c for _, c in X_EXPECTED.values())


def test_x_archive_without_account_file_still_joins_threads(data_dir, tmp_path):
    fetch(write_x_archive(tmp_path / "archive", account=False))
    docs = {d["link"]: d for d in corpus(data_dir)}
    assert set(docs) == {f"https://x.com/i/status/{i}" for i in X_EXPECTED}
    assert docs["https://x.com/i/status/1002"]["content"] == "\n\n".join(THREAD)


# -- Mastodon --------------------------------------------------------------------------------

ACTOR = "https://social.example/users/lena"
PUBLIC = "https://www.w3.org/ns/activitystreams#Public"


def create(number: int, content: str, published: str, to=(PUBLIC,), cc=(), reply=None) -> dict:
    note_id = f"{ACTOR}/statuses/{number}"
    note = {
        "id": note_id,
        "type": "Note",
        "url": f"https://social.example/@lena/{number}",
        "published": published,
        "attributedTo": ACTOR,
        "inReplyTo": reply,
        "to": list(to),
        "cc": list(cc),
        "content": content,
    }
    return {"id": f"{note_id}/activity", "type": "Create", "actor": ACTOR, "object": note}


def write_outbox(path: Path) -> Path:
    items = [
        create(
            1,
            "<p>Swarm season &amp; me.</p><p>Second paragraph<br />on two lines.</p>",
            "2022-05-01T08:00:00Z",
            cc=(f"{ACTOR}/followers",),
        ),
        create(2, "<p>Gerald the starter turns ten today.</p>", "2022-06-01T10:00:00Z"),
        create(
            3,
            "<p>He has grandchildren all over <a href='https://town.example'>town</a>.</p>",
            "2022-06-01T10:05:00Z",
            to=(f"{ACTOR}/followers",),
            cc=(PUBLIC,),  # unlisted: still public
            reply=f"{ACTOR}/statuses/2",
        ),
        {
            "id": f"{ACTOR}/statuses/4/activity",
            "type": "Announce",
            "actor": ACTOR,
            "object": "https://other.example/users/tom/statuses/9",
            "to": [PUBLIC],
        },
        create(
            5,
            '<p><span class="h-card"><a href="https://other.example/@tom" class="u-url mention">'
            "@<span>tom</span></a></span> Thanks for the frames!</p>",
            "2022-07-04T12:00:00+02:00",
            reply="https://other.example/users/tom/statuses/10",
        ),
        create(
            6,
            "<p>Private note: the SECRETWORD for the shed lock.</p>",
            "2022-07-05T12:00:00Z",
            to=("https://other.example/users/tom",),
        ),
    ]
    outbox = {
        "@context": "https://www.w3.org/ns/activitystreams",
        "id": f"{ACTOR}/outbox",
        "type": "OrderedCollection",
        "totalItems": len(items),
        "orderedItems": items,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(outbox, indent=2))
    return path


MASTODON_EXPECTED = {
    "https://social.example/@lena/1": (
        "2022-05-01",
        "Swarm season & me.\n\nSecond paragraph on two lines.",
    ),
    "https://social.example/@lena/2": (
        "2022-06-01",
        "Gerald the starter turns ten today.\n\nHe has grandchildren all over town.",
    ),
    "https://social.example/@lena/5": ("2022-07-04", "Thanks for the frames!"),
}


def test_mastodon_outbox_keeps_public_posts_and_joins_threads(data_dir, tmp_path):
    result = fetch(write_outbox(tmp_path / "mastodon" / "outbox.json"))
    assert "3 new" in result.stdout and "0 failed" in result.stdout
    assert "1 private" in result.stderr  # the direct message is counted, not kept
    docs = {d["link"]: d for d in corpus(data_dir)}
    assert set(docs) == set(MASTODON_EXPECTED)
    for link, (date, content) in MASTODON_EXPECTED.items():
        assert (docs[link]["date"], docs[link]["content"]) == (date, content)
    assert docs["https://social.example/@lena/2"]["title"] == "Gerald the starter turns ten today."
    text = " ".join(d["content"] for d in docs.values())
    assert "<" not in text and "SECRETWORD" not in text and "statuses/9" not in text
    assert words(d["content"] for d in docs.values()) == words(
        c for _, c in MASTODON_EXPECTED.values()
    )


# -- Bluesky ---------------------------------------------------------------------------------


def cid_of(block: bytes) -> bytes:
    """CIDv1, dag-cbor (0x71), sha2-256 (0x12, 32 bytes)."""
    return bytes([0x01, 0x71, 0x12, 0x20]) + hashlib.sha256(block).digest()


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


class Repo:
    """Blocks of a repository, written as a CARv1 file."""

    def __init__(self):
        self.blocks: dict[bytes, bytes] = {}

    def put(self, value: dict) -> bytes:
        block = libipld.encode_dag_cbor(value)  # CID bytes are encoded as tag-42 links
        cid = cid_of(block)
        self.blocks[cid] = block
        return cid

    def mst_node(self, entries: list[tuple[str, bytes, bytes | None]], left=None) -> bytes:
        """An MST node over sorted (key, record CID, right subtree) with prefix-compressed keys."""
        rows, previous = [], b""
        for key, value, subtree in entries:
            raw = key.encode()
            shared = 0
            while shared < min(len(raw), len(previous)) and raw[shared] == previous[shared]:
                shared += 1
            rows.append({"p": shared, "k": raw[shared:], "v": value, "t": subtree})
            previous = raw
        return self.put({"l": left, "e": rows})

    def car(self, root: bytes) -> bytes:
        header = libipld.encode_dag_cbor({"version": 1, "roots": [root]})
        out = varint(len(header)) + header
        for cid, block in self.blocks.items():
            out += varint(len(cid) + len(block)) + cid + block
        return out


BSKY_THREAD = [
    "Counting herons on the canal this morning: six, one short of the record.",
    "Update: the seventh turned up by the gasworks. Record equalled.",
]


def post_record(text: str, created: str, parent: str | None = None, **fields) -> dict:
    record = {"$type": "app.bsky.feed.post", "text": text, "createdAt": created, **fields}
    if parent:
        ref = {"uri": parent, "cid": "bafyreidfake"}
        record["reply"] = {"root": ref, "parent": ref}
    return record


def write_bluesky_repo(path: Path) -> Path:
    repo = Repo()
    own = f"at://{DID}/app.bsky.feed.post/"
    records = {
        "app.bsky.actor.profile/self": {"$type": "app.bsky.actor.profile", "displayName": "Lena"},
        "app.bsky.feed.post/3kaaaaaaaaa22": post_record(BSKY_THREAD[0], "2023-03-05T07:10:00.000Z"),
        "app.bsky.feed.post/3kbbbbbbbbb22": post_record(
            BSKY_THREAD[1], "2023-03-05T08:30:00.000Z", parent=own + "3kaaaaaaaaa22"
        ),
        "app.bsky.feed.post/3kccccccccc22": post_record(
            "Honey at the market, nine pounds a jar: market.example/honey...",
            "2023-04-01T09:00:00.000Z",
            facets=[
                {
                    "index": {"byteStart": 40, "byteEnd": 63},
                    "features": [
                        {
                            "$type": "app.bsky.richtext.facet#link",
                            "uri": "https://market.example/honey/saturday",
                        }
                    ],
                }
            ],
        ),
        "app.bsky.feed.post/3kddddddddd22": post_record(
            "Lovely photo of your frames!",
            "2023-04-02T09:00:00.000Z",
            parent="at://did:plc:tomreed/app.bsky.feed.post/3kzzzzzzzzz22",
        ),
        "app.bsky.feed.repost/3keeeeeeeee22": {
            "$type": "app.bsky.feed.repost",
            "subject": {"uri": "at://did:plc:tomreed/app.bsky.feed.post/3kyyyy", "cid": "x"},
            "createdAt": "2023-04-03T09:00:00.000Z",
        },
    }
    cids = {key: repo.put(record) for key, record in records.items()}
    keys = sorted(cids)
    # Two nodes: the first two keys in the left subtree, the rest in the root node.
    left = repo.mst_node([(k, cids[k], None) for k in keys[:2]])
    root = repo.mst_node([(k, cids[k], None) for k in keys[2:]], left=left)
    commit = repo.put(
        {"did": DID, "version": 3, "data": root, "rev": "3kfffff", "prev": None, "sig": b"s"}
    )
    data = repo.car(commit)
    assert b"\xd8\x2a" in repo.blocks[root]  # the links really are DAG-CBOR CID links
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


BSKY_EXPECTED = {  # rkey -> (date, content)
    "3kaaaaaaaaa22": ("2023-03-05", "\n\n".join(BSKY_THREAD)),
    "3kccccccccc22": (
        "2023-04-01",
        "Honey at the market, nine pounds a jar: https://market.example/honey/saturday",
    ),
    "3kddddddddd22": ("2023-04-02", "Lovely photo of your frames!"),
}


def test_bluesky_repository_keeps_own_posts_and_joins_threads(data_dir, tmp_path):
    result = fetch(write_bluesky_repo(tmp_path / "bsky" / "repo.car"))
    assert "3 new" in result.stdout and "0 failed" in result.stdout
    docs = {d["link"]: d for d in corpus(data_dir)}
    links = {f"https://bsky.app/profile/{DID}/post/{rkey}": v for rkey, v in BSKY_EXPECTED.items()}
    assert set(docs) == set(links)
    for link, (date, content) in links.items():
        assert (docs[link]["date"], docs[link]["content"]) == (date, content)
    thread = docs[f"https://bsky.app/profile/{DID}/post/3kaaaaaaaaa22"]
    assert thread["title"] == "Counting herons on the canal this morning: six, one short of…"
    assert words(d["content"] for d in docs.values()) == words(c for _, c in BSKY_EXPECTED.values())


# -- corrupt archives ------------------------------------------------------------------------


def test_corrupt_archives_are_failures_and_the_rest_is_fetched(data_dir, tmp_path):
    src = tmp_path / "exports"
    (src / "x" / "data").mkdir(parents=True)
    (src / "x" / "data" / "tweets.js").write_text('window.YTD.tweets.part0 = [{"tweet": {"id_')
    (src / "mastodon").mkdir()
    (src / "mastodon" / "outbox.json").write_text('{"type": "OrderedCollection", "orderedIt')
    whole = write_bluesky_repo(tmp_path / "whole.car").read_bytes()
    (src / "repo.car").write_bytes(whole[: len(whole) - 20])  # a download cut short
    (src / "notes.md").write_text("# Notes\n\nStill here.\n")
    result = run_cli("raft", "fetch", "author", "--from", str(src))
    assert result.returncode == 0, result.stderr
    assert "1 new" in result.stdout and "3 failed" in result.stdout
    for name in ("tweets.js", "outbox.json", "repo.car"):
        assert f"{name}: " in result.stderr
    assert "Traceback" not in result.stderr
    assert [d["content"] for d in corpus(data_dir)] == ["Still here."]
