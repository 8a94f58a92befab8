"""Tiny test app for deploy tests: answers its version (and a greeting from user_config)."""

from ray import serve
from starlette.requests import Request
from starlette.responses import JSONResponse

VERSION = "v1"


@serve.deployment(ray_actor_options={"num_cpus": 0.1})
class Echo:
    def __init__(self) -> None:
        self.greeting = "hello"

    def reconfigure(self, config: dict) -> None:
        self.greeting = config.get("greeting", "hello")

    async def __call__(self, request: Request) -> dict | JSONResponse:
        if self.greeting == "fail":  # a live version gone bad, for the cancel-while-live-fails test
            return JSONResponse({"version": VERSION, "error": "failing on purpose"}, status_code=500)
        return {"version": VERSION, "greeting": self.greeting}


app = Echo.bind()
