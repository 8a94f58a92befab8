"""``python -m ci_serve.action``: what the container's entrypoint runs."""

from ci_serve.action.main import main

raise SystemExit(main())
