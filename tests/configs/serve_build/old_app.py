from ray import serve


@serve.deployment(num_replicas=2, user_config={"greeting": "hi"}, ray_actor_options={"num_cpus": 0.1})
class Greeter:
    def reconfigure(self, config):
        self.greeting = config["greeting"]

    def __call__(self, name):
        return f"{self.greeting} {name}"


@serve.deployment(autoscaling_config={"min_replicas": 1, "max_replicas": 3})
class Ingress:
    def __init__(self, greeter):
        self.greeter = greeter

    async def __call__(self, request):
        return await self.greeter.remote("x")


app = Ingress.bind(Greeter.bind())
plain = Greeter.bind()
