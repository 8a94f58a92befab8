"""One deployment, no options set in code: answers "plain"."""

from ray import serve


@serve.deployment
class Plain:
    def __call__(self, request) -> str:
        return "plain"


app = Plain.bind()
