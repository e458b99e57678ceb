"""Generations on real job worker processes: a crash after Replicate accepted a prediction but
before we saved its id does not make the picture twice, and the cap holds across workers."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes.replicate import FakeReplicate, wait_for
from tests.jobs.cluster import Cluster, wait_until


@pytest.fixture
def fake() -> Iterator[FakeReplicate]:
    with FakeReplicate() as f:
        yield f


def replicate_settings(fake: FakeReplicate) -> dict[str, object]:
    return {
        "replicate_api_token": fake.token,
        "replicate_base_url": fake.url,
        "replicate_webhook_secret": fake.webhook_secret,
        "replicate_allow_loopback_outputs": True,
        "replicate_prefer_wait_s": 0,
        "replicate_timeout_s": 3.0,
        "generation_poll_interval_s": 0.2,
        "generation_poll_max_interval_s": 1.0,
        "preload_engines": False,
    }


def test_generation_after_a_crash_is_not_created_twice(
    tmp_path: Path, postgres_url: str, redis_url: str, fake: FakeReplicate
) -> None:
    """Killed between Replicate's create and our save: the next run finds that prediction, makes no other."""
    fake.create_hold_s = 2.5  # the prediction exists; the answer with its id has not come back yet
    with Cluster(tmp_path, postgres_url, redis_url, **replicate_settings(fake)) as cluster:
        first = cluster.start("worker")
        headers = cluster.login("jobs-gen")
        r = cluster.client.post("/v1/generations", headers=headers, json={"kind": "image", "prompt": "a sea"})
        assert r.status_code == 202, r.text
        gid = r.json()["id"]
        wait_until(
            lambda: len(fake.predictions) == 1, 60, f"the prediction to be created\n{cluster.output()}"
        )
        cluster.kill(first)
        fake.create_hold_s = 0.0
        cluster.start("worker")
        cluster.start("scheduler")
        done = wait_for(cluster.client, headers, gid, {"succeeded", "failed"}, timeout=90)
        assert done["status"] == "succeeded", (done, cluster.output())
        assert len(fake.creates) == 1 and len(fake.predictions) == 1
        assert "found prediction" in cluster.output()


def test_cap_holds_across_workers(
    tmp_path: Path, postgres_url: str, redis_url: str, fake: FakeReplicate
) -> None:
    """Two workers, a cap of one: never two predictions running at once, and every generation finishes."""
    for _ in range(3):
        fake.plan(processing_s=0.8)
    opts = replicate_settings(fake) | {"generation_max_concurrent": 1}
    with Cluster(tmp_path, postgres_url, redis_url, **opts) as cluster:
        cluster.start("worker")
        cluster.start("worker")
        cluster.start("scheduler")
        headers = cluster.login("jobs-cap")
        ids = [
            cluster.client.post(
                "/v1/generations", headers=headers, json={"kind": "image", "prompt": f"p{i}"}
            ).json()["id"]
            for i in range(3)
        ]
        peak = 0
        while True:
            statuses = [
                cluster.client.get(f"/v1/generations/{g}", headers=headers).json()["status"] for g in ids
            ]
            peak = max(peak, statuses.count("running"))
            if all(s in ("succeeded", "failed") for s in statuses):
                break
            assert len(fake.predictions) <= 3
            time.sleep(0.05)
        assert statuses == ["succeeded"] * 3 and peak == 1
        assert len(fake.creates) == 3
