"""One module per ``ci-serve`` command: ``add_arguments(parser)`` and ``execute(args, log) -> result``.

These are adapters: they read flags into the library's typed inputs, call the library, and return its
result (:class:`~ci_serve.steps.StageResult`); :mod:`ci_serve.cli` turns that into the exit code and the
report. Shared options are in :mod:`ci_serve.commands.options`. Import Ray inside functions only.
"""
