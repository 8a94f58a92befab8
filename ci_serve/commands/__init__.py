"""One module per ``ci-serve`` command: ``add_arguments(parser)`` and ``run(args, run) -> int``.

These are adapters: they read flags, call the library, and print. Import Ray inside functions only.
"""
