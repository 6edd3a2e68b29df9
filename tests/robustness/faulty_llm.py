"""An OpenAI-compatible chat server on 127.0.0.1 whose replies follow a script of faults.

Each request takes the next behaviour from `script` (then "ok" once it is empty):
"429" (with Retry-After), "500", "hang" (longer than the client's timeout), "badjson"
(text where a schema asked for JSON), "cut" (a stream closed after its first chunk).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from typing import Any

from fastapi import Request


def instance(schema: dict[str, Any], n: int = 0) -> Any:
    """A minimal valid value for a JSON schema (what a well-behaved model would return); the
    `n`th item of an array takes the `n`th value of an enum, so a batch names each memory."""
    if "enum" in schema:
        return schema["enum"][n % len(schema["enum"])]
    kind = schema.get("type")
    if kind == "object":
        return {k: instance(v, n) for k, v in schema.get("properties", {}).items()}
    if kind == "array":
        return [instance(schema["items"], k) for k in range(schema.get("minItems", 1))]
    return {"boolean": True, "integer": 1, "number": 1.0, "string": "ok"}.get(kind, "ok")


class FaultyLLM:
    def __init__(self, reply: str = "A fine reply."):
        self.reply = reply
        self.script: list[str] = []
        self.calls = 0
        self.lock = threading.Lock()

    def next(self) -> str:
        with self.lock:
            self.calls += 1
            return self.script.pop(0) if self.script else "ok"

    def content(self, body: dict[str, Any]) -> str:
        fmt = body.get("response_format") or {}
        schema = (fmt.get("json_schema") or {}).get("schema") or fmt.get("schema")
        return json.dumps(instance(schema)) if schema else self.reply

    def app(self) -> Any:
        from fastapi import FastAPI
        from fastapi.responses import JSONResponse, StreamingResponse

        app = FastAPI()

        @app.post("/v1/chat/completions")
        async def chat(request: Request):
            body = await request.json()
            behaviour = self.next()
            if behaviour == "429":
                error = {"error": {"message": "slow down", "type": "rate_limit"}}
                return JSONResponse(error, 429, headers={"retry-after-ms": "50"})
            if behaviour == "500":
                return JSONResponse({"error": {"message": "boom", "type": "server"}}, 500)
            if behaviour == "hang":
                await asyncio.sleep(5)
            text = "this is not JSON" if behaviour == "badjson" else self.content(body)
            if body.get("stream"):
                return StreamingResponse(self.chunks(text, cut=behaviour == "cut"))
            return {
                "id": "chatcmpl-1",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body.get("model", "faulty"),
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": text},
                        "finish_reason": "stop",
                    }
                ],
            }

        return app

    @staticmethod
    async def chunks(text: str, cut: bool):
        for n, word in enumerate(text.split(" ")):
            chunk = {
                "id": "chatcmpl-1",
                "object": "chat.completion.chunk",
                "created": 0,
                "model": "faulty",
                "choices": [{"index": 0, "delta": {"content": word + " "}, "finish_reason": None}],
            }
            yield f"data: {json.dumps(chunk)}\n\n"
            if cut and n == 0:
                raise ConnectionResetError("cut mid-stream")  # uvicorn drops the connection
        yield "data: [DONE]\n\n"
