"""serve-deploy-action: take a Ray Serve application from pull request to production.

The product is one pipeline, one package per stage:
validate (``ci_serve.config``) -> smoke (``ci_serve.smoke``) -> deploy (``ci_serve.deploy``).
Everything that talks to Ray lives in ``ci_serve.cluster``. The command line (``ci_serve.cli``)
and the GitHub Action (``ci_serve.action``) are thin adapters over the same library.
"""

__version__ = "0.1.0"
