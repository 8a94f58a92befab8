from ci_serve.cli import entry

entry()
