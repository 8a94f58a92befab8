"""A release that answers on its preview prefix but fails on the live one: exercises the swap-back."""

from ray import serve
from starlette.requests import Request
from starlette.responses import JSONResponse


@serve.deployment(ray_actor_options={"num_cpus": 0.1})
class Echo:
    async def __call__(self, request: Request) -> JSONResponse:
        where = request.scope.get("root_path", "") + request.url.path
        if "--" not in where:  # a preview prefix has a double dash; the live one does not
            return JSONResponse({"error": f"broken at {where}"}, status_code=500)
        return JSONResponse({"version": "switchfail", "greeting": "hello"})


app = Echo.bind()
