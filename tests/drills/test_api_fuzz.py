"""Fuzz the gateway's and the recommender's HTTP APIs from their OpenAPI: never a 5xx.

schemathesis generates valid and invalid requests (positive and negative modes) for every
operation, driven by hypothesis here (schemathesis' own pytest plugin does not run under this
pytest: it sets `Function._nodeid`, which pytest 9 no longer has). Each generated request is
sent without a token, with a wrong / viewer token and with the role that may act, and no answer
may be a server error. The recommender publishes its OpenAPI (BentoML's /docs.json). The
gateway's routes read the raw body (FastAPI `Request`), so its published OpenAPI has no body
schemas: the spec fuzzed here is built from the very pydantic models the gateway validates with
(crossfade/serving/api.py, deployments/gateway/admin.py).

The stack runs as in production: fault injection off (so /admin/faults is refused, never used).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import mlflow
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel
from schemathesis import GenerationMode

from crossfade.config import Settings
from crossfade.serving.api import FeedbackBatch, FeedbackRequest, RecommendRequest
from deployments.gateway.admin import PromoteBody, StartBody, _Body
from deployments.serve import Stack, start_stack
from model_registry.ranker import MODEL_NAME as RANKER
from tests.fixtures.stack import RM, SLOT_ADMIN, VIEWER, stack_settings, trained_world

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_server")]

MAX_EXAMPLES = 15  # per operation; each example is sent once per credential
WRONG = {"authorization": "Bearer not-a-token"}
ALIASES = ("champion", "challenger", "previous_champion")


@pytest.fixture(scope="module")
def fuzz_settings(tmp_path_factory: pytest.TempPathFactory, prefect_server: None) -> Settings:
    trained = trained_world(tmp_path_factory)
    return stack_settings(
        trained,
        tmp_path_factory.mktemp("fuzz"),
        gateway={"slot_timeout_ms": 2500, "last_resort_timeout_ms": 5000},
    )


def _alias_snapshot(settings: Settings) -> dict[str, dict[str, str]]:
    client = mlflow.MlflowClient(settings.tracking_uri)
    return {
        name: {a: str(v) for a, v in client.get_registered_model(name).aliases.items()}
        for name in (settings.candidates.model_name, RANKER)
    }


@pytest.fixture(scope="module")
def stack(fuzz_settings: Settings) -> Iterator[Stack]:
    # A release manager's fuzzed calls may start or promote a real rollout: put the registry's
    # aliases back afterwards, for the modules that share this trained world.
    before = _alias_snapshot(fuzz_settings)
    try:
        with start_stack(fuzz_settings) as running:
            yield running
    finally:
        client = mlflow.MlflowClient(fuzz_settings.tracking_uri)
        for name, aliases in before.items():
            for alias in ALIASES:
                if alias in aliases:
                    client.set_registered_model_alias(name, alias, aliases[alias])
                elif alias in client.get_registered_model(name).aliases:
                    client.delete_registered_model_alias(name, alias)


def _configured(raw: dict[str, Any], base_url: str) -> Any:
    schema = schemathesis.openapi.from_dict(raw)
    schema.config.update(base_url=base_url, request_timeout=30)
    return schema


@pytest.fixture(scope="module")
def recommender_schema(stack: Stack) -> Any:
    """Blue's own OpenAPI, as BentoML publishes it."""
    raw = httpx.get(f"{stack.url('blue')}/docs.json", timeout=30).json()
    assert {"/recommend", "/feedback", "/feedback/batch", "/admin/reload", "/admin/faults"} <= set(
        raw["paths"]
    )
    return _configured(raw, stack.url("blue"))


def _body(model: type[BaseModel], components: dict[str, Any]) -> dict[str, Any]:
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    components.update(schema.pop("$defs", {}))
    components[model.__name__] = schema
    ref = {"$ref": f"#/components/schemas/{model.__name__}"}
    return {"required": True, "content": {"application/json": {"schema": ref}}}


def gateway_openapi() -> dict[str, Any]:
    """The gateway's routes with the request models it validates bodies against."""
    components: dict[str, Any] = {}
    answers = {"default": {"description": "any answer but a 5xx"}}
    limit = {
        "name": "limit",
        "in": "query",
        "required": False,
        "schema": {"type": "integer", "minimum": 1, "maximum": 500},
    }
    paths: dict[str, Any] = {
        "/recommend": {"post": {"requestBody": _body(RecommendRequest, components)}},
        "/feedback": {"post": {"requestBody": _body(FeedbackRequest, components)}},
        "/feedback/batch": {"post": {"requestBody": _body(FeedbackBatch, components)}},
        "/admin/release/status": {"get": {}},
        "/admin/release/history": {"get": {"parameters": [limit]}},
        "/admin/release/incidents": {"get": {"parameters": [limit]}},
        "/admin/release/start": {"post": {"requestBody": _body(StartBody, components)}},
        "/admin/release/promote": {"post": {"requestBody": _body(PromoteBody, components)}},
    }
    for action in ("pause", "resume", "rollback"):
        paths[f"/admin/release/{action}"] = {"post": {"requestBody": _body(_Body, components)}}
    for operations in paths.values():
        for operation in operations.values():
            operation["responses"] = answers
    return {
        "openapi": "3.0.3",
        "info": {"title": "crossfade gateway", "version": "1"},
        "paths": paths,
        "components": {"schemas": components},
    }


@pytest.fixture(scope="module")
def gateway_schema(stack: Stack) -> Any:
    return _configured(gateway_openapi(), stack.gateway_url)


def _send_with_each(case: Any, credentials: list[dict[str, str]]) -> None:
    for headers in credentials:
        response = case.call(headers=headers, timeout=30)
        assert response.status_code < 500, (
            f"{case.method} {case.formatted_path} with {sorted(headers) or 'no token'}: "
            f"{response.status_code} {response.text[:500]}"
        )


def fuzz(schema: Any, credentials: list[dict[str, str]]) -> list[str]:
    """Every operation of `schema`, MAX_EXAMPLES valid + invalid requests; returns failures."""
    failures: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    assert operations, "the schema has no operations"
    for operation in operations:
        cases = st.one_of(
            operation.as_strategy(GenerationMode.POSITIVE),
            operation.as_strategy(GenerationMode.NEGATIVE),
        )

        @settings(
            max_examples=MAX_EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=cases)
        def run(case: Any) -> None:
            _send_with_each(case, credentials)

        try:
            run()
        except AssertionError as exc:  # hypothesis re-raises the minimal failing example
            failures.append(f"{operation.method.upper()} {operation.path}: {exc}")
    return failures


def test_recommender_api_never_answers_5xx(recommender_schema: Any) -> None:
    failures = fuzz(recommender_schema, [{}, WRONG, SLOT_ADMIN])
    assert not failures, "\n".join(failures)


def test_gateway_public_and_admin_api_never_answer_5xx(gateway_schema: Any) -> None:
    failures = fuzz(gateway_schema, [{}, WRONG, VIEWER, RM])
    assert not failures, "\n".join(failures)


def test_gateway_still_serves_after_the_fuzzing(stack: Stack) -> None:
    # No fuzzed request may have broken a process: every slot and the gateway still answer.
    for name in ("gateway", "blue", "green", "shadow"):
        assert httpx.get(f"{stack.url(name)}/readyz", timeout=30).status_code == 200, name
