"""A tiny persona for stage tests: dated essays, two training interviews, one held out."""

from __future__ import annotations

import atexit
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tests.helpers import run_cli

TARGET = "Lena Marsh"
# The LLM path of memories (rephrase, gate, judge), not the default extractive one.
FT_GEN = ["ft:gen", "lena", "-k", "2", "--memories", "rephrased"]
FINETUNE_FILES = [
    "raft.jsonl",
    "openai.jsonl",
    "openai.valid.jsonl",
    "messages.jsonl",
    "messages.valid.jsonl",
    "sharegpt.json",
    "stats.json",
    "cache_keys.txt",
]
ESSAYS = {
    "2020-03-01-bees.md": (
        "Rooftop Bees",
        "I keep two hives on the roof of the laundrette on Mill Street. Bees taught me that "
        "a city is a meadow if you count the window boxes. The first summer we took eleven "
        "jars of lime-blossom honey.\n\nThe hardest part is the swarm season in May, when "
        "the old queen leaves with half the colony and you chase them down the high street.",
    ),
    "2020-09-12-bread.md": (
        "Slow Bread",
        "My sourdough starter is called Gerald and he is nine years old. Slow bread is an "
        "argument against hurry: forty hours from flour to loaf.\n\nI give a jar of Gerald "
        "to anyone who asks, on the condition that they give one away too.",
    ),
    "2021-02-20-rivers.md": (
        "Walking the River",
        "Every Sunday I walk the canal from the lock to the gasworks and count herons. The "
        "record is seven. Walking the same route for years is how you learn to see change: "
        "the river is never the same, but you have to be the same walker to notice.",
    ),
    "2021-11-05-bees-again.md": (
        "The Bees Came Back",
        "After the cold winter I lost one hive completely. The survivors built up again by "
        "June, and I learned that a colony is a promise you renew each spring, not a thing "
        "you own.",
    ),
    "2021-12-01-housekeeping.md": (
        "Housekeeping",
        "Thanks for reading Hive Notes! Subscribe for free to receive new posts and support "
        "my work. If you enjoyed this one, share this post with a friend who keeps bees or "
        "bakes bread, and leave a comment below telling me what you would like me to write "
        "about next year.",
    ),
    "2022-10-01-future.md": (
        "Honey Prices",
        "This autumn I started selling the rooftop honey at the Saturday market for nine "
        "pounds a jar, and every penny goes back into new frames.",
    ),
}
INTERVIEWS = {
    "transcripts/2021-06-01-garden-radio.json": {
        "participants": {"q": "Tom Reed", "a": TARGET},
        "date": "2021-06-01",
        "url": "https://radio.example.org/garden/12",
        "exchanges": [
            [
                "How did you start keeping bees on a roof?",
                "The laundrette owner let me put two hives up there. A city is a meadow if you "
                "count the window boxes, so the bees do fine.",
            ],
            [
                "What is the worst month for a beekeeper?",
                "May, without a doubt. Swarm season. I have chased half a colony down the high "
                "street more than once.",
            ],
            [
                "And you bake as well?",
                "Slow bread, yes. Gerald, my starter, is older than my hives. Forty hours from "
                "flour to loaf, and I give his offspring away.",
            ],
        ],
    },
    "transcripts/2022-06-15-city-magazine.json": {
        "participants": {"q": "Ada Flint", "a": TARGET},
        "date": "2022-06-15",
        "url": "https://city.example.org/interviews/marsh",
        "exchanges": [
            [
                "You lost a hive last winter. What did that teach you?",
                "That a colony is a promise you renew every spring. You don't own bees; you keep "
                "faith with them.",
            ],
            [
                "Do you still walk the canal?",
                "Every Sunday, lock to gasworks. Seven herons is still the record. You have to be "
                "the same walker to see the river change.",
            ],
            [
                "Would you ever sell the honey?",
                "I've thought about it. Maybe one day, if it pays for the frames.",
            ],
        ],
    },
    "benchmark/2023-01-10-held-out-podcast.json": {
        "participants": {"q": "Mo Okafor", "a": TARGET},
        "date": "2023-01-10",
        "url": "https://podcast.example.org/ep/77",
        "exchanges": [
            [
                "What does the Saturday market mean to you?",
                "HELD-OUT-ANSWER-ONE: the market is where the roof meets the street.",
            ],
            [
                "Tell me about Gerald.",
                "HELD-OUT-ANSWER-TWO: Gerald is ten now, and has grandchildren all over town.",
            ],
        ],
    },
}


def write_tiny_persona(root: Path) -> Path:
    """Write the persona's inputs under `root` (the persona folder); returns it."""
    (root / "essays").mkdir(parents=True, exist_ok=True)
    (root / "persona.toml").write_text(f'name = "{TARGET}"\nsources = ["essays"]\n')
    for name, (title, body) in ESSAYS.items():
        front = f"---\ntitle: {title}\ndate: {name[:10]}\nlink: https://lena.example.com/{name[11:-3]}\n---\n\n"
        (root / "essays" / name).write_text(front + body + "\n")
    for name, data in INTERVIEWS.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, indent=2))
    return root


def held_out_texts() -> list[str]:
    data = INTERVIEWS["benchmark/2023-01-10-held-out-podcast.json"]
    return [text for pair in data["exchanges"] for text in pair]


def write_finetune(root: Path, memory_style: str = "rephrased") -> Path:
    """`finetune/messages(.valid).jsonl` for the tiny persona, rendered by the real
    conversation code with one fixed memory per question, so training tests need no ft:gen
    run; `stats.json` records the conversation spec, as ft:gen's does.

    Tests of the memory plumbing of chat, serve and the benchmark use the extractive style:
    SmolLM2-135M's rephrasings of the tiny persona almost never pass the gate before the
    judge (29 of 30 dropped), so in the rephrased style they would see no memories."""
    from raft.conversation import ConversationSpec, Exchange, render, system_prompt
    from raft.dataset import to_trl
    from raft.memory import Memory

    memory = Memory("bees:0", "bees", "Rooftop Bees", "", "2020-03-01", "", 0.1)
    memory.rephrased = "I keep two hives on the laundrette roof; the window boxes feed them."
    spec = ConversationSpec(target=TARGET, k=2, memory_style=memory_style)
    rows = []
    for name, data in INTERVIEWS.items():
        if not name.startswith("transcripts/"):
            continue
        system = system_prompt(TARGET, data["participants"]["q"], data["date"])
        history = [Exchange(q, a, [memory]) for q, a in data["exchanges"]]
        for index, (question, answer) in enumerate(data["exchanges"]):
            rendered = render(
                system, history[:index], question, [memory], [spec.budget], answer=answer
            )
            rows.append(to_trl(rendered.messages) | {"id": f"{name}#{index}"})
    out = root / "finetune"
    out.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps(row) + "\n" for row in rows]
    (out / "messages.jsonl").write_text("".join(lines[:-1]))
    (out / "messages.valid.jsonl").write_text(lines[-1])
    stats = {"samples": len(rows), "real_samples": len(rows), "synthetic_samples": 0}
    stats["memories"] = {"kept": len(rows)}
    (out / "stats.json").write_text(json.dumps(stats | {"spec": spec.to_row()}))
    return out


_BUILT: list[Path] = []  # the store made once per test session through the CLI


def build_store(data: Path) -> dict[str, str]:
    """Inputs, corpus, chunks and store for persona `lena` in `data`; returns the CLI env.

    The first call runs fetch, chunk and embed; later calls copy what it made (a persona
    folder holds no path of its own), so each caller still gets a folder of its own. With
    RAFT_CHROMA_URL set the store lives on that server, so it is built anew each time."""
    if os.environ.get("RAFT_CHROMA_URL"):
        _build(data)
        return cli_env(data)
    if not _BUILT:
        template = Path(tempfile.mkdtemp(prefix="raft-tiny-store-"))
        atexit.register(shutil.rmtree, template, ignore_errors=True)
        _build(template)
        _BUILT.append(template)
    lock = shutil.ignore_patterns(".lock")
    shutil.copytree(_BUILT[0] / "lena", data / "lena", ignore=lock, dirs_exist_ok=True)
    return cli_env(data)


def _build(data: Path) -> None:
    write_tiny_persona(data / "lena")
    for command in (
        ["fetch", "lena"],
        ["chunk", "lena", "--max-tokens", "64", "--overlap", "8"],
        ["embed", "lena"],
    ):
        result = run_cli("raft", *command, env=cli_env(data))
        assert result.returncode == 0, result.stderr


@dataclass(frozen=True)
class TrainedLora:
    """A `raft ft:run` of the tiny persona: its `models` folder and the finished process."""

    models: Path
    result: subprocess.CompletedProcess


def add_lora(persona: Path, lora: TrainedLora) -> str:
    """Write the extractive-memory training files into `persona` and copy beside them the
    `models` folder of a LoRA trained on the same files (conftest's extractive_lora; the
    registry names them by relative path and sha256, and write_finetune writes the same bytes
    each time); returns the run id, as `raft ft:run` prints it."""
    write_finetune(persona, memory_style="extractive")
    shutil.copytree(lora.models, persona / "models", ignore=shutil.ignore_patterns(".lock"))
    (record,) = registry(persona)
    return record["id"]


def cli_env(data: Path) -> dict[str, str]:
    return {"RAFT_DATA_DIR": str(data), "RAFT_KEY_FILE": str(data / "no-keys.toml")}


def digests(folder: Path) -> dict[str, str]:
    """sha256 of each file ft:gen writes in `folder`."""
    return {n: hashlib.sha256((folder / n).read_bytes()).hexdigest() for n in FINETUNE_FILES}


def finetune_persona(root: Path) -> tuple[Path, dict[str, str]]:
    """The tiny persona in `root/data` with its training files written; its folder and the
    environment that points raft at it."""
    data = root / "data"
    write_finetune(write_tiny_persona(data / "lena"))
    return data / "lena", {"RAFT_DATA_DIR": str(data)}


def registry(persona: Path) -> list[dict]:
    """The persona's model records, oldest first."""
    return json.loads((persona / "models" / "registry.json").read_text())["models"]
