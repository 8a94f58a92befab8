"""The app recorded metrics come from: `/ok` answers 200, `/fail` answers 500, `/slow` takes 50 ms."""

import asyncio

from ray import serve
from starlette.requests import Request
from starlette.responses import JSONResponse


@serve.deployment(ray_actor_options={"num_cpus": 0.1})
class Paths:
    async def __call__(self, request: Request) -> JSONResponse:
        path = request.url.path.rstrip("/").rsplit("/", 1)[-1]
        if path == "fail":
            return JSONResponse({"error": "failing on purpose"}, status_code=500)
        if path == "slow":
            await asyncio.sleep(0.05)
        return JSONResponse({"path": path})


app = Paths.bind()
