"""A full disk or a read-only folder: one clear line naming the file, and no file corrupted.

Each case runs the real CLI in a private mount namespace (`unshare`), on a small tmpfs that
fills up or on a read-only bind mount, so it works without touching the machine's mounts
(and without root, where unprivileged user namespaces are allowed).
"""

from __future__ import annotations

import hashlib
import json
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.helpers import BIN, run_cli
from tests.sites import paragraphs


def namespaces_work() -> bool:
    if not shutil.which("unshare"):
        return False
    probe = subprocess.run(
        ["unshare", "-Urm", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt"],
        capture_output=True,
    )
    return probe.returncode == 0


pytestmark = pytest.mark.skipif(
    not namespaces_work(), reason="needs `unshare -Urm` (user and mount namespaces)"
)


def in_namespace(script: str) -> subprocess.CompletedProcess:
    """Run a shell script as root of a private user and mount namespace."""
    return subprocess.run(
        ["unshare", "-Urm", "sh", "-euc", script], capture_output=True, text=True, timeout=300
    )


def raft(*args: str) -> str:
    return shlex.join([str(BIN / "raft"), *args])


def digests(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def write_essays(folder: Path, count: int, first: int = 0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for n in range(first, first + count):
        body = "\n\n".join(paragraphs(f"Essay {n}", 6))
        (folder / f"2021-02-{n % 28 + 1:02d}-essay-{n}.md").write_text(f"# Essay {n}\n\n{body}\n")
    return folder


@pytest.fixture
def persona(tmp_path: Path) -> Path:
    """A persona with a fetched and chunked corpus, on the ordinary disk."""
    data = tmp_path / "data"
    env = {"RAFT_DATA_DIR": str(data)}
    essays = write_essays(tmp_path / "essays", 10)
    assert run_cli("raft", "fetch", "author", "--from", str(essays), env=env).returncode == 0
    assert run_cli("raft", "chunk", "author", env=env).returncode == 0
    return data / "author"


def on_full_disk(persona: Path, out: Path, command: str, free_kb: int) -> tuple[str, int]:
    """Copy the persona onto a tmpfs with `free_kb` left, run `command` there, copy the
    persona back to `out`; returns the command's stderr and exit status."""
    mount = persona.parent / "small"
    mount.mkdir()
    status = out.parent / "status"
    script = f"""
        mount -t tmpfs -o size=4m tmpfs {mount}
        cp -a {persona} {mount}/
        head -c 8M /dev/zero > {mount}/filler 2>/dev/null || true
        truncate -s -{free_kb}K {mount}/filler
        set +e
        RAFT_DATA_DIR={mount} {command} 2> {out.parent}/stderr
        echo $? > {status}
        cp -a {mount}/{persona.name} {out}
    """
    done = in_namespace(script)
    assert done.returncode == 0, done.stderr
    return (out.parent / "stderr").read_text(), int(status.read_text())


def test_a_full_disk_while_chunking_keeps_the_old_chunks(persona, tmp_path):
    before = digests(persona)
    out = tmp_path / "after" / "author"
    out.parent.mkdir()
    # 64-token chunks with overlap write more than the 512-token ones already there.
    stderr, status = on_full_disk(
        persona, out, raft("chunk", "author", "--max-tokens", "64", "--overlap", "24"), 8
    )
    assert status == 1 and "Traceback" not in stderr
    chunks = persona.parent / "small" / "author" / "chunks.jsonl"
    errors = [line for line in stderr.splitlines() if "error" in line]
    assert errors == [f"raft: error: cannot write {chunks}: No space left on device"], stderr
    assert digests(out) == before  # old chunks whole, no temporary file left behind


def test_a_full_disk_while_fetching_keeps_every_whole_document(persona, tmp_path):
    more = write_essays(tmp_path / "more", 40, first=10)
    kept = (persona / "corpus.jsonl").read_bytes()
    out = tmp_path / "after" / "author"
    out.parent.mkdir()
    stderr, status = on_full_disk(persona, out, raft("fetch", "author", "--from", str(more)), 16)
    assert status == 1 and "Traceback" not in stderr
    corpus = persona.parent / "small" / "author" / "corpus.jsonl"
    errors = [line for line in stderr.splitlines() if "error" in line]
    assert errors == [f"raft: error: cannot write {corpus}: No space left on device"], stderr
    written = (out / "corpus.jsonl").read_bytes()
    assert written.startswith(kept) and len(written) > len(kept)  # some documents made it

    # On a disk with room again, the same command completes the corpus without duplicates.
    env = {"RAFT_DATA_DIR": str(out.parent)}
    result = run_cli("raft", "fetch", "author", "--from", str(more), env=env)
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in (out / "corpus.jsonl").read_text().splitlines()]
    assert len(rows) == len({r["id"] for r in rows}) == 50
    assert (out / "corpus.jsonl").read_bytes().startswith(kept)


@pytest.mark.parametrize(
    "args,target",
    [
        (["chunk", "author"], "chunks.jsonl"),
        (["fetch", "author", "--from", "{essays}"], "corpus.jsonl"),
        (
            [
                "transcript:add",
                "author",
                "{interview}",
                "--interviewer",
                "Jo",
                "--date",
                "2022-01-01",
            ],
            "transcripts/2022-01-01-talk.json",
        ),
    ],
    ids=["chunk", "fetch", "transcript:add"],
)
def test_a_read_only_persona_folder_is_named_and_left_alone(persona, tmp_path, args, target):
    essays = write_essays(tmp_path / "new", 1, first=90)
    interview = tmp_path / "talk.txt"
    interview.write_text("Jo: Why essays?\n\nAuthor: Because.\n")
    (persona / "persona.toml").write_text('name = "Author"\n')
    (persona / "transcripts").mkdir()
    before = digests(persona)
    args = [a.format(essays=essays, interview=interview) for a in args]
    script = f"""
        mount --bind {persona} {persona}
        mount -o remount,bind,ro {persona}
        set +e
        RAFT_DATA_DIR={persona.parent} {raft(*args)}
        echo "exit $?" >&2
    """
    done = in_namespace(script)
    lines = done.stderr.strip().splitlines()
    assert lines[-1] == "exit 1" and "Traceback" not in done.stderr, done.stderr
    assert lines[:-1] == [f"raft: error: cannot write {persona / target}: Read-only file system"], (
        done.stderr
    )
    assert digests(persona) == before
