"""A FastAPI ingress with no `/` route: its own 404 at the prefix root must not fail the default check."""

from fastapi import FastAPI
from ray import serve

api = FastAPI()


@serve.deployment(ray_actor_options={"num_cpus": 0.1})
@serve.ingress(api)
class Items:
    def __init__(self) -> None:
        self.greeting = "hello"

    def reconfigure(self, config: dict) -> None:
        self.greeting = config.get("greeting", "hello")

    @api.get("/items")
    def items(self) -> dict:
        return {"items": [1, 2], "greeting": self.greeting}


app = Items.bind()
