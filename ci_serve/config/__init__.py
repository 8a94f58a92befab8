"""The validate stage: loading, checking, building and diffing Serve configs."""

from ci_serve.config.loader import ConfigFile, load_config

__all__ = ["ConfigFile", "load_config"]
