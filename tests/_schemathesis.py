"""A bounded schemathesis 4 run over every operation of an OpenAPI schema, used by the in-process and the
served-app tests. Positive and negative cases per operation; the checks say the API answers what it documents.
Bounded by the number of cases (hypothesis' max_examples, derandomized), never by the clock: on a busy machine
the run takes longer, it does not test less (the tests' process timeout is what bounds a hang)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

# The body size limit cannot be written in JSON Schema: a schema-valid body over it is a documented 413.
POSITIVE_STATUSES = ["2xx", "404", "413"]
NEGATIVE_STATUSES = ["400", "401", "404", "413"]  # 401: a case without the key


def config():
    import schemathesis

    return schemathesis.Config.from_dict({"checks": {
        "positive_data_acceptance": {"expected-statuses": POSITIVE_STATUSES},
        "negative_data_rejection": {"expected-statuses": NEGATIVE_STATUSES},
    }})


@dataclass
class RunStats:
    requests: int = 0
    statuses: Counter = field(default_factory=Counter)
    per_operation: Counter = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    no_cases: list[str] = field(default_factory=list)
    tried: list[str] = field(default_factory=list)  # every "operation mode" the run generated cases for

    @property
    def untested(self) -> list[str]:
        """Operations and modes that had cases but sent no request."""
        return [t for t in self.tried if t not in self.no_cases and not self.per_operation[t]]

    @property
    def server_errors(self) -> int:
        return sum(n for status, n in self.statuses.items() if status >= 500)


def run(schema, *, headers: dict[str, str] | None, max_examples: int) -> RunStats:
    """Every operation x (positive, negative), up to `max_examples` cases each."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis.errors import Unsatisfiable
    from schemathesis import GenerationMode
    from schemathesis.checks import (
        content_type_conformance,
        negative_data_rejection,
        not_a_server_error,
        positive_data_acceptance,
        response_headers_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    checks = [not_a_server_error, status_code_conformance, content_type_conformance, response_headers_conformance,
              response_schema_conformance, positive_data_acceptance, negative_data_rejection]
    stats = RunStats()

    def test_for(operation, mode):
        @settings(max_examples=max_examples, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy(generation_mode=mode))
        def one(case):
            response = case.call(headers=headers)
            stats.requests += 1
            stats.statuses[response.status_code] += 1
            stats.per_operation[f"{operation.label} {mode.value}"] += 1
            try:
                case.validate_response(response, checks=checks, headers=headers)
            except AssertionError as exc:  # schemathesis' FailureGroup is an AssertionError
                stats.failures.append(f"{operation.label} {mode.value} -> {response.status_code}: "
                                      f"{str(exc)[:600]}")
                raise

        return one

    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            stats.tried.append(f"{operation.label} {mode.value}")
            try:
                test_for(operation, mode)()
            except AssertionError:
                pass  # recorded (the shrunk case last); keep testing the other operations
            except Unsatisfiable:  # no negative case exists (GET without parameters)
                stats.no_cases.append(f"{operation.label} {mode.value}")
    return stats
