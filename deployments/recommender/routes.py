"""The recommender's listener-facing routes as plain FastAPI routes on the BentoML service.

POST /recommend, /feedback and /feedback/batch.

A `@bentoml.api` method costs CPU on every request before and after the model runs (its IO
descriptors validate the body into a model and back into arguments, a hop to a worker thread,
the request context). These routes read the bytes, validate them once (deployments/bodies.py:
400 not a JSON object, 422 naming each bad field, as the gateway answers) and hand them to the
service, which answers on the event loop; measured (A/B on one machine, 50 listeners), the
recommender's CPU per request fell by about a fifth. The admin routes stay `@bentoml.api`
methods: rare, and slow anyway (a reload). The routes still run inside BentoML's server (its
metrics, timeout and health endpoints), and the OpenAPI it publishes at /docs.json carries
the request and answer schemas, so clients and the fuzz drill read the contract from the
service itself. Every body arrives through deployments/bodies.py:BodyLimits, which the service
installs on all its routes (413 too large, 408 too slow, as at the gateway).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import Response

from crossfade.serving.api import (
    FeedbackBatch,
    FeedbackRequest,
    RecommendRequest,
    RecommendResponse,
)
from deployments.bodies import Reply, error_reply

Handler = Callable[[bytes], Awaitable[Reply]]
_handlers: dict[str, Handler] = {}  # the process's service, registered when it is constructed


def serve_with(**handlers: Handler) -> None:
    """Route each path (`recommend`, `feedback`, `feedback_batch`) to the service's handler
    (the service object calls this once it exists)."""
    _handlers.update(handlers)


async def _answer(name: str, request: Request) -> Response:
    handler = _handlers.get(name)
    if handler is None:
        reply = error_reply(503, "the recommender is starting; retry when /readyz answers 200")
    else:
        reply = await handler(await request.body())
    return Response(reply.body, reply.status, reply.headers, media_type="application/json")


def inline_schema(model: type[BaseModel]) -> dict[str, Any]:
    """`model`'s JSON schema with its `$defs` references written in place.

    BentoML merges a mounted app's paths into its OpenAPI but not schemas that only an
    `openapi_extra` mentions, so the schema must stand alone.
    """
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return resolve(defs[ref.removeprefix("#/$defs/")])
            return {key: resolve(value) for key, value in node.items()}
        if isinstance(node, list):
            return [resolve(value) for value in node]
        return node

    resolved: dict[str, Any] = resolve(schema)
    return resolved


def _json(model: type[BaseModel], description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": inline_schema(model)}},
    }


def _no_schema(description: str) -> dict[str, Any]:
    """An answer documented by its description only (JSON, shape not published)."""
    return {"description": description, "content": {"application/json": {}}}


def _operation(body: type[BaseModel], answers: dict[str, Any]) -> dict[str, Any]:
    """OpenAPI for a JSON-body route: the body's schema and every answer it can give."""
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": inline_schema(body)}},
        },
        "responses": {
            **answers,
            "400": _no_schema("the body is not a JSON object"),
            "408": _no_schema("the body did not arrive within serving.body_timeout_seconds"),
            "413": _no_schema("the body is larger than serving.max_body_bytes"),
            "422": _no_schema("a field is invalid; `fields` names each one and its limit"),
            "503": _no_schema("the service is still starting"),
        },
    }


app = FastAPI(title="crossfade recommender", openapi_url=None, docs_url=None, redoc_url=None)


def _route(path: str, name: str, body: type[BaseModel], answers: dict[str, Any], what: str) -> None:
    """Add POST `path`, handed to the service's `name` handler, documented with `body`."""

    async def endpoint(request: Request) -> Response:
        return await _answer(name, request)

    endpoint.__doc__ = what
    app.add_api_route(
        path,
        endpoint,
        methods=["POST"],
        name=name,
        summary=what,
        response_class=Response,
        status_code=int(next(iter(answers))),  # the success answer, listed first
        openapi_extra=_operation(body, answers),
    )


_route(
    "/recommend",
    "recommend",
    RecommendRequest,
    {"200": _json(RecommendResponse, "ranked items (possibly a documented fallback)")},
    "Recommendations for one listener, shelf and context (contract: docs/serving.md)",
)
_route(
    "/feedback",
    "feedback",
    FeedbackRequest,
    {"202": _no_schema("logged and counted")},
    "A play, skip or save of a recommended item: logged and counted",
)
_route(
    "/feedback/batch",
    "feedback_batch",
    FeedbackBatch,
    {"202": _no_schema("every event logged and counted")},
    "A listening session's plays, skips and saves in one call, validated whole first",
)
