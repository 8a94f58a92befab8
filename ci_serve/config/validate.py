"""`ci-serve validate`: every problem of a Serve config in one run, each at its file:line:column.

Four passes, each adding to one list so a user fixes everything in one round:

1. YAML syntax (a syntax error stops here: there is nothing else to read);
2. structure and types against the strict models of :mod:`ci_serve.config.schema`, unknown keys
   with the nearest known key;
3. values Ray accepts in its schema but rejects on the cluster (route prefixes, duplicate names,
   autoscaling bounds, ``num_replicas`` together with ``autoscaling_config``);
4. against the code, unless ``check_imports=False``: each import path is imported from ``app_dir`` in
   a child process and every deployment named in the config must exist in that application's graph.
"""

from __future__ import annotations

import copy
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ci_serve.config import workdir
from ci_serve.config.importpath import import_path_problem
from ci_serve.config.loader import LoadedConfig, load_config
from ci_serve.config.problems import PathT, Problem
from ci_serve.config.rules import ReleaseRules, last_in, own_ray_version, release_findings, rules_for, section_of
from ci_serve.config.schema import ServeConfig, schema_errors, strict_knows
from ci_serve.console import say
from ci_serve.errors import CiServeError, ConfigError, InputError
from ci_serve.steps import StepLog

if TYPE_CHECKING:
    from ci_serve.cluster.dashboard import DashboardAccess
    from ci_serve.config.inspect import AppGraph

IMPORT_WORKERS = 2  # the machines this runs on have 2 cores; each import is a Python + Ray import


@dataclass
class ValidationResult:
    config: LoadedConfig | None
    #: errors: a config with any is not deployed (exit 2)
    problems: list[Problem] = field(default_factory=list)
    #: keys Ray accepts and ignores: the config deploys, but not as written
    warnings: list[Problem] = field(default_factory=list)
    #: application name -> its code's graph (:class:`~ci_serve.config.inspect.AppGraph`): filled when
    #: imports are checked, or by :func:`import_graphs`
    graphs: dict[str, AppGraph] = field(default_factory=dict)
    #: the Ray release's rules the config was checked by
    rules: ReleaseRules | None = None

    @property
    def ok(self) -> bool:
        return not self.problems

    def sections(self) -> dict[str, Any]:
        """The report's sections for `ci-serve validate` (``notices`` only when the file could be read)."""
        out: dict[str, Any] = {"problems": [p.as_dict() for p in self.problems],
                               "warnings": [p.as_dict() for p in self.warnings]}
        if self.config is not None:
            out["notices"] = list(self.config.notices)
        if self.rules is not None:  # which release's rules the config was checked by
            out["rules"] = {"release": self.rules.release, "generated_from": self.rules.version}
        return out


def validate_config(source: str | Path | LoadedConfig, app_dir: str | Path | None = None,
                    check_imports: bool = True, import_timeout: float = 60, *,
                    ray_version: str | None = None) -> ValidationResult:
    """Check a config (a path, or an already loaded :class:`LoadedConfig`); never raises for a problem
    in the file (even a missing or unreadable one), returns them all instead.

    ``app_dir`` is where import paths are imported from; ``None`` means each application's local
    ``runtime_env.working_dir`` (relative to the config file, as a deploy ships it), else the current folder.
    ``ray_version`` is the Ray release the config is checked for (:func:`ci_serve.config.rules.rules_for`:
    its minor's rules; None: the Ray ci-serve runs on); a release without rules raises :class:`InputError`.
    YAML syntax errors come back as a problem with their line.
    """
    rules = rules_for(ray_version)
    if isinstance(source, LoadedConfig):
        config = source
    else:
        try:
            config = load_config(source)
        except ConfigError as err:  # unreadable, not YAML, not a mapping: one problem, nothing else to check
            message = err.message.removeprefix(f"{source}: ")
            found: list[Problem] = list(err.problems) or [Problem(str(source), None, None, "(file)", message, err.hint)]
            return ValidationResult(config=None, problems=found, rules=rules)
    result = ValidationResult(config=config, rules=rules)
    found = _duplicate_problems(config)
    by_release, legacy = release_findings(config.data, rules)
    # the release's verdict on a key itself (too new for it, or deprecated by it) replaces the strict one
    replaced = {where for where, _, _, at_key, _ in by_release if at_key}
    ignored: list[PathT] = [p for p in legacy if not strict_knows(p)]
    for where, message, hint, at_key, severity in schema_errors(config.data, legacy, rules.release):
        if any(where[:len(r)] == r for r in replaced):
            continue
        if severity == "warning" and (last := last_in(section_of(where[:-1]), str(where[-1]), rules)):
            hint = f"{hint} (Ray {last} was the last release with `{where[-1]}`)"
        found.append(config.problem(where, message, hint, key=at_key, severity=severity))
        if severity == "warning":
            ignored.append(where)
    taken = {p.path for p in found}
    for where, message, hint, at_key, severity in by_release:
        problem = config.problem(where, message, hint, key=at_key, severity=severity)
        if not at_key and problem.path in taken:
            continue  # a value the strict check already refused, with its own hint
        found.append(problem)
        if at_key and (severity == "error" or not strict_knows(where)):
            ignored.append(where)
    found.extend(cluster_rule_problems(config))
    if check_imports:
        found.extend(import_problems(config, app_dir, import_timeout, result.graphs))
    found.sort(key=lambda p: (p.line or 0, p.column or 0))
    result.problems = [p for p in found if p.severity == "error"]
    result.warnings = [p for p in found if p.severity != "error"]
    config.warnings = result.warnings
    if result.ok:
        config.model = ServeConfig.model_validate(_without(config.data, ignored))
    return result


#: mappings Ray hands to the application as they are (user data): a key repeated inside is a warning
USER_DATA = frozenset({"user_config", "args"})


def _duplicate_problems(config: LoadedConfig) -> list[Problem]:
    """A key written twice in one mapping: PyYAML (Ray's loader) keeps the last value. Inside user data
    (``user_config``, builder ``args``) that is a warning at both lines; elsewhere an error, since Ray
    would run a setting other than the first one written."""
    out = []
    for dup_path, line, column in config.positions.duplicates:
        name = _fmt(dup_path)
        if any(part in USER_DATA for part in dup_path[:-1]):
            first = config.positions.first_keys.get(dup_path)
            first_line = f"line {first[0]}" if first else "an earlier line"
            hint = f"Ray keeps the value at line {line} and hands it to the application as it is; delete " \
                   "one of them"
            if first:
                out.append(Problem(str(config.path), first[0], first[1], name,
                                   f"key {dup_path[-1]!r} appears twice in the same mapping (again at line {line})",
                                   hint, "warning"))
            out.append(Problem(str(config.path), line, column, name,
                               f"key {dup_path[-1]!r} appears twice in the same mapping (first at {first_line})",
                               hint, "warning"))
            continue
        out.append(Problem(str(config.path), line, column, name,
                           f"key {dup_path[-1]!r} appears twice in the same mapping",
                           "YAML keeps only the last one; delete one of them"))
    return out


def load_valid_config(path: str | Path | LoadedConfig, *, app_dir: str | Path | None = None,
                      check_imports: bool = False, import_timeout: float = 60) -> LoadedConfig:
    """THE entry every command uses: load ``path`` (any format), check it, and return it when it has
    no error (``.model`` is then the typed config, ``.warnings`` what Ray will ignore, ``.notices``
    what was upgraded). Raise :class:`ConfigError` (exit 2) carrying every located problem otherwise."""
    result = validate_config(path, app_dir, check_imports=check_imports, import_timeout=import_timeout)
    if result.problems or result.config is None:
        where = result.config.path if result.config else path
        count = len(result.problems)
        raise ConfigError(f"{where}: {count} problem{'s' if count != 1 else ''} in the Serve config",
                          f"fix each at the line shown; `ci-serve validate {where}` lists them",
                          problems=result.problems, details="\n".join(p.render() for p in result.problems))
    return result.config


def _without(data: dict[str, Any], paths: list[PathT]) -> dict[str, Any]:
    """``data`` without the keys Ray ignores (what Ray itself will use)."""
    if not paths:
        return data
    data = copy.deepcopy(data)
    for path in paths:
        node: Any = data
        for part in path[:-1]:
            node = node[part]
        node.pop(path[-1], None)
    return data


def _fmt(path: tuple[Any, ...]) -> str:
    from ci_serve.config.problems import format_path

    return format_path(path)


def cluster_rule_problems(config: LoadedConfig) -> list[Problem]:
    """Values Ray's schema lets through and the controller rejects after the deploy has started."""
    out: list[Problem] = []
    names: dict[str, int] = {}
    prefixes: dict[str, int] = {}
    for i, app in enumerate(config.applications):
        if not isinstance(app, dict):
            continue
        name = app.get("name", "default")
        if isinstance(name, str):
            if name in names:
                out.append(config.problem(("applications", i, "name"), f"application name {name!r} is also "
                                          f"used by applications[{names[name]}]",
                                          "give every application its own name"))
            names.setdefault(name, i)
        prefix = app.get("route_prefix", "/")
        if isinstance(prefix, str):
            out.extend(_route_prefix_problems(config, i, prefix, prefixes))
        import_path = app.get("import_path")
        wrong = import_path_problem(import_path) if isinstance(import_path, str) else None
        if wrong:
            out.append(config.problem(("applications", i, "import_path"), *wrong))
        out.extend(_policy_problems(config, ("applications", i, "autoscaling_policy"), app.get("autoscaling_policy")))
        deployments = app.get("deployments")
        if isinstance(deployments, list):
            out.extend(_deployment_problems(config, i, deployments, app.get("external_scaler_enabled") is True))
        out.extend(_working_dir_problems(config, i, app))
    out.extend(_http_problems(config))
    return out


def _working_dir_problems(config: LoadedConfig, i: int, app: dict[str, Any]) -> list[Problem]:
    """A local working_dir (ci-serve ships it to the cluster) must exist next to the config file; in a
    RayService manifest it is never valid: KubeRay hands serveConfigV2 to the cluster as it is, and no
    such folder exists there."""
    wd = workdir.working_dir_of(app, config.base_dir)
    if wd.local and config.rayservice is not None:
        return [config.problem(("applications", i, "runtime_env", "working_dir"),
                               f"working_dir {wd.source!r} is a local folder in a RayService manifest: KubeRay "
                               "hands serveConfigV2 to the cluster as it is, and the folder does not exist there",
                               "use a remote URI the cluster can fetch (https://.../code.zip, s3://..., gs://...), "
                               "or deploy the Serve config itself with `ci-serve deploy` (which uploads a local "
                               "working_dir) instead of through the operator")]
    if not wd.local or wd.exists:
        return []
    return [config.problem(("applications", i, "runtime_env", "working_dir"),
                           f"working_dir {wd.source!r} is not a folder (looked in {wd.folder})",
                           "a local working_dir is relative to the config file; or use a remote URI "
                           "(https://.../code.zip, s3://...)")]


def _http_problems(config: LoadedConfig) -> list[Problem]:
    http = config.data.get("http_options")
    if not isinstance(http, dict) or bool(http.get("ssl_certfile")) == bool(http.get("ssl_keyfile")):
        return []
    missing = "ssl_keyfile" if http.get("ssl_certfile") else "ssl_certfile"
    return [config.problem(("http_options",), "http_options sets only one of ssl_certfile and ssl_keyfile",
                           f"add {missing} (HTTPS needs both), or remove the other")]


def _route_prefix_problems(config: LoadedConfig, i: int, prefix: str, seen: dict[str, int]) -> list[Problem]:
    where = ("applications", i, "route_prefix")
    out = []
    if not prefix.startswith("/"):
        out.append(config.problem(where, f"route prefix {prefix!r} does not start with '/'",
                                  f"write '/{prefix}'"))
    elif prefix != "/" and prefix.endswith("/"):
        out.append(config.problem(where, f"route prefix {prefix!r} ends with '/'",
                                  f"write {prefix.rstrip('/') or '/'!r}"))
    if "{" in prefix or "}" in prefix:
        out.append(config.problem(where, f"route prefix {prefix!r} contains a wildcard",
                                  "route prefixes are literal paths; remove the '{...}'"))
    if prefix in seen:
        out.append(config.problem(where, f"route prefix {prefix!r} is also used by applications[{seen[prefix]}]",
                                  "give every application its own route prefix"))
    seen.setdefault(prefix, i)
    return out


def _deployment_problems(config: LoadedConfig, i: int, deployments: list[Any],
                         app_external_scaler: bool = False) -> list[Problem]:
    out: list[Problem] = []
    names: dict[str, int] = {}
    for j, dep in enumerate(deployments):
        if not isinstance(dep, dict):
            continue
        base = ("applications", i, "deployments", j)
        name = dep.get("name")
        if isinstance(name, str):
            if name in names:
                out.append(config.problem((*base, "name"), f"deployment {name!r} is listed twice "
                                          f"(also deployments[{names[name]}])", "merge the two entries into one"))
            names.setdefault(name, j)
        auto = dep.get("autoscaling_config")
        replicas = dep.get("num_replicas")
        if isinstance(auto, dict) and replicas not in (None, "auto"):
            out.append(config.problem((*base, "num_replicas"), "num_replicas is set together with "
                                      "autoscaling_config", "keep one: a fixed num_replicas, or "
                                      "autoscaling_config (with min_replicas/max_replicas)"))
        if isinstance(auto, dict):
            out.extend(_autoscaling_problems(config, (*base, "autoscaling_config"), auto))
            out.extend(_policy_problems(config, (*base, "autoscaling_config", "policy"), auto.get("policy")))
            if app_external_scaler:
                out.append(config.problem((*base, "autoscaling_config"), "autoscaling_config is set while the "
                                          "application has external_scaler_enabled: true",
                                          "remove Serve's autoscaling here, or set external_scaler_enabled: false"))
        out.extend(_exclusive_problems(config, base, dep))
    return out


#: (field, other field, why): Ray rejects a deployment setting both
_EXCLUSIVE = (
    ("max_replicas_per_node", "placement_group_bundles", "a placement group already decides where replicas run"),
    ("max_replicas_per_node", "gang_scheduling_config", "gang scheduling decides where replicas run"),
    ("placement_group_strategy", "gang_scheduling_config",
     "use gang_scheduling_config.gang_placement_strategy instead"),
)


def _exclusive_problems(config: LoadedConfig, base: tuple[Any, ...], dep: dict[str, Any]) -> list[Problem]:
    out = []
    for first, second, why in _EXCLUSIVE:
        if dep.get(first) is not None and dep.get(second) is not None:
            out.append(config.problem((*base, first), f"{first} cannot be set together with {second}",
                                      f"remove one of them ({why})"))
    if dep.get("placement_group_bundle_label_selector") is not None and dep.get("placement_group_bundles") is None:
        out.append(config.problem((*base, "placement_group_bundle_label_selector"),
                                  "placement_group_bundle_label_selector needs placement_group_bundles",
                                  "add placement_group_bundles, or remove the selector"))
    return out


def _policy_problems(config: LoadedConfig, where: PathT, policy: Any) -> list[Problem]:
    """Ray imports ``policy_function`` with the same rule as an application's import path."""
    function = policy.get("policy_function") if isinstance(policy, dict) else None
    wrong = import_path_problem(function) if isinstance(function, str) else None
    return [config.problem((*where, "policy_function"), *wrong)] if wrong else []


def _autoscaling_problems(config: LoadedConfig, where: tuple[Any, ...], auto: dict[str, Any]) -> list[Problem]:
    def num(key: str, default: Any) -> Any:
        value = auto.get(key, default)
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    low, initial, high = num("min_replicas", 1), num("initial_replicas", None), num("max_replicas", 1)
    out = []
    if low is not None and high is not None and low > high:
        out.append(config.problem((*where, "min_replicas"), f"min_replicas ({low}) is above max_replicas ({high})",
                                  "make min_replicas <= max_replicas"))
    elif initial is not None and low is not None and high is not None and not low <= initial <= high:
        out.append(config.problem((*where, "initial_replicas"), f"initial_replicas ({initial}) is outside "
                                  f"min_replicas..max_replicas ({low}..{high})",
                                  "make min_replicas <= initial_replicas <= max_replicas"))
    return out


def check_before_deploy(path: str, log: StepLog, cluster: DashboardAccess | None = None) -> ValidationResult:
    """``plan``/``deploy``: the config checked exactly as `ci-serve validate --no-import` checks it, for
    the Ray release the cluster runs, as one step, each problem (or else each notice and warning)
    printed. The caller stops on any problem (:func:`require_valid`), before anything is written.

    A config with problems by the rules of ci-serve's own Ray is refused before any cluster is contacted
    (the strict checks hold for every release); a clean one is checked again by the rules of the
    cluster's release (``/api/version``, a read) when that is another one. A cluster that does not
    answer is the error of that read (exit 2, nothing written)."""
    with log.step(f"validate {path}") as st:
        checked = validate_config(path, None, check_imports=False)
        if not checked.problems and checked.config is not None and cluster is not None:
            version, where = cluster_release(cluster)
            if version is not None and checked.rules is not None and rules_for(version) != checked.rules:
                checked = validate_config(checked.config, None, check_imports=False, ray_version=version)
            say(f"rules of Ray {_rules_name(checked)} for Ray {version or own_ray_version()} ({where})")
        for problem in checked.problems:
            say(problem.render())
        if checked.problems or checked.config is None:
            st.status, st.detail = "failed", f"{len(checked.problems)} problem(s)"
            return checked
        _say_notes(checked)
        st.detail = f"{len(checked.config.applications)} application(s), Ray {_rules_name(checked)} rules"
    return checked


def cluster_release(cluster: DashboardAccess) -> tuple[str | None, str]:
    """(the cluster's Ray release to validate for, or None for ci-serve's own; why that one). A cluster
    that does not answer raises here, as the cluster steps that would follow would (exit 2, nothing written)."""
    version = cluster.client().get_version()
    try:
        rules_for(version)
    except InputError as err:
        say(f"WARN  {err.message}; checking by the newest rules ci-serve has")
        return None, f"ci-serve's own; the cluster runs Ray {version}"
    return version, "the cluster's, from /api/version"


def _rules_name(checked: ValidationResult) -> str:
    return checked.rules.release if checked.rules else "?"


def validate_step(path: str, app_dir: str | None, *, check_imports: bool, log: StepLog,
                  ray_version: str | None = None, source: str = "") -> ValidationResult:
    """`ci-serve validate`: :func:`validate_config` as one step, each notice, warning and problem printed.
    ``ray_version`` (None: ci-serve's own Ray) picks the release's rules; ``source`` says where it came from."""
    check = "structure, values and code" if check_imports else "structure and values"
    rules = rules_for(ray_version)  # a release without rules: exit 2 before the step
    source = source or "the Ray ci-serve runs on; --ray-version or --requirements pick your cluster's"
    say(f"rules of Ray {rules.release} (generated from Ray {rules.version}) for Ray "
        f"{ray_version or own_ray_version()} ({source})")
    with log.step(f"validate {path} ({check})") as st:
        checked = validate_config(path, app_dir, check_imports=check_imports, ray_version=ray_version)
        _say_notes(checked)
        for problem in checked.problems:
            say(problem.render())
        if checked.problems:
            st.status, st.detail = "failed", f"{len(checked.problems)} problem(s)"
            return checked
        apps = checked.config.applications if checked.config else []
        deployments = sum(len(a.get("deployments") or []) for a in apps)
        st.detail = f"{len(apps)} application(s), {deployments} deployment override(s)" + \
            (f", {len(checked.warnings)} warning(s)" if checked.warnings else "") + f", Ray {rules.release} rules"
    return checked


def _say_notes(checked: ValidationResult) -> None:
    """What the loader upgraded (``NOTE``) and the keys Ray ignores (``WARN``)."""
    for notice in checked.config.notices if checked.config else []:
        say(f"NOTE  {notice}")
    for warning in checked.warnings:
        say(f"WARN  {warning.render()}")


def require_valid(checked: ValidationResult, path: str) -> LoadedConfig:
    """The config of a check without problems; else :class:`ConfigError` (exit 2): nothing is written."""
    if checked.problems or checked.config is None:
        raise ConfigError(f"{path}: {len(checked.problems)} problem(s); nothing was written",
                          f"run `ci-serve validate {path}` and fix them", problems=checked.problems)
    return checked.config


def code_dir(config: LoadedConfig, app: dict[str, Any], app_dir: str | Path | None) -> str | Path:
    """The folder an application's code is imported from (see :func:`validate_config`)."""
    return workdir.code_dir(app, config.base_dir, app_dir)


def import_problems(config: LoadedConfig, app_dir: str | Path | None, timeout: float,
                    graphs: dict[str, Any] | None = None) -> list[Problem]:
    """Import each application's code in a child process and match the config's deployment names."""
    out = []
    for i, app, graph in _inspect_each(config, app_dir, timeout):
        where = ("applications", i, "import_path")
        if isinstance(graph, CiServeError):
            out.append(config.problem(where, graph.message, graph.hint))
            continue
        if graphs is not None:
            graphs[str(app.get("name", "default"))] = graph
        deployments = app.get("deployments")
        for j, dep in enumerate(deployments if isinstance(deployments, list) else []):
            if not isinstance(dep, dict) or not isinstance(dep.get("name"), str):
                continue
            if dep["name"] not in graph.deployments:
                known = ", ".join(graph.deployment_names)
                out.append(config.problem(("applications", i, "deployments", j, "name"),
                                          f"deployment {dep['name']!r} is not in {app['import_path']}'s graph "
                                          f"(it has: {known})", "use one of those names, as spelled in code "
                                          "(the class or function name, or the name= given to @serve.deployment)"))
    return out


def import_graphs(checked: ValidationResult, app_dir: str | Path | None, timeout: float = 60) -> dict[str, str]:
    """After a check without imports (``plan``): import each application's code into ``checked.graphs``,
    as :func:`validate_config` does, but an application that does not import here is no problem: its
    code may only exist where its ``runtime_env`` brings it. Returns why each of those did not import."""
    if checked.config is None:
        return {}
    failed = {}
    for _, app, graph in _inspect_each(checked.config, app_dir, timeout):
        name = str(app.get("name", "default"))
        if isinstance(graph, CiServeError):
            failed[name] = graph.message
        else:
            checked.graphs[name] = graph
    return failed


def _inspect_each(config: LoadedConfig, app_dir: str | Path | None,
                  timeout: float) -> list[tuple[int, dict[str, Any], AppGraph | CiServeError]]:
    """(index, application, its graph or why it did not import) for each application with a usable
    import path, two imports at a time."""
    from ci_serve.config.inspect import AppImportError, inspect_app

    apps = [(i, app) for i, app in enumerate(config.applications)
            if isinstance(app, dict) and isinstance(app.get("import_path"), str)
            and import_path_problem(app["import_path"]) is None]

    def one(item: tuple[int, dict[str, Any]]) -> tuple[int, dict[str, Any], AppGraph | CiServeError]:
        i, app = item
        try:
            args = app.get("args") if isinstance(app.get("args"), dict) else None
            return i, app, inspect_app(app["import_path"], code_dir(config, app, app_dir), args=args, timeout=timeout)
        except AppImportError as err:
            return i, app, err

    with ThreadPoolExecutor(max_workers=IMPORT_WORKERS) as pool:
        return list(pool.map(one, apps))
