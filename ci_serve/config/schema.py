"""Strict models of the Serve config a user writes (Ray 2.60 fields), for `ci-serve validate`.

Ray's own ``ServeDeploySchema`` ignores unknown keys, so ``num_replica: 2`` is dropped without a word.
These models forbid extra keys, so every typo is reported with the nearest known key. They mirror
Ray's field names and constraints, and deliberately do not import Ray: ``validate --no-import`` of a
200-application config has to finish in well under a second, and ``import ray.serve.schema`` alone
costs about one. Fields Ray itself keeps loose (request router, gang scheduling, deployment actors,
autoscaling policy) stay loose dictionaries here, so a valid config is never rejected.

Each field's description is the hint shown when its value is wrong.
"""

from __future__ import annotations

import difflib
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from ci_serve.config.problems import PathT

NonNegFloat = Annotated[float, Field(ge=0)]
PosFloat = Annotated[float, Field(gt=0)]


def _num_replicas(value: Any) -> Any:
    if value is None or value == "auto":
        return value
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"num_replicas must be a positive integer or 'auto', got {value!r}")
    return value


def _max_queued(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int) or not (value == -1 or value > 0):
        raise ValueError(f"max_queued_requests must be -1 (no limit) or a positive integer, got {value!r}")
    return value


_LEVELS = {"CRITICAL": 50, "FATAL": 50, "ERROR": 40, "WARN": 30, "WARNING": 30, "INFO": 20, "DEBUG": 10, "NOTSET": 0}
#: logging.LogRecord attributes Serve accepts in additional_log_standard_attrs (Ray 2.60)
LOGRECORD_ATTRS = frozenset({
    "args", "asctime", "created", "exc_info", "exc_text", "filename", "funcName", "levelname", "levelno",
    "lineno", "message", "module", "msecs", "msg", "name", "pathname", "process", "processName",
    "relativeCreated", "stack_info", "taskName", "thread", "threadName"})


def _policy(value: Any) -> Any:
    if isinstance(value, str):
        raise ValueError(f"policy is a mapping in current Ray, got the string {value!r} (older Ray's form; Ray "
                         "2.60's schema lets it through, then its Serve controller refuses the whole deploy with "
                         f"a raw AttributeError): write `policy: {{policy_function: {value}}}`")
    return value


def _log_level(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool) and value in _LEVELS.values():
        return value
    if isinstance(value, str) and value in _LEVELS:
        return value
    if isinstance(value, str) and value.upper() in _LEVELS:
        raise ValueError(f"log_level is case-sensitive: write {value.upper()!r}, not {value!r}")
    raise ValueError(f"log_level must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL, got {value!r}")


def _log_attrs(value: Any) -> Any:
    if isinstance(value, list):
        unknown = [v for v in value if v not in LOGRECORD_ATTRS]
        if unknown:
            raise ValueError(f"{unknown[0]!r} is not a logging.LogRecord attribute "
                             f"(known: {', '.join(sorted(LOGRECORD_ATTRS))})")
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LoggingConfig(_Strict):
    """Serve's logging settings (top level, per application or per deployment)."""

    encoding: Literal["TEXT", "JSON"] = Field("TEXT", description="log record format: TEXT or JSON")
    log_level: Annotated[Any, BeforeValidator(_log_level)] = Field(
        "INFO", description="minimum level logged: DEBUG, INFO, WARNING, ERROR, CRITICAL")
    logs_dir: str | None = Field(None, description="folder for Serve's log files (default: Ray's session logs)")
    enable_access_log: bool = Field(True, description="log one line per request (true/false)")
    additional_log_standard_attrs: Annotated[list[str], BeforeValidator(_log_attrs)] = Field(
        default_factory=list, description="extra logging.LogRecord attributes added to each record")


class AutoscalingPolicy(_Strict):
    """A custom autoscaling policy (per deployment, or per application)."""

    policy_function: str = Field("ray.serve.autoscaling_policy:default_autoscaling_policy",
                                 description="import path 'module:function' of the policy")
    policy_kwargs: dict[str, Any] = Field(default_factory=dict, description="keyword arguments of a policy "
                                          "class (JSON values)")


class AutoscalingConfig(_Strict):
    """Replica autoscaling of one deployment. ``min_replicas <= initial_replicas <= max_replicas``."""

    min_replicas: int = Field(1, ge=0, description="fewest replicas (0 allows scaling to zero)")
    initial_replicas: int | None = Field(None, ge=0, description="replicas at deploy time, between "
                                         "min_replicas and max_replicas")
    max_replicas: int = Field(1, ge=1, description="most replicas (at least 1 and at least min_replicas)")
    target_ongoing_requests: PosFloat | None = Field(2, description="ongoing requests per replica the "
                                                     "autoscaler aims for (a positive number)")
    metrics_interval_s: PosFloat = Field(10.0, description="seconds between replica metric reports")
    look_back_period_s: PosFloat = Field(30.0, description="seconds of metrics averaged per decision")
    smoothing_factor: PosFloat = Field(1.0, description="multiplier on each scaling decision")
    upscale_smoothing_factor: PosFloat | None = Field(None, description="smoothing factor for scaling up")
    downscale_smoothing_factor: PosFloat | None = Field(None, description="smoothing factor for scaling down")
    upscaling_factor: PosFloat | None = Field(None, description="multiplier on scale-up decisions")
    downscaling_factor: PosFloat | None = Field(None, description="multiplier on scale-down decisions")
    downscale_delay_s: NonNegFloat = Field(600.0, description="seconds to wait before scaling down")
    downscale_to_zero_delay_s: NonNegFloat | None = Field(None, description="seconds to wait before "
                                                          "scaling from one replica to zero")
    upscale_delay_s: NonNegFloat = Field(30.0, description="seconds to wait before scaling up")
    aggregation_function: Literal["mean", "max", "min"] = Field(
        "mean", description="how replica metrics are combined: mean, max or min")
    policy: Annotated[AutoscalingPolicy | None, BeforeValidator(_policy)] = Field(
        None, description="custom policy: {policy_function: 'module:function', policy_kwargs: {...}}")


class RayActorOptions(_Strict):
    """Resources and environment of each replica (replaces the code's whole ray_actor_options)."""

    runtime_env: dict[str, Any] = Field(default_factory=dict, description="per-deployment runtime "
                                        "environment, merged over the application's")
    num_cpus: NonNegFloat | None = Field(None, description="CPUs per replica (default 1; 0 is allowed)")
    num_gpus: NonNegFloat | None = Field(None, description="GPUs per replica")
    memory: NonNegFloat | None = Field(None, description="bytes of memory reserved per replica")
    resources: dict[str, NonNegFloat] = Field(default_factory=dict, description="custom resources per "
                                              "replica, e.g. {accelerator: 1}")
    accelerator_type: str | None = Field(None, description="required accelerator type, e.g. A100")
    label_selector: dict[str, str] | None = Field(None, description="node labels a replica must run on")
    fallback_strategy: list[dict[str, Any]] | None = Field(None, description="scheduling fallbacks")


class BackpressureConfig(_Strict):
    status_code: Literal[503, 429] = Field(503, description="HTTP status when the queue is full: 503 or 429")
    retry_after_s: NonNegFloat | None = Field(None, description="Retry-After header value in seconds")


class DeploymentConfig(_Strict):
    """Options of one deployment; each set here overrides the value set in code."""

    name: str = Field(min_length=1, description="a deployment name from the application's code")
    num_replicas: Annotated[Any, BeforeValidator(_num_replicas)] = Field(
        None, description="number of replicas: a positive integer, or 'auto' (not with autoscaling_config)")
    max_ongoing_requests: int = Field(5, gt=0, description="concurrent requests per replica (a positive "
                                      "integer; was max_concurrent_queries in Serve 2.0)")
    max_queued_requests: Annotated[Any, BeforeValidator(_max_queued)] = Field(
        -1, description="requests queued per caller before rejecting: -1 (no limit) or a positive integer")
    backpressure_config: BackpressureConfig | None = Field(None, description="how full queues answer")
    user_config: dict[str, Any] | None = Field(None, description="passed to the deployment's reconfigure(); "
                                               "changing it does not restart replicas")
    autoscaling_config: AutoscalingConfig | None = Field(None, description="replica autoscaling (not with "
                                                         "a fixed num_replicas)")
    graceful_shutdown_wait_loop_s: NonNegFloat = Field(2.0, description="seconds between checks for "
                                                       "finished requests while draining")
    graceful_shutdown_timeout_s: NonNegFloat = Field(20.0, description="seconds before a draining "
                                                     "replica is killed")
    health_check_period_s: PosFloat = Field(10.0, description="seconds between health checks")
    health_check_timeout_s: PosFloat = Field(30.0, description="seconds before a health check fails")
    ray_actor_options: RayActorOptions = Field(
        default_factory=RayActorOptions,
        description="replica resources; replaces the code's whole ray_actor_options (a mapping, not null)")
    placement_group_bundles: list[dict[str, NonNegFloat]] | None = Field(
        None, description="resource bundles reserved per replica, e.g. [{CPU: 1}, {GPU: 1}]")
    placement_group_strategy: Literal["PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"] | None = Field(
        None, description="placement of the bundles: PACK, SPREAD, STRICT_PACK or STRICT_SPREAD")
    placement_group_bundle_label_selector: list[dict[str, str]] | None = Field(
        None, description="node labels per bundle")
    max_replicas_per_node: int | None = Field(None, gt=0, description="most replicas on one node")
    logging_config: LoggingConfig | None = Field(None, description="this deployment's logging")
    request_router_config: dict[str, Any] | None = Field(None, description="custom request router")
    gang_scheduling_config: dict[str, Any] | None = Field(None, description="gang scheduling: {gang_size: N}")
    deployment_actors: list[dict[str, Any]] | None = Field(None, description="actors started with the "
                                                           "deployment")
    rolling_update_percentage: float | None = Field(None, gt=0, le=100, description="percent of replicas "
                                                    "updated at a time")
    max_surge_percent: int | None = Field(None, ge=0, description="percent of extra replicas during updates")


class ApplicationConfig(_Strict):
    """One application: its code (import_path), environment, route and deployment overrides."""

    name: str = Field("default", min_length=1, description="application name, unique in the config")
    route_prefix: str | None = Field("/", description="HTTP path prefix: starts with '/', unique, no "
                                     "trailing '/'; null for no HTTP route")
    import_path: str = Field(description="'module:attribute' (or 'module.attribute') naming an "
                             "application or a builder function")
    runtime_env: dict[str, Any] = Field(default_factory=dict, description="runtime environment "
                                        "(working_dir, pip, env_vars, ...) the code is imported in")
    deployments: list[DeploymentConfig] = Field(default_factory=list, description="per-deployment "
                                                "overrides of the options set in code")
    autoscaling_policy: AutoscalingPolicy | None = Field(None, description="application-level autoscaling "
                                                         "policy")
    args: dict[str, Any] = Field(default_factory=dict, description="arguments for a builder function "
                                 "(a mapping)")
    logging_config: LoggingConfig | None = Field(None, description="this application's logging")
    external_scaler_enabled: bool = Field(False, description="let an external scaler set replica counts")


class HTTPOptions(_Strict):
    host: str = Field("0.0.0.0", description="interface the HTTP proxies listen on")
    port: int = Field(8000, ge=0, le=65535, description="HTTP port (0-65535)")
    root_path: str = Field("", description="ASGI root path when behind a path-rewriting proxy")
    request_timeout_s: PosFloat | None = Field(None, description="end-to-end HTTP request timeout in seconds")
    keep_alive_timeout_s: int = Field(90, ge=0, description="HTTP keep-alive timeout in seconds")
    ssl_keyfile: str | None = Field(None, description="TLS key file")
    ssl_certfile: str | None = Field(None, description="TLS certificate file")
    ssl_keyfile_password: str | None = Field(None, description="password of the TLS key file")
    ssl_ca_certs: str | None = Field(None, description="CA bundle for client certificates")


class GrpcOptions(_Strict):
    port: int = Field(9000, ge=0, le=65535, description="gRPC port (0-65535)")
    grpc_servicer_functions: list[str] = Field(default_factory=list, description="import paths of "
                                               "add_*Servicer_to_server functions")
    request_timeout_s: PosFloat | None = Field(None, description="gRPC request timeout in seconds")
    enable_reflection: bool = Field(True, description="serve gRPC reflection")


class ControllerOptions(_Strict):
    runtime_env: dict[str, Any] | None = Field(None, description="runtime environment of the Serve controller")


class TracingConfig(_Strict):
    enabled: bool = Field(description="turn request tracing on")
    exporter_import_path: str = Field(description="import path of the span exporter")
    sampling_ratio: float = Field(ge=0, le=1, description="fraction of requests traced (0-1)")


class ServeConfig(_Strict):
    """A whole multi-application Serve config, as `serve deploy` and the dashboard take it."""

    proxy_location: Literal["Disabled", "HeadOnly", "EveryNode"] = Field(
        "EveryNode", description="where HTTP proxies run: EveryNode, HeadOnly or Disabled")
    http_options: HTTPOptions | None = Field(None, description="HTTP proxy options (host, port, ...)")
    grpc_options: GrpcOptions | None = Field(None, description="gRPC proxy options")
    controller_options: ControllerOptions | None = Field(None, description="Serve controller options")
    logging_config: LoggingConfig | None = Field(None, description="default logging of every application")
    tracing_config: TracingConfig | None = Field(None, description="request tracing")
    applications: list[ApplicationConfig] = Field(description="the applications, each with name, "
                                                  "route_prefix and import_path")
    target_capacity: float | None = Field(None, ge=0, le=100, description="percent of replicas to run (0-100)")


MODELS: tuple[type[BaseModel], ...] = (
    ServeConfig, ApplicationConfig, DeploymentConfig, AutoscalingConfig, RayActorOptions, LoggingConfig,
    HTTPOptions, GrpcOptions, ControllerOptions, TracingConfig, BackpressureConfig, AutoscalingPolicy)

#: models whose Ray counterpart forbids unknown keys (Ray rejects the config): an unknown key is an error
RAY_FORBIDS_EXTRA = frozenset({LoggingConfig, TracingConfig, BackpressureConfig})
_DEFAULT_POLICY = "ray.serve.autoscaling_policy:default_autoscaling_policy"

#: (model, key) -> what Ray does with a key it accepts and ignores: renamed or dropped options.
#: Reported as a warning (the config deploys, but not as written). Checked before the typo check.
IGNORED_KEYS: dict[tuple[type[BaseModel], str], str] = {
    (DeploymentConfig, "max_concurrent_queries"):
        "Ray ignores it (renamed `max_ongoing_requests` in Ray 2.10) and uses max_ongoing_requests from the "
        "code, else 5; rename the key",
    (DeploymentConfig, "route_prefix"):
        "Ray ignores a deployment's route_prefix and routes the application at its own `route_prefix`; "
        "set it on the application and delete it here",
    (DeploymentConfig, "init_args"):
        "Ray ignores it: constructor arguments are set in code (`.bind(...)`); delete it",
    (DeploymentConfig, "init_kwargs"):
        "Ray ignores it: constructor arguments are set in code (`.bind(...)`); delete it",
    (DeploymentConfig, "version"):
        "Ray ignores it (deployment versions were removed; Serve tracks code and config changes itself); "
        "delete it",
    (DeploymentConfig, "prefer_local_node_routing"):
        "Ray ignores it (removed from Serve); delete it",
    (DeploymentConfig, "import_path"):
        "Ray ignores a deployment's import_path (Serve 1.x): the application's import_path builds the graph; "
        "delete it",
    (AutoscalingConfig, "target_num_ongoing_requests_per_replica"):
        "Ray ignores it (renamed `target_ongoing_requests` in Ray 2.10) and aims at target_ongoing_requests, "
        "default 2; rename the key",
    (AutoscalingPolicy, "name"):
        f"Ray ignores `name` (older Ray's key for the policy) and runs its default policy {_DEFAULT_POLICY}; "
        "rename the key `policy_function`",
}
#: (model, key) -> why Ray rejects a key that an older format had there
REJECTED_KEYS: dict[tuple[type[BaseModel], str], str] = {
    (ApplicationConfig, "host"):
        "an application has no host (Ray rejects the config): set `http_options: {host: ...}` at the top level",
    (ApplicationConfig, "port"):
        "an application has no port (Ray rejects the config): set `http_options: {port: ...}` at the top level",
}
#: how close a key must be to a known one to count as a typo (difflib ratio)
NEAR_MISS = 0.75


def _field_docs() -> dict[str, str]:
    docs: dict[str, str] = {}
    for model in MODELS:
        for name, info in model.model_fields.items():
            if info.description:
                docs.setdefault(name, info.description)
    return docs


FIELD_DOCS = _field_docs()


#: one schema finding: (path, message, hint, at_key, severity)
Finding = tuple[PathT, str, "str | None", bool, str]


def schema_errors(data: Any, known: frozenset[PathT] | set[PathT] = frozenset(), release: str = "") -> list[Finding]:
    """Every schema finding in ``data``: (path, message, hint, at_key, severity); severity is
    "warning" for a key Ray accepts and ignores, "error" for everything Ray rejects and for typos.
    ``known``: keys the target Ray release has that these (newest) models do not (a legacy name on an
    older release, e.g. max_concurrent_queries on 2.9): not reported as unknown, unless Ray rejects them.
    ``release`` ("2.60") names the release in "ignored by Ray 2.60"."""
    try:
        ServeConfig.model_validate(data)
    except ValidationError as exc:
        return _convert(exc, data, known, release)
    return []


def strict_knows(path: PathT) -> bool:
    """Whether the key at ``path`` is a field of these models."""
    model = _model_at(path[:-1])
    return model is not None and path[-1] in model.model_fields


def _convert(exc: ValidationError, data: Any, known: frozenset[PathT] | set[PathT] = frozenset(),
             release: str = "") -> list[Finding]:
    found: list[Finding] = []
    seen: set[PathT] = set()
    for err in exc.errors(include_url=False):
        path: PathT = tuple(err["loc"])
        if path in seen:  # a union reports one error per member; one is enough
            continue
        seen.add(path)
        field = next((p for p in reversed(path) if isinstance(p, str)), "")
        kind = err["type"]
        if kind == "extra_forbidden":
            model = _model_at(path[:-1])
            if path in known and (model, field) not in REJECTED_KEYS:
                continue
            found.append(_unknown_key(field, path, f"Ray {release}" if release else "Ray"))
        elif kind == "missing":
            found.append((path, f"required key {field!r} is missing", FIELD_DOCS.get(field), True, "error"))
        else:
            msg = err["msg"].removeprefix("Value error, ")
            value = "***" if "env_vars" in path else short_value(err.get("input"))
            found.append((path, msg if "got " in msg else f"{msg} (got {value})", _doc(field), False, "error"))
    return found


def _doc(field: str) -> str | None:
    doc = FIELD_DOCS.get(field)
    return f"{field}: {doc}" if doc else None


def _unknown_key(key: str, path: PathT, ray: str = "Ray") -> Finding:
    model = _model_at(path[:-1])
    if model is not None and (model, key) in REJECTED_KEYS:
        return path, f"unknown key {key!r}", REJECTED_KEYS[(model, key)], True, "error"
    if model is not None and (model, key) in IGNORED_KEYS:
        return path, f"key {key!r} is ignored by {ray}", IGNORED_KEYS[(model, key)], True, "warning"
    known = list(model.model_fields) if model else []
    close = difflib.get_close_matches(key, known, n=1, cutoff=NEAR_MISS)
    if close:
        return path, f"unknown key {key!r}", f"did you mean {close[0]!r}? (Ray would silently ignore {key!r})", \
            True, "error"
    listing = f"known keys here: {', '.join(sorted(known))}"
    if model in RAY_FORBIDS_EXTRA:
        return path, f"unknown key {key!r}", f"Ray rejects unknown keys here; {listing}", True, "error"
    return path, f"unknown key {key!r} is ignored by {ray}", f"Ray deploys without it; {listing}", True, "warning"


def _model_at(parent: PathT) -> type[BaseModel] | None:
    """The model of the mapping at ``parent``."""
    model: Any = ServeConfig
    for part in parent:
        if isinstance(part, int):
            continue
        info = model.model_fields.get(part) if model else None
        model = _model_of(info.annotation) if info else None
    found: type[BaseModel] | None = model
    return found


def _model_of(annotation: Any) -> type[BaseModel] | None:
    import typing

    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model_of(arg)
        if found:
            return found
    return None


def short_value(value: Any) -> str:
    """A value as a problem message shows it (a mapping, a list, or its repr cut at 60 characters)."""
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
