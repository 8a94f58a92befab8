"""The shop of the progressive-release test: answers its version; a broken release (``SHOP_FAILING_PATH``)
answers 500 on that one path and well everywhere else, so its smoke requests would pass."""

import os

from ray import serve
from starlette.requests import Request
from starlette.responses import JSONResponse


@serve.deployment(ray_actor_options={"num_cpus": 0.1})
class Shop:
    async def __call__(self, request: Request) -> JSONResponse:
        version = os.environ.get("SHOP_VERSION", "v1")
        path = request.url.path.rstrip("/").rsplit("/", 1)[-1]
        if path == os.environ.get("SHOP_FAILING_PATH"):
            return JSONResponse({"version": version, "error": "broken on purpose"}, status_code=500)
        return JSONResponse({"version": version, "path": path})


app = Shop.bind()
