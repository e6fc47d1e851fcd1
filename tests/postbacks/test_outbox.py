"""The outbox: back-off, leases, and processes sharing one file (real processes, real HTTP)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from flask_keitaro.conversion import Conversion
from flask_keitaro.outbox import RetryPolicy
from flask_keitaro.outbox_sqlite import SQLiteOutbox as Outbox
from flask_keitaro.postback import PostbackClient
from tests.support.postback_receiver import PostbackReceiver


class Clock:
    """A settable Unix clock shared by the outboxes of one test (each one a 'process')."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def test_back_off_doubles_up_to_the_cap_with_jitter_of_half() -> None:
    policy = RetryPolicy(base=10.0, cap=900.0)
    assert [policy.delay(n, rand=lambda: 0.0) for n in range(1, 9)] == [
        5.0,
        10.0,
        20.0,
        40.0,
        80.0,
        160.0,
        320.0,
        450.0,
    ]
    assert policy.delay(3, rand=lambda: 0.5) == 30.0
    assert policy.delay(10_000, rand=lambda: 0.999999) == pytest.approx(900.0, rel=1e-5)
    samples = {policy.delay(4) for _ in range(50)}
    assert len(samples) > 40  # jittered: processes retrying together spread out
    assert all(40.0 <= s <= 80.0 for s in samples)
    with pytest.raises(ValueError, match="retry"):
        RetryPolicy(base=10.0, cap=5.0)
    with pytest.raises(ValueError, match="retry"):
        RetryPolicy(base=0.0)


def test_a_failed_row_is_due_again_after_a_growing_back_off(tmp_path: Path) -> None:
    clock = Clock()
    outbox = Outbox(tmp_path / "o.sqlite3", lease=60.0, retry=RetryPolicy(10.0, 900.0), clock=clock)
    claim = outbox.add(Conversion("s1", "sale"))
    assert outbox.claim_next(all_pending=True) is None  # held by its sender
    for attempt in range(1, 5):
        record = outbox.failed(claim, f"failure {attempt}")
        assert record.attempts == attempt
        assert record.next_attempt is not None
        full = 10.0 * 2 ** (attempt - 1)
        assert full / 2 <= record.next_attempt - clock.now <= full
        assert outbox.next_due() == record.next_attempt
        assert outbox.claim_next() is None  # not due yet
        clock.now = record.next_attempt
        again = outbox.claim_next()
        assert again is not None
        assert again.record.id == record.id
        claim = again
    (pending,) = outbox.pending()
    assert pending.attempts == 5
    assert pending.last_error == "failure 4"
    assert outbox.delivered(claim)
    assert outbox.pending() == []
    assert outbox.next_due() is None


def test_a_claim_is_held_for_its_lease_and_a_stale_claim_cannot_mark(tmp_path: Path) -> None:
    clock = Clock()
    path = tmp_path / "o.sqlite3"
    first, second = Outbox(path, lease=30.0, clock=clock), Outbox(path, lease=30.0, clock=clock)
    claim = first.add(Conversion("s2"))
    assert second.claim_next(all_pending=True) is None
    assert second.next_due() == clock.now + 30.0
    clock.now += 30.0
    taken = second.claim_next()
    assert taken is not None
    assert taken.record.id == claim.record.id
    assert taken.record.attempts == 2
    assert first.delivered(claim) is False  # its lease ran out: the row is the second's now
    assert second.delivered(taken) is True
    assert first.count() == 0


def test_claims_walk_forward_by_id_and_skip_rows_held_by_others(tmp_path: Path) -> None:
    clock = Clock()
    outbox = Outbox(tmp_path / "o.sqlite3", lease=30.0, clock=clock)
    ids = []
    for name in ("a", "b", "c"):
        claim = outbox.add(Conversion(name))
        ids.append(outbox.failed(claim, "down").id)
    held = outbox.claim_next(all_pending=True)
    assert held is not None and held.record.id == ids[0]
    after_first = outbox.claim_next(all_pending=True)
    assert after_first is not None and after_first.record.id == ids[1]
    assert outbox.claim_next(ids[2], all_pending=True) is None
    last = outbox.claim_next(ids[1], all_pending=True)
    assert last is not None and last.record.id == ids[2]
    assert outbox.claim_next(all_pending=True) is None  # all three held


def test_dropped_ids_are_never_reused(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "o.sqlite3", lease=30.0)
    first = outbox.add(Conversion("a")).record.id
    assert outbox.drop(first)  # type: ignore[arg-type]
    assert outbox.add(Conversion("b")).record.id != first


_FLUSHER = """
import json, os, sys, time
from flask_keitaro.postback import PostbackClient
url, outbox, go = sys.argv[1:4]
client = PostbackClient(url, outbox=outbox, threads=False)
deadline = time.monotonic() + 30
while not os.path.exists(go) and time.monotonic() < deadline:
    time.sleep(0.002)
result = client.flush()
print(json.dumps({"delivered": result.delivered, "failed": result.failed}))
"""


@pytest.fixture
def ram_dir(tmp_path: Path) -> Iterator[Path]:
    """A folder in memory (tmpfs) when there is one: 1,000 rows are about claims, not fsync."""
    shm = Path("/dev/shm")
    if not (shm.is_dir() and os.access(shm, os.W_OK)):
        yield tmp_path
        return
    folder = Path(tempfile.mkdtemp(prefix="keitaro-outbox-", dir=shm))
    yield folder
    shutil.rmtree(folder)


def test_four_processes_sharing_an_outbox_deliver_each_of_1000_rows_once(
    receiver: PostbackReceiver, ram_dir: Path
) -> None:
    path = ram_dir / "shared.sqlite3"
    outbox = Outbox(path, lease=60.0)
    for n in range(1000):
        claim = outbox.add(Conversion(f"row{n}", "lead"))
        outbox.failed(claim, "the tracker could not be reached (postback)")
    go = ram_dir / "go"
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", _FLUSHER, receiver.url, str(path), str(go)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    time.sleep(0.3)  # let them all start, then release them together
    go.touch()
    results = [json.loads(p.communicate(timeout=120)[0]) for p in processes]
    assert [p.returncode for p in processes] == [0, 0, 0, 0]
    subids = receiver.subids()
    assert len(subids) == 1000, Counter(subids).most_common(3)
    assert set(subids) == {f"row{n}" for n in range(1000)}
    assert sum(r["delivered"] for r in results) == 1000
    assert sum(r["failed"] for r in results) == 0
    assert sum(1 for r in results if r["delivered"]) >= 2, results  # they did share the work
    assert outbox.count() == 0


_KILLED = """
import sys
from flask_keitaro.postback import PostbackClient
url, outbox = sys.argv[1:3]
client = PostbackClient(url, outbox=outbox, timeout=(0.5, 1.0), lease=5.0, threads=False)
client.postback("killed-1", "sale", payout="4.20")
print("not killed", flush=True)
"""


def test_a_process_killed_mid_delivery_leaves_the_row_to_be_sent_once_more(
    receiver: PostbackReceiver, tmp_path: Path
) -> None:
    path = tmp_path / "killed.sqlite3"
    receiver.hang()
    process = subprocess.Popen(
        [sys.executable, "-c", _KILLED, receiver.url, str(path)], stdout=subprocess.PIPE
    )
    # Killed the moment its postback arrives: between the send and the answer.
    receiver.on_receive = lambda call: process.kill()
    output, _ = process.communicate(timeout=20)
    receiver.on_receive = None
    assert process.returncode != 0
    assert output == b""  # killed before the read timeout ran out
    receiver.ok()
    survivor = PostbackClient(receiver.url, outbox=path, threads=False)
    (held,) = survivor.pending()
    assert held.attempts == 1
    assert held.claimed_until is not None and held.claimed_until > time.time()
    assert survivor.flush().delivered == 0  # the dead process's lease still holds the row
    deadline = time.monotonic() + 20
    while survivor.pending() and time.monotonic() < deadline:
        survivor.flush()
        time.sleep(0.05)
    assert survivor.pending() == []
    assert survivor.flush().delivered == 0
    assert receiver.subids().count("killed-1") == 2  # sent, killed, sent once more: no more
    assert dict(receiver.received[-1].form)["payout"] == "4.20"


_FORKED = """
import json, os, sys, time
from flask_keitaro.postback import PostbackClient, RetryPolicy
url, outbox = sys.argv[1:3]
client = PostbackClient(
    url, outbox=outbox, retry=RetryPolicy(base=0.05, cap=0.2), threads=True
)
assert client.postback("parent-1").delivered
pid = os.fork()
if pid == 0:
    code = 1
    try:
        result = client.postback("retry-child")  # answered 503 once: the child's thread retries
        deadline = time.monotonic() + 10
        while client.pending() and time.monotonic() < deadline:
            time.sleep(0.02)
        code = 0 if result.outcome == "queued" and not client.pending() else 3
    finally:
        os._exit(code)
_, status = os.waitpid(pid, 0)
assert client.postback("parent-2").delivered
print(json.dumps({"child": os.waitstatus_to_exitcode(status)}))
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_after_a_fork_the_child_has_its_own_connections_and_delivery_thread(
    receiver: PostbackReceiver, tmp_path: Path
) -> None:
    done = subprocess.run(
        [sys.executable, "-c", _FORKED, receiver.url, str(tmp_path / "forked.sqlite3")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"child": 0}
    assert receiver.subids() == ["parent-1", "retry-child", "retry-child", "parent-2"]
    ports = [call.remote_port for call in receiver.received]
    assert ports[0] == ports[3]  # the parent kept its pooled connection
    assert ports[0] not in ports[1:3]  # the child never wrote on the parent's socket
