from ci_serve.cli import main

raise SystemExit(main())
