"""The fault matrix on a decorated route, in both fail modes: what the visitor got, and when."""

from __future__ import annotations

import time

import pytest

from flask_keitaro import KeitaroExtension

from .faults import FAULTS, SITE_HOST, FailMode, Fault, Seen, fault_app

#: Small timeouts keep the slow faults fast; the budget is their sum and a quarter second.
TIMEOUT = (0.3, 0.6)
BUDGET = sum(TIMEOUT) + 0.25


@pytest.mark.parametrize("fail_mode", ["open", "closed"])
@pytest.mark.parametrize("fault", FAULTS, ids=[fault.name for fault in FAULTS])
def test_fault(fault: Fault, fail_mode: FailMode) -> None:
    with fault.peer() as url:
        app = fault_app(url, fail_mode, TIMEOUT)
        try:
            started = time.monotonic()
            response = app.test_client().get("/", base_url=f"http://{SITE_HOST}")
            seconds = time.monotonic() - started
        finally:
            KeitaroExtension.close(app)
    seen = Seen(response.status_code, list(response.headers.items()), response.data, seconds)
    assert fault.expect.problems(seen, fail_mode, BUDGET) == []
    assert response.status_code != 500
