"""The validate stage: loading, checking, building and diffing Serve configs.

One pipeline for every command: :func:`load_valid_config` loads a file in any format (multi-app,
Serve 2.0 single-app, a KubeRay RayService manifest), checks it and returns a :class:`LoadedConfig`
(typed ``.model``, ``.data`` in the multi-application format, ``.positions`` for file:line:column,
``.warnings``, ``.notices``), or raises :class:`~ci_serve.errors.ConfigError` with every located problem.

Modules: ``loader`` (files to one LoadedConfig), ``formats`` (2.0 upgrade, 1.x explained),
``rayservice`` (manifests), ``importpath`` (Ray's import-path rule), ``workdir`` (working_dir
resolution), ``schema`` (strict models), ``validate`` (every problem, located), ``inspect`` (an app
graph from code, in a child process), ``build`` (config from code), ``plan`` (config vs cluster, pure).
"""

from ci_serve.config.importpath import ImportPath, ImportPathError, is_import_path, parse_import_path
from ci_serve.config.loader import AppEntry, ConfigFile, LoadedConfig, load_config
from ci_serve.config.validate import ValidationResult, load_valid_config, validate_config

__all__ = ["AppEntry", "ConfigFile", "ImportPath", "ImportPathError", "LoadedConfig", "ValidationResult",
           "is_import_path", "load_config", "load_valid_config", "parse_import_path", "validate_config"]
