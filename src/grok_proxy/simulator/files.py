"""Files (multipart upload, list, retrieve, content, delete) and batches built on them."""

from __future__ import annotations

from collections.abc import Awaitable
from email.message import Message
from email.parser import BytesParser
from email.policy import HTTP

from grok_proxy.simulator.chat import chat_completion, chat_turn, turn_usage
from grok_proxy.simulator.core import JSON, Kit, now, ok, xai_error
from grok_proxy.simulator.wire import Outcome, Reply, SimRequest

MAX_FILE_BYTES = 50 * 1000 * 1000  # xAI answers 413 above 50 MB


def form_parts(content_type: str, body: bytes) -> dict[str, tuple[str | None, bytes]]:
    """The fields of a multipart/form-data body: name -> (filename, bytes)."""
    head = f"content-type: {content_type}\r\n\r\n".encode("latin-1")
    parsed = BytesParser(policy=HTTP).parsebytes(head + body)
    parts: dict[str, tuple[str | None, bytes]] = {}
    for part in (
        parsed.iter_parts() if isinstance(parsed, Message) and parsed.is_multipart() else []
    ):
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        if isinstance(name, str) and isinstance(payload, bytes):
            parts[name] = (part.get_filename(), payload)
    return parts


class Files:
    """/v1/files and /v1/batches."""

    def __init__(self, kit: Kit) -> None:
        self.kit = kit
        self.files: dict[str, tuple[JSON, bytes]] = {}
        self.batches: dict[str, JSON] = {}

    def clear(self) -> None:
        self.files.clear()
        self.batches.clear()

    # files
    def upload(self, request: SimRequest) -> Outcome:
        content_type = request.headers.get("content-type", "")
        if not content_type.startswith("multipart/form-data"):
            return xai_error(415, "Expected a multipart/form-data upload.")
        if len(request.body) > MAX_FILE_BYTES:
            return xai_error(413, "File too large: the limit is 50 MB.")
        parts = form_parts(content_type, request.body)
        if "file" not in parts:
            return xai_error(400, "The upload has no `file` part.")
        filename, content = parts["file"]
        purpose = parts.get("purpose", (None, b"assistants"))[1].decode("utf-8", "replace")
        file_id = "file_" + self.kit.next_id()
        info = {
            "id": file_id,
            "object": "file",
            "bytes": len(content),
            "created_at": now(),
            "filename": filename or "upload",
            "purpose": purpose,
        }
        self.files[file_id] = (info, content)
        return ok(info)

    def list_files(self, request: SimRequest) -> Outcome:
        data = [info for info, _ in self.files.values()]
        return ok({"object": "list", "data": data, "has_more": False, "pagination_token": None})

    def retrieve(self, request: SimRequest, file_id: str) -> Outcome:
        found = self.files.get(file_id)
        return ok(found[0]) if found else xai_error(404, f"File {file_id} not found.")

    def content(self, request: SimRequest, file_id: str) -> Outcome:
        found = self.files.get(file_id)
        if found is None:
            return xai_error(404, f"File {file_id} not found.")
        return Reply(200, found[1], content_type="application/octet-stream")

    def delete(self, request: SimRequest, file_id: str) -> Outcome:
        if self.files.pop(file_id, None) is None:
            return xai_error(404, f"File {file_id} not found.")
        return ok({"id": file_id, "object": "file", "deleted": True})

    # batches: requests are answered as soon as they are added, so results are ready at once
    def create_batch(self, request: SimRequest) -> Outcome | Awaitable[Outcome]:
        body = self.kit.json_body(request)
        if isinstance(body, Reply):
            return body
        if not isinstance(body.get("name"), str):
            return xai_error(422, "Failed to deserialize the JSON body: missing field `name`")
        batch_id = "batch_" + self.kit.next_id()
        self.batches[batch_id] = {"name": body["name"], "created": now(), "results": []}
        return ok(self.batch_info(batch_id))

    def batch_info(self, batch_id: str) -> JSON:
        batch = self.batches[batch_id]
        done = len(batch["results"])
        return {
            "batch_id": batch_id,
            "name": batch["name"],
            "create_time": batch["created"],
            "state": {
                "num_requests": done,
                "num_pending": 0,
                "num_success": done,
                "num_error": 0,
                "num_cancelled": 0,
            },
        }

    def get_batch(self, request: SimRequest, batch_id: str) -> Outcome:
        if batch_id not in self.batches:
            return xai_error(404, f"Batch {batch_id} not found.")
        return ok(self.batch_info(batch_id))

    def list_batches(self, request: SimRequest) -> Outcome:
        return ok({"batches": [self.batch_info(b) for b in self.batches], "pagination_token": None})

    def add_requests(self, request: SimRequest, batch_id: str) -> Outcome:
        batch = self.batches.get(batch_id)
        if batch is None:
            return xai_error(404, f"Batch {batch_id} not found.")
        body = self.kit.json_body(request)
        if isinstance(body, Reply):
            return body
        items = body.get("batch_requests")
        if not isinstance(items, list):
            return xai_error(422, "Failed to deserialize the JSON body: missing `batch_requests`")
        for index, item in enumerate(items):
            payload = item.get("batch_request", {}) if isinstance(item, dict) else {}
            chat = payload.get("chat_get_completion") or payload.get("chat_completion") or {}
            model = chat.get("model", "grok-4.3")
            turn = chat_turn(chat, model, {})
            response_id = self.kit.next_id()
            completion = chat_completion(response_id, model, turn, turn_usage(chat, turn, {}))
            request_id = item.get("batch_request_id") if isinstance(item, dict) else None
            batch["results"].append(
                {
                    "batch_request_id": request_id or f"{batch_id}-{len(batch['results'])}",
                    "batch_result": {"response": {"chat_get_completion": completion}},
                    "index": index,
                }
            )
        return ok({})

    def results(self, request: SimRequest, batch_id: str) -> Outcome:
        batch = self.batches.get(batch_id)
        if batch is None:
            return xai_error(404, f"Batch {batch_id} not found.")
        return ok({"results": batch["results"], "pagination_token": None})
