"""The PostgreSQL outbox's examples: the container guide's files, the app's own engine, the
DBA's schema.

containers/Dockerfile, containers/wsgi.py, containers/gunicorn.conf.py, containers/compose.yaml
and containers/compose.one-replica.yaml: no image is built here. The test lays out the image's
working folder as the Dockerfile's ``COPY`` lines say, takes the environment from its ``ENV``
lines and from the compose file's ``site`` service, and runs its ``CMD`` — gunicorn with the
example's settings — against the emulator and a PostgreSQL server started by the tests (the
one-replica variant: a SQLite file in the instance folder, the named volume's mount point).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import requests
import yaml
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine

from flask_keitaro import KeitaroExtension
from flask_keitaro.conversion import Conversion
from flask_keitaro.outbox import open_outbox
from flask_keitaro.outbox_postgres import PostgresOutbox
from flask_keitaro.testing import ClickAPIEmulator
from tests.support import ROOT
from tests.support.docs import BROWSER, EXAMPLES, LoadExample, gunicorn_url
from tests.support.docs import load_example as load_example  # a fixture
from tests.support.postback_receiver import PostbackReceiver

FOLDER = EXAMPLES / "containers"


def dockerfile() -> tuple[str, dict[str, str], list[str], list[tuple[list[str], str]]]:
    """WORKDIR, the ENV values, the CMD, and each COPY's (sources, destination)."""
    workdir, env, command, copies = "/", {}, [], []
    lines = (FOLDER / "Dockerfile").read_text().replace("\\\n", " ").splitlines()
    for line in lines:
        word, _, rest = line.strip().partition(" ")
        if word == "WORKDIR":
            workdir = rest.strip()
        elif word == "ENV":
            env.update(item.split("=", 1) for item in shlex.split(rest))
        elif word == "CMD":
            command = json.loads(rest)
        elif word == "COPY":
            *sources, destination = rest.split()
            copies.append((sources, destination))
    return workdir, env, command, copies


def compose_environment(name: str, values: dict[str, str]) -> dict[str, str]:
    """The site service's environment, ``${VAR:?...}`` filled in from ``values``."""
    service = yaml.safe_load((FOLDER / name).read_text())["services"]["site"]
    filled = {}
    for key, value in service["environment"].items():
        filled[key] = re.sub(r"\$\{(\w+)(:\?[^}]*)?\}", lambda m: values[m.group(1)], str(value))
    return filled


def lay_out(tmp_path: Path) -> tuple[Path, str]:
    """The image's working folder, as the COPY lines into it make it; and its path there."""
    workdir, _, _, copies = dockerfile()
    site = tmp_path / "srv-site"
    site.mkdir()
    for sources, destination in copies:
        if not (destination.startswith("./") or destination.startswith(workdir)):
            continue  # the package itself: installed here already
        for source in sources:
            target = site / (Path(source).name if destination.endswith("/") else destination)
            target.symlink_to(ROOT / source)
    return site, workdir


@pytest.mark.parametrize("compose", ["compose.yaml", "compose.one-replica.yaml"])
def test_the_containers_command_serves_the_site_with_its_outbox(
    compose: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    pytest.importorskip("gunicorn")
    workdir, image_env, command, _ = dockerfile()
    assert command[:3] == ["gunicorn", "-c", "gunicorn.conf.py"]
    site, workdir = lay_out(tmp_path)
    assert (site / "wsgi.py").exists() and (site / "example_site").exists()
    (site / "instance").mkdir()  # made in the image; a named volume is mounted on it

    receiver = PostbackReceiver().start()
    postgres_url = ""
    if compose == "compose.yaml":
        postgres_url = request.getfixturevalue("postgres_url")
    values = {
        "SECRET_KEY": "one-key-for-every-replica",
        "POSTGRES_PASSWORD": "never-used-here",
        "KEITARO_POSTBACK_URL": receiver.url,
    }
    with ClickAPIEmulator(ROOT / "example_site" / "campaigns.toml") as tracker:
        values["KEITARO_TRACKER_URL"] = tracker.url
        env = {**image_env, **compose_environment(compose, values)}
        outbox = env["FLASK_KEITARO_POSTBACK_OUTBOX"]
        if compose == "compose.yaml":
            assert outbox == "postgresql://site:never-used-here@db/site"  # the db service
            env["FLASK_KEITARO_POSTBACK_OUTBOX"] = postgres_url  # ours, started by the tests
        else:
            assert outbox == f"{workdir}/instance/keitaro-postbacks.sqlite3"  # on the volume
            env["FLASK_KEITARO_POSTBACK_OUTBOX"] = outbox.replace(workdir, str(site), 1)
        env["SITE_INSTANCE"] = env["SITE_INSTANCE"].replace(workdir, str(site), 1)
        env["BIND"] = "127.0.0.1:0"  # a free loopback port, not the container's 0.0.0.0:8000
        log = tmp_path / "gunicorn.log"
        with log.open("w") as out:
            server = subprocess.Popen(
                [sys.executable, "-m", *command],
                cwd=site,
                env={**os.environ, **env, "PYTHONDONTWRITEBYTECODE": "1"},
                stdout=out,
                stderr=out,
            )
        try:
            base = gunicorn_url(log, server, 60)
            landing = requests.get(base + "/", headers={"User-Agent": BROWSER}, timeout=10)
            assert landing.status_code == 200
            (click,) = tracker.clicks()
            assert click["campaign_id"] == 1  # the landing's campaign
            receiver.fail(503)  # the tracker does not take the conversion: it waits
            thanks = requests.post(base + "/offer", data={"subid": click["sub_id"]}, timeout=10)
            assert thanks.status_code == 200
            assert requests.get(base + "/healthz", timeout=10).json() == {"status": "ok"}
        finally:
            server.terminate()
            server.wait(timeout=30)
            receiver.stop()
    assert receiver.subids() == [click["sub_id"]]
    assert "Booting worker" in log.read_text()
    if compose == "compose.yaml":
        engine = create_engine(postgres_url.replace("postgresql://", "postgresql+psycopg://"))
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT fields, attempts FROM keitaro_postbacks")).all()
        engine.dispose()
        assert [(json.loads(fields)["subid"], attempts) for fields, attempts in rows] == [
            (click["sub_id"], 1)
        ]
    else:
        import sqlite3

        path = site / "instance" / "keitaro-postbacks.sqlite3"
        with sqlite3.connect(path) as db:
            rows = db.execute("SELECT fields FROM postbacks").fetchall()
        assert [json.loads(fields)["subid"] for (fields,) in rows] == [click["sub_id"]]


# conversions/outbox_engine.py, conversions/outbox_schema.sql


def columns(engine: Engine) -> list[tuple[object, ...]]:
    with engine.connect() as conn:
        described = conn.execute(
            text(
                "SELECT column_name, data_type, is_nullable, column_default"
                " FROM information_schema.columns WHERE table_name = 'keitaro_postbacks'"
                " ORDER BY ordinal_position"
            )
        ).all()
        indexes = conn.execute(
            text("SELECT indexdef FROM pg_indexes WHERE tablename = 'keitaro_postbacks'")
        ).all()
    return [tuple(row) for row in described] + sorted(tuple(row) for row in indexes)


def test_the_dbas_schema_is_the_table_the_site_makes(postgres_url: str) -> None:
    engine = create_engine(postgres_url.replace("postgresql://", "postgresql+psycopg://"))
    try:
        made = open_outbox(postgres_url, lease=30.0)
        made.add(Conversion("made-by-the-site"))
        made.close()
        by_the_site = columns(engine)
        with engine.begin() as conn:
            conn.execute(text("DROP TABLE keitaro_postbacks"))
            conn.execute(text("DROP ROLE IF EXISTS site"))
            conn.execute(text("CREATE ROLE site"))
            conn.execute(text((EXAMPLES / "conversions" / "outbox_schema.sql").read_text()))
        assert columns(engine) == by_the_site
        outbox = open_outbox(postgres_url, lease=30.0)  # finds the DBA's table and uses it
        claim = outbox.add(Conversion("made-by-the-dba"))
        assert outbox.delivered(claim)
        outbox.close()
    finally:
        with engine.begin() as conn:
            conn.execute(text("DROP TABLE IF EXISTS keitaro_postbacks"))
            conn.execute(text("DROP ROLE IF EXISTS site"))
        engine.dispose()


def test_the_apps_own_engine_holds_the_outbox(
    load_example: LoadExample,
    postgres_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    receiver = PostbackReceiver().start()
    monkeypatch.setenv("KEITARO_TRACKER_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("KEITARO_POSTBACK_URL", receiver.url)
    monkeypatch.setenv(
        "DATABASE_URL", postgres_url.replace("postgresql://", "postgresql+psycopg://")
    )
    example = load_example("conversions/outbox_engine.py")
    try:
        client = example.app.extensions["keitaro"].postbacks
        assert isinstance(client.outbox, PostgresOutbox) and client.outbox.engine is example.engine
        client.threads = False
        receiver.fail(503)
        with example.app.app_context():
            assert example.keitaro.postback("engine-1", "sale").outcome == "queued"
        with example.engine.connect() as conn:
            assert conn.scalar(text("SELECT count(*) FROM keitaro_postbacks")) == 1
    finally:
        KeitaroExtension.close(example.app)
        example.engine.dispose()
        receiver.stop()
