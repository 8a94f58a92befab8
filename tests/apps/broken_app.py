"""A module that fails at import time, for the import checks."""

from ray import serve

raise RuntimeError("this module is broken on purpose")

app = serve.deployment(lambda request: "never").bind()
