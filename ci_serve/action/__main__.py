"""``python -m ci_serve.action``: what the container's entrypoint runs."""

import os
import sys

from ci_serve.action.main import main

code = main()
# Everything of ours is written (outputs, summary, reports) and every Ray head we started is stopped.
# Skip the interpreter's exit handlers: Ray's driver shutdown can take tens of seconds, and after a
# cancel in the middle of ray.init it was seen to crash (SIGSEGV), replacing our exit code.
sys.stdout.flush()
sys.stderr.flush()
os._exit(code)
