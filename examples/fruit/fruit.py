"""The fruit stand of the Serve 2.0 production guide, in today's Serve API.

``FruitMarket`` is the ingress: it takes ``["PEAR", 2]`` (a fruit and an amount) and asks the stand
for that fruit, through a DeploymentHandle, for the total price. Each stand's price comes from its
``user_config`` (a lightweight update: a redeploy with a new price calls ``reconfigure`` without
restarting the replica).

    serve run fruit:deployment_graph            # the guide's import path
    ci-serve smoke examples/fruit/serve_config.yaml --requests examples/fruit/requests.yaml
"""

from __future__ import annotations

from ray import serve
from ray.serve.handle import DeploymentHandle
from starlette.requests import Request


class FruitStand:
    """A stand sells one fruit at a price set by ``user_config: {price: N}``."""

    def __init__(self, price: float = 0.0):
        self.price = price

    def reconfigure(self, config: dict) -> None:
        self.price = config.get("price", 0)

    def check_price(self, amount: float) -> float:
        return self.price * amount


@serve.deployment(user_config={"price": 3})
class MangoStand(FruitStand):
    pass


@serve.deployment(user_config={"price": 2})
class OrangeStand(FruitStand):
    pass


@serve.deployment(user_config={"price": 4})
class PearStand(FruitStand):
    pass


@serve.deployment(num_replicas=2)
class FruitMarket:
    def __init__(self, mango: DeploymentHandle, orange: DeploymentHandle, pear: DeploymentHandle):
        self.stands = {"MANGO": mango, "ORANGE": orange, "PEAR": pear}

    async def check_price(self, fruit: str, amount: float) -> float:
        stand = self.stands.get(fruit.upper())
        if stand is None:
            return -1
        return await stand.check_price.remote(amount)

    async def __call__(self, request: Request) -> float:
        fruit, amount = await request.json()
        return await self.check_price(fruit, amount)


deployment_graph = FruitMarket.bind(MangoStand.bind(), OrangeStand.bind(), PearStand.bind())

#: the same graph under the name the README's usage line uses (`ci-serve smoke fruit:app`)
app = deployment_graph
