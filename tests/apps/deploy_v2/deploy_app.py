"""Tiny test app for deploy tests: answers its version (and a greeting from user_config)."""

from ray import serve
from starlette.requests import Request

VERSION = "v2"


@serve.deployment(ray_actor_options={"num_cpus": 0.1})
class Echo:
    def __init__(self) -> None:
        self.greeting = "hello"

    def reconfigure(self, config: dict) -> None:
        if config.get("greeting") == "explode":  # a bad config, for the in-place roll-back test
            raise ValueError("greeting 'explode' is not allowed")
        self.greeting = config.get("greeting", "hello")

    async def __call__(self, request: Request) -> dict:
        return {"version": VERSION, "greeting": self.greeting}


app = Echo.bind()
