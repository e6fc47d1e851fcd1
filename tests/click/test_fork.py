"""A click before a fork: each forked worker makes its own connections, and gets its own answers.

A preloading server (gunicorn ``--preload``, uWSGI without ``lazy-apps``) imports the site in a
master process and forks the workers from it; a click made there (frameworks do it at import,
a warm-up does it on purpose) leaves a pooled connection that every worker would inherit. Two
workers writing their requests on one TCP connection read each other's answers. In a forked
child the transport remakes its pools, slots and resolver limits.

Each case runs in a fresh interpreter (the test process has threads; a fork of it is not what
a server does) against a tracker that answers every visit with a ``sub_id`` of its own.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from tests.support import ROOT
from testsupport.fault_server import OWN, Exchange, FaultServer, Serve

WORKERS = 4
CLICKS = 100

SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    import requests
    from flask_keitaro import ClickAPIClient, Visitor

    url, source = sys.argv[1], sys.argv[2]
    made = []

    def make_session():
        made.append(os.getpid())
        return requests.Session()

    user_session = requests.Session()
    session = {"none": None, "instance": user_session, "callable": make_session}[source]
    client = ClickAPIClient(url, timeout=(2.0, 5.0), session=session)

    def click(visit):
        visitor = Visitor(ip="203.0.113.9", user_agent="UA", query=(("visit", visit),))
        return client.click("forktokenforktokenforktoken00001", visitor).info.sub_id

    assert click("master") == "own-master"  # the master's call: a connection in the pool
    user_session.post(url, data=b"a=1", timeout=5)  # the user's own pool holds one too

    children = []
    for worker in range(int(sys.argv[3])):
        pid = os.fork()
        if pid == 0:
            wrong = 0
            for i in range(int(sys.argv[4])):
                visit = f"{worker}-{i}"
                try:
                    wrong += click(visit) != f"own-{visit}"
                except Exception:
                    wrong += 1
            # The master's Session has its adapters closed; a factory made the worker's own.
            pools = len(user_session.adapters["http://"].poolmanager.pools)
            kept_pools = source == "instance" and pools > 0
            no_own_session = source == "callable" and made[-1] != os.getpid()
            os._exit(min(wrong, 99) + 100 * kept_pools + 150 * no_own_session)
        children.append(pid)
    codes = [os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in children]
    print(json.dumps({"codes": codes, "made": len(made), "master": click("again")}))
    """
)


@pytest.mark.parametrize("source", ["none", "instance", "callable"])
def test_workers_forked_after_a_click_get_their_own_answers(source: str) -> None:
    with FaultServer(Serve(Exchange((OWN,)))) as tracker:
        result = subprocess.run(
            [sys.executable, "-c", SCRIPT, tracker.url, source, str(WORKERS), str(CLICKS)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr
        outcome = json.loads(result.stdout)
        # The master's connection, the user's Session's, and each worker's own.
        accepted = tracker.accepted
    # Exit code: how many of a worker's 100 clicks got another visit's answer (or failed),
    # plus 100 when the master's Session (given as it is) still held a pool in the worker,
    # plus 150 when the factory made no Session in the worker.
    assert outcome["codes"] == [0] * WORKERS
    assert outcome["master"] == "own-again"  # the master's pool is untouched by the forks
    assert accepted == 2 + WORKERS
    assert outcome["made"] == (1 if source == "callable" else 0)
