"""A release whose replicas crash in their constructor, after printing why: for the replica log tails a
failed deploy shows (read from the cluster through the dashboard's log API)."""

from ray import serve

VERSION = "v4"


@serve.deployment(ray_actor_options={"num_cpus": 0.1})
class Echo:
    def __init__(self) -> None:
        print("replica constructor says: loading /models/weights.bin", flush=True)
        raise RuntimeError("weights file /models/weights.bin is missing")

    def reconfigure(self, config: dict) -> None:
        pass

    async def __call__(self, request) -> dict:
        return {"version": VERSION}


app = Echo.bind()
