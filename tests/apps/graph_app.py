"""A two-deployment graph with options set in code, for config tests (no Ray cluster needed to build)."""

from ray import serve
from ray.serve.handle import DeploymentHandle


@serve.deployment(num_replicas=2, max_ongoing_requests=7, user_config={"greeting": "hi", "punct": "!"},
                  ray_actor_options={"num_cpus": 0.5, "memory": 100 * 1024 * 1024})
class Greeter:
    def __init__(self) -> None:
        self.greeting = "hello"
        self.punct = "."

    def reconfigure(self, config: dict) -> None:
        self.greeting = config.get("greeting", "hello")
        self.punct = config.get("punct", ".")

    def greet(self, name: str) -> str:
        return f"{self.greeting} {name}{self.punct}"


@serve.deployment(autoscaling_config={"min_replicas": 1, "max_replicas": 3, "target_ongoing_requests": 4})
class Ingress:
    def __init__(self, greeter: DeploymentHandle) -> None:
        self.greeter = greeter

    async def __call__(self, request) -> str:
        name = request.query_params.get("name", "world")
        return await self.greeter.greet.remote(name)


app = Ingress.bind(Greeter.bind())


def builder(args: dict):
    """A builder function: `ci-serve build tests.apps.graph_app:builder greeting=hey`."""
    greeting = args.get("greeting", "hello")
    return Ingress.bind(Greeter.options(user_config={"greeting": greeting}).bind())


not_an_app = 42
