"""Test app for the gate on a deployment that scales under traffic: every request waits ``?sleep=S``
seconds, and once the file named by ``SLOW_START_MARKER`` exists, a new replica never finishes
starting, so an upscale under load stays in progress (the deployment reports UPSCALING) for as long
as the test needs."""

import asyncio
import os
import time

from ray import serve
from starlette.requests import Request


@serve.deployment(ray_actor_options={"num_cpus": 0.1})
class Slow:
    def __init__(self) -> None:
        marker = os.environ.get("SLOW_START_MARKER")
        if marker and os.path.exists(marker):
            time.sleep(600)

    async def __call__(self, request: Request) -> str:
        await asyncio.sleep(float(request.query_params.get("sleep", "0")))
        return "ok"


app = Slow.bind()
