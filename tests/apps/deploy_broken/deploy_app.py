"""A release whose module cannot import: the deploy must roll back and leave the live version serving."""

import this_module_does_not_exist_ci_serve  # noqa: F401

app = None
