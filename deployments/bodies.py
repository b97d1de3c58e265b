"""JSON request bodies in and error replies out, shared by the gateway and the recommender.

One parse on the hot path (pydantic reads the bytes itself), and one error shape everywhere:
400 for a body that is not a JSON object, 422 naming every offending field by its dotted
location (`context.timezone`, `k`), `{"error": ..., "fields": [...]}`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar

import orjson
from pydantic import BaseModel, ValidationError

RequestT = TypeVar("RequestT", bound=BaseModel)


@dataclass(frozen=True)
class Reply:
    """What the HTTP layer sends back: status, JSON bytes, extra headers."""

    status: int
    body: bytes
    headers: dict[str, str] | None = None


def error_reply(status: int, message: str, **extra: Any) -> Reply:
    """A JSON error body `{"error": message, ...}`."""
    return Reply(status, orjson.dumps({"error": message, **extra}))


def invalid_reply(exc: ValidationError) -> Reply:
    """422 listing every offending field by its dotted location."""
    fields = [
        {"field": ".".join(str(p) for p in err["loc"]) or "body", "message": err["msg"]}
        for err in exc.errors()
    ]
    names = ", ".join(f["field"] for f in fields)
    return error_reply(422, f"invalid request: {names}", fields=fields)


def parse_json(raw: bytes) -> dict[str, Any] | Reply:
    """The body as a JSON object, or the 400 that says why not."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return error_reply(400, "the body is not valid JSON; send a JSON object")
    if not isinstance(body, dict):
        return error_reply(400, "the body must be a JSON object")
    return body


def parse_request(raw: bytes, model: type[RequestT]) -> RequestT | Reply:
    """The validated request, or the 400 (not a JSON object) / 422 (bad fields) that says why.

    Only a body pydantic rejects is parsed again, to tell a body that is not a JSON object
    (400) from a bad field (422).
    """
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        body = parse_json(raw)
        return body if isinstance(body, Reply) else invalid_reply(exc)
