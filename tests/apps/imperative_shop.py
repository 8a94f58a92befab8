"""Deploy the v1 test app imperatively (``serve.run``) as ``shop`` on /shop, as a person would by hand.

Run as a driver of the cluster in $RAY_ADDRESS (tests/test_deploy_edges_ray.py), with the head's own Ray.
"""

import sys

import ray
from ray import serve

sys.path.insert(0, sys.argv[1])  # the deploy_v1 folder
from deploy_app import app  # noqa: E402

ray.init(address="auto", logging_level="ERROR")
serve.run(app, name="shop", route_prefix="/shop")
print("imperative shop RUNNING", flush=True)
