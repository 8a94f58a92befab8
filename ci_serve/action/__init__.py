"""The GitHub Action adapter: the second thin edge over the same library as :mod:`ci_serve.cli`.

It differs from the CLI only in how it reads inputs (``INPUT_*`` variables, checked here because the
runner does not enforce ``required``) and how it shows results (``GITHUB_OUTPUT``, the job summary,
``::error`` annotations). Secrets are masked with ``::add-mask::`` before anything else is printed.

- :mod:`.inputs`: read and check the inputs (pure, table-tested).
- :mod:`.steps`: which ``ci-serve`` commands an input set runs, and the outputs their reports give (pure).
- :mod:`.summary`: the job summary and annotations from the reports (pure).
- :mod:`.main`: the I/O: mask, install requirements, call ``ci_serve.cli.main``, write outputs.
"""
