"""The validate stage: loading, checking, building and diffing Serve configs.

Modules: ``loader`` (YAML to the multi-application format, 2.0 upgraded, positions kept),
``schema`` (strict models), ``validate`` (every problem, located), ``inspect`` (an app graph from code,
in a child process), ``build`` (config from code), ``plan`` (config vs cluster, pure).
"""

from ci_serve.config.loader import ConfigFile, load_config

__all__ = ["ConfigFile", "load_config"]
