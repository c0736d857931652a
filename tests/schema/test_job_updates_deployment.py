"""jobUpdates in a deployment of several processes (PostgreSQL): queued on one, run by another, watched on a third.

Uses the deployment of tests/jobs/test_multiprocess.py: three `graphconda serve` processes
and one `graphconda scheduler`, all running jobs. The subscription is served by a process
that neither queued nor runs the job; the process running it is killed (-9) midway, and
the subscription follows the run through its requeue to SUCCEEDED on yet another process.
"""

from __future__ import annotations

import asyncio
import json
import signal
from typing import Any

import websockets
from websockets.typing import Subprotocol

from graphconda.services import api_keys, jobs
from graphconda.services.authz import SYSTEM, Role
from graphconda.services.context import Services
from tests.helpers.channels import make_user
from tests.jobs import test_multiprocess as mp

pytestmark = mp.pytestmark
deployment = mp.deployment

UPDATES = "subscription($id: ID!) { jobUpdates(id: $id) { status attempt progress { done total } } }"


async def recv(ws: Any) -> dict[str, Any]:
    return json.loads(await asyncio.wait_for(ws.recv(), timeout=60))


async def test_updates_on_another_process_until_succeeded_across_a_crash(
    deployment: list[mp.Proc], services: Services
) -> None:
    staff = await make_user(services, "staff", Role.MAINTAINER)
    _, key = await api_keys.create_api_key(services, staff)
    servers = [p for p in deployment if p.url]
    assert len(servers) == 3
    started = await mp.gql(servers[0].url, key, 'mutation { runJob(input: {kind: "test_slow", '  # type: ignore[arg-type]
                           "args: {steps: 40, delay: 0.1}}) { ... on Job { id } } }")
    job_id = started["runJob"]["id"]

    async def claimed() -> Any:
        run = await jobs.get_job(services, SYSTEM, int(job_id))
        return run if run.holder else None

    runner = mp.owner_of(deployment, (await mp.eventually(claimed, 30, "a process claims the run")).holder)
    # Watch from a process that neither queued nor runs the job.
    watcher = next(p for p in servers[1:] if p is not runner)
    async with websockets.connect(watcher.url.replace("http://", "ws://") + "/graphql",  # type: ignore[union-attr]
                                  subprotocols=[Subprotocol("graphql-transport-ws")],
                                  additional_headers={"X-API-Key": key}) as ws:
        await ws.send(json.dumps({"type": "connection_init"}))
        assert (await recv(ws))["type"] == "connection_ack"
        await ws.send(json.dumps({"id": "1", "type": "subscribe",
                                  "payload": {"query": UPDATES, "variables": {"id": job_id}}}))
        states = []
        killed = False
        while (message := await recv(ws))["type"] == "next":
            state = message["payload"]["data"]["jobUpdates"]
            states.append(state)
            if not killed and state["status"] == "RUNNING" and state["progress"]["done"] >= 3:
                runner.popen.send_signal(signal.SIGKILL)  # the run is requeued and finished elsewhere
                killed = True
        assert message == {"id": "1", "type": "complete"}
    assert killed, states
    assert states[-1] == {"status": "SUCCEEDED", "attempt": 2, "progress": {"done": 40, "total": 40}}
    assert {s["status"] for s in states[:-1]} <= {"QUEUED", "RUNNING"}
    running = [s["progress"]["done"] for s in states if s["status"] == "RUNNING"]
    assert len(set(running)) >= 3, states  # live progress, not just the end
    done = await jobs.get_job(services, SYSTEM, int(job_id))
    assert mp.owner_of(deployment, done.holder) is not runner
