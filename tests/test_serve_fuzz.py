"""Property-based fuzzing of every route from the service's own OpenAPI schema (schemathesis, in process).

Inputs that fit the schema and inputs that do not, with an admin key, a verify-only key and no key: whatever
arrives, the answer is never a 5xx, its status is one the schema documents, and its body matches the schema
(which also rules out NaN or Infinity, as the body must parse as JSON), and a route the schema says needs a key
refuses a request without one while the open ``/health`` is marked open. Bounded: a fixed number of examples per
route, no shrinking, derandomised so that CI runs the same cases every time.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    response_schema_conformance,
    status_code_conformance,
)

from ge2e.inference import model_fingerprint
from ge2e.model import SpeakerEncoder
from ge2e.serve import ServeConfig, SpeakerStore, create_app
from ge2e.serve.keys import KeyStore, Role
from serve_server import KEY, tiny_model

EXAMPLES_PER_ROUTE = 30
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    ignored_auth,  # a route that declares a key refuses requests without one
]


@pytest.fixture(scope="module")
def fuzz_target(tmp_path_factory: pytest.TempPathFactory) -> tuple[schemathesis.BaseSchema, dict[str, str]]:
    tmp = tmp_path_factory.mktemp("fuzz")
    model = SpeakerEncoder.load(tiny_model(tmp / "tiny.pt"))
    fingerprint = model_fingerprint(model)[:16]
    store = SpeakerStore(tmp / "db.sqlite", fingerprint, model.embedding_size)
    _, verify_key = KeyStore(store.db).add("other", Role.VERIFY)
    config = ServeConfig(threshold=0.5, max_upload_bytes=256 * 1024, max_audio_seconds=5, rate_per_minute=0)
    app = create_app(model, store, [KEY], config, fingerprint)
    return schemathesis.openapi.from_asgi("/openapi.json", app), {"admin": KEY, "verify": verify_key}


def test_no_5xx_and_schema_conformant_answers(fuzz_target) -> None:
    schema, keys = fuzz_target
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 15, [op.label for op in operations]
    for operation in operations:
        cases = st.one_of(*(operation.as_strategy(mode) for mode in GenerationMode))

        @given(case=cases)
        @settings(
            max_examples=EXAMPLES_PER_ROUTE,
            deadline=None,
            derandomize=True,  # the same cases on every run: a CI failure reproduces
            database=None,
            phases=[Phase.generate],  # bounded time: no shrinking, no replay
            suppress_health_check=list(HealthCheck),
        )
        def fuzz(case: schemathesis.Case) -> None:
            for key in (None, keys["verify"], keys["admin"]):  # the admin last: its DELETEs may succeed
                headers = {"Authorization": f"Bearer {key}"} if key else {}
                case.call_and_validate(headers=headers, checks=CHECKS)

        fuzz()
