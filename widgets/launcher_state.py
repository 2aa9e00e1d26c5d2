"""The launcher's state (no ipywidgets): form values, checks, the job options, submitting.

:class:`LauncherState` holds what the form shows as plain values (``values``: field name ->
value, the ``hidden`` channels and ``extra`` config as typed text), the job options of the
user's groups from the service (``GET api/v1/jobs/options``: executors, partitions, default
time/memory/CPUs and the maxima: the launcher keeps no copy of them), and the checks:
training values with :mod:`flows.config` (when the kernel has it; the service's 400 is placed
on its field otherwise), resources against the group's maxima. :mod:`widgets.launcher` is
its view.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from latticehub.client import TrackingClient

from .api import ServiceError, make_client, service_errors

#: Config keys that have their own field in the form (others go in "more config").
FORM_KEYS = ("action", "L", "m2", "lam", "beta", "n_layers", "hidden", "kernel",
             "steps", "batch_size", "lr", "seed")  # fmt: skip
#: Couplings of each action (the others are left out of the config).
COUPLINGS = {"phi4": ("m2", "lam"), "u1": ("beta",)}
#: Resource fields of the form.
RESOURCE_KEYS = ("group", "executor", "partition", "gpus", "cpus", "mem", "time")
#: Every field of the form with its value before anything is filled in.
BLANK: dict[str, Any] = {
    "action": "phi4", "L": 0, "m2": 0.0, "lam": 0.0, "beta": 0.0, "n_layers": 0, "hidden": "",
    "kernel": 0, "steps": 0, "batch_size": 0, "lr": 0.0, "seed": 0, "extra": "",
    "group": None, "executor": None, "partition": None, "gpus": 0, "cpus": 1, "mem": "",
    "time": "", "project": "", "name": "",
}  # fmt: skip
#: Presets: label -> values given to ``flows.config.make_config``.
PRESETS: dict[str, dict[str, Any]] = {
    "tutorial φ⁴ L=8": {"action": "phi4", "L": 8},
    "φ⁴ L=16": {"action": "phi4", "L": 16},
    "U(1) L=8, β=2": {"action": "u1", "L": 8, "beta": 2.0},
}
#: The tutorial config, used when ``flows`` cannot be imported in this kernel.
FALLBACK = {"action": "phi4", "L": 8, "m2": -4.0, "lam": 8.0, "beta": 2.0, "n_layers": 16,
            "hidden": [8, 8], "kernel": 3, "steps": 600, "batch_size": 64, "lr": 5e-3,
            "seed": 0}  # fmt: skip
#: Config keys a preset sets (the rest keep their form values).
PRESET_KEYS = frozenset({"action", "L", *COUPLINGS["phi4"], *COUPLINGS["u1"], "n_layers",
                         "hidden", "kernel", "steps", "batch_size", "lr", "seed"})  # fmt: skip
#: Projects listed in the picker at most.
MAX_PROJECT_NAMES = 200


def _flows_config() -> Any:
    """:mod:`flows.config`, or ``None`` when the kernel lacks it."""
    try:
        from flows import config
    except ImportError:
        return None
    return config


def clock(seconds: int) -> str:
    """Seconds as Slurm's ``H:MM:SS``.

    >>> clock(5400)
    '1:30:00'
    """
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def parse_hidden(text: str) -> list[int] | str:
    """``"8, 8"`` -> ``[8, 8]``; anything else is returned as typed (to be refused)."""
    try:
        return [int(part) for part in text.replace(" ", "").split(",") if part]
    except ValueError:
        return text


def field_for_message(message: str, fields: Iterable[str]) -> str | None:
    """The form field a validation message is about (``"L"``, ``"gpus"`` ...), if any.

    >>> field_for_message("config: lr must be > 0 (e.g. 1e-3), got -0.001", ["lr", "L"])
    'lr'
    >>> field_for_message("phi^4 checkerboard couplings need an even L, got L=3", ["L"])
    'L'
    """
    fields = set(fields)
    text = message.removeprefix("config: ")
    m = re.match(r"(?:resources\.)?([A-Za-z_][A-Za-z0-9_]*)", text)
    if m and m[1] in fields:
        return m[1]
    if re.search(r"\bL=", text) and "L" in fields:
        return "L"
    if "group" in fields and re.search(r"\bgroup\b", text) and not text.startswith("resources"):
        return "group"
    return None


@dataclass(frozen=True)
class GroupOptions:
    """What one group may ask for, as ``GET api/v1/jobs/options`` says (``None``: not said).

    Attributes:
        executors: executors this service runs for the group; the first is the default.
        partitions: Slurm partitions; the first is the default.
        max_gpus, max_cpus: GPUs per node and CPUs per task at most.
        max_mem_mb, max_time_s: memory per node (MB) and time limit (s) at most.
        default_cpus, default_mem_mb, default_time_s: what a job gets when it does not say.
    """

    executors: tuple[str, ...] = ()
    partitions: tuple[str, ...] = ()
    max_gpus: int | None = None
    max_cpus: int | None = None
    max_mem_mb: int | None = None
    max_time_s: int | None = None
    default_cpus: int | None = None
    default_mem_mb: int | None = None
    default_time_s: int | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> GroupOptions:
        """From one group's entry of the options (unknown keys are kept in ``extra``)."""
        known = {k: data[k] for k in cls.__dataclass_fields__ if k != "extra" and k in data}
        for key in ("executors", "partitions"):
            known[key] = tuple(known.get(key) or ())
        rest = {k: v for k, v in data.items() if k not in cls.__dataclass_fields__}
        return cls(**known, extra=rest)

    def placeholders(self) -> dict[str, str]:
        """Hints for the empty memory and time fields: the defaults and the maxima."""
        out = {}
        if self.default_mem_mb is not None:
            most = f", at most {self.max_mem_mb}M" if self.max_mem_mb is not None else ""
            out["mem"] = f"default {self.default_mem_mb}M{most}"
        if self.default_time_s is not None:
            most = f", at most {clock(self.max_time_s)}" if self.max_time_s is not None else ""
            out["time"] = f"default {clock(self.default_time_s)}{most}"
        return out


class LauncherState:
    """The launch form without its widgets.

    Args:
        client: the service client (default: from the notebook's environment).

    Attributes:
        client: the client, ``None`` when the environment names no service (see ``error``).
        values: field name -> value (``hidden`` and ``extra`` as typed text).
        options: group -> :class:`GroupOptions` from the service (``{}`` if unavailable).
        project_names: projects the user can see, for the picker.
        errors: field name -> why its value is refused (after :meth:`validate`).
        error: the last service error, if any.
        job: the submitted job, once launched.
    """

    def __init__(self, client: TrackingClient | None = None):
        self.values: dict[str, Any] = dict(BLANK)
        self.options: dict[str, GroupOptions] = {}
        self.project_names: list[str] = []
        self.errors: dict[str, str] = {}
        self.error: ServiceError | None = None
        self.job: dict[str, Any] | None = None
        self.client: TrackingClient | None = None
        try:
            self.client = make_client(client)
        except ServiceError as e:
            self.error = e

    # -- loading ---------------------------------------------------------------------------
    def load(self) -> None:
        """Fetch the job options and the project names (a failure is kept in ``error``)."""
        if self.client is None:
            return
        try:
            with service_errors(self.client):
                raw = self.client.job_options()
            self.options = {g: GroupOptions.from_json(o) for g, o in sorted(raw.items())}
            with service_errors(self.client):
                page = self.client.list_projects(max_results=MAX_PROJECT_NAMES)
            self.project_names = sorted(item["name"] for item in page.items)
        except ServiceError as e:
            self.error = e

    @property
    def groups(self) -> list[str]:
        """The groups that may submit jobs, sorted."""
        return sorted(self.options)

    def group_choices(self, group: str | None, previous: str | None = None) -> dict[str, Any]:
        """What the resource fields offer for ``group``, from its options.

        Args:
            group: the group chosen.
            previous: the group chosen before (its default CPUs, if untouched, give way to
                the new group's).

        Returns:
            ``executors``, ``partitions`` (lists), ``cpus`` (the group's default when the
            value was the previous group's default, else the value; within the maximum) and
            ``placeholders``.
        """
        opts = self.options.get(group or "")
        if opts is None:
            return {"executors": [], "partitions": [], "cpus": self.values["cpus"],
                    "placeholders": {}}  # fmt: skip
        before = self.options.get(previous or "")
        untouched = before is None or self.values["cpus"] == before.default_cpus
        cpus = (opts.default_cpus if untouched else None) or self.values["cpus"] or 1
        if opts.max_cpus is not None:
            cpus = min(cpus, opts.max_cpus)
        return {"executors": list(opts.executors), "partitions": list(opts.partitions),
                "cpus": cpus, "placeholders": opts.placeholders()}  # fmt: skip

    def choose_group(self, group: str | None) -> None:
        """Set the group and the resource values its options imply (executor, partition...)."""
        previous, self.values["group"] = self.values["group"], group
        choices = self.group_choices(group, previous)
        for key, listed in (
            ("executor", choices["executors"]),
            ("partition", choices["partitions"]),
        ):
            if self.values[key] not in listed:
                self.values[key] = listed[0] if listed else None
        self.values["cpus"] = choices["cpus"]

    def start(self, project: str = "", preset: str | None = None) -> None:
        """The form's first values: ``project``, the first group (its defaults), a preset."""
        self.values["project"] = project
        self.choose_group(self.groups[0] if self.groups else None)
        self.values.update(self.preset_values(preset or next(iter(PRESETS))))

    # -- filling ---------------------------------------------------------------------------
    @staticmethod
    def config_values(config: dict[str, Any]) -> dict[str, Any]:
        """Field values for a training config; keys without a field go in ``extra``."""
        out: dict[str, Any] = {}
        extra: dict[str, Any] = {}
        for key, value in config.items():
            if key in ("out", "resume"):
                continue
            if key not in FORM_KEYS:
                extra[key] = value
            elif key == "hidden":
                out[key] = ", ".join(map(str, value)) if isinstance(value, list) else str(value)
            else:
                out[key] = value
        out["extra"] = json.dumps(extra) if extra else ""
        return out

    def preset_values(self, name: str) -> dict[str, Any]:
        """Field values of a preset of :data:`PRESETS` (the recommended settings)."""
        values = PRESETS[name]
        config = _flows_config()
        full = config.make_config(values).to_dict() if config else {**FALLBACK, **values}
        return self.config_values({k: v for k, v in full.items() if k in PRESET_KEYS})

    def clone(self, run_id: str) -> tuple[dict[str, Any], list[str], dict[str, Any]]:
        """Field values from the params (and project) of an existing run.

        Returns:
            ``(values, ignored params, the run)``; ``values`` has ``project`` when the
            run's project could be read.

        Raises:
            ServiceError: the run cannot be read.
        """
        client = self._client()
        with service_errors(client):
            run = client.get_run(run_id)
        flows_config = _flows_config()
        known = set(flows_config.TrainConfig.__dataclass_fields__) if flows_config else None
        config: dict[str, Any] = {}
        ignored = []
        for key, raw in run["params"].items():
            if known is not None and key not in known:
                ignored.append(key)
                continue
            try:
                config[key] = json.loads(raw)
            except ValueError:
                config[key] = raw  # strings are stored as they are ("phi4")
        values = self.config_values(config)
        try:
            with service_errors(client):
                values["project"] = client.get_project(run["project_id"])["name"]
        except ServiceError:
            pass  # the project field keeps what was typed
        return values, ignored, run

    # -- reading ---------------------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        """The training config as typed (without checking; see :meth:`validate`)."""
        v = self.values
        action = v["action"]
        out: dict[str, Any] = {"action": action, "L": v["L"]}
        for key in COUPLINGS.get(action, ()):
            out[key] = v[key]
        for key in ("n_layers", "kernel", "steps", "batch_size", "lr", "seed"):
            out[key] = v[key]
        out["hidden"] = parse_hidden(v["hidden"])
        extra = self.extra()
        if isinstance(extra, dict):
            out.update({k: val for k, val in extra.items() if k not in out})
        return out

    def resources(self) -> dict[str, Any]:
        """The resources to ask for (empty fields left to the group's defaults)."""
        v = self.values
        out: dict[str, Any] = {"executor": v["executor"]} if v["executor"] else {}
        out["cpus"] = v["cpus"]
        if v["executor"] == "slurm" and v["partition"]:
            out["partition"] = v["partition"]
        if v["gpus"]:
            out["gpus"] = v["gpus"]
        for key in ("mem", "time"):
            if str(v[key]).strip():
                out[key] = str(v[key]).strip()
        return out

    def request(self) -> dict[str, Any]:
        """The body of ``POST api/v1/jobs`` (the arguments of ``client.submit_job``)."""
        body: dict[str, Any] = {
            "project": self.values["project"].strip(),
            "config": self.config(),
            "resources": self.resources(),
        }
        if self.values["group"]:
            body["group"] = self.values["group"]
        if self.values["name"].strip():
            body["name"] = self.values["name"].strip()
        return body

    def extra(self) -> dict[str, Any] | str:
        """The "more config" JSON object, or why it is refused."""
        text = self.values["extra"].strip()
        if not text:
            return {}
        try:
            value = json.loads(text)
        except ValueError as e:
            example = '{"log_every": 10}'
            return f"not valid JSON ({e.msg} at character {e.pos}): write e.g. {example}"
        if not isinstance(value, dict):
            return 'must be a JSON object, e.g. {"log_every": 10}'
        taken = sorted(set(value) & set(FORM_KEYS))
        if taken:
            return f"{', '.join(taken)} have their own field above: set them there"
        return value

    # -- checking --------------------------------------------------------------------------
    def validate(self) -> dict[str, str]:
        """Check every field; field name -> reason (also kept in :attr:`errors`)."""
        errors: dict[str, str] = {}
        extra = self.extra()
        if isinstance(extra, str):
            errors["extra"] = extra
        errors.update(self._config_errors(self.config(), errors))
        errors.update(self.resource_errors())
        if not self.values["project"].strip():
            errors["project"] = "name the project to record the run in (created if new)"
        self.errors = errors
        return errors

    def _config_errors(self, config: dict[str, Any], known: dict[str, str]) -> dict[str, str]:
        flows_config = _flows_config()
        if flows_config is None:  # the service checks it on submit
            return {}
        check: Callable[[dict], Any] = flows_config.make_config
        error_type = flows_config.ConfigError
        errors: dict[str, str] = {}
        action = config["action"]
        try:
            check({"action": action, "L": config["L"]})
        except error_type as e:
            errors["L"] = str(e)
        probe_l = 8 if "L" in errors else config["L"]
        for key, value in config.items():
            if key in ("action", "L"):
                continue
            where = key if key in FORM_KEYS else "extra"
            if where in errors or where in known:
                continue
            try:
                check({"action": action, "L": probe_l, key: value})
            except error_type as e:
                errors[where] = str(e) if where == key else f"{key}: {e}"
        if not errors and "extra" not in known:
            try:
                check(config)
            except error_type as e:
                errors[field_for_message(str(e), FORM_KEYS) or "extra"] = str(e)
        return errors

    def resource_errors(self) -> dict[str, str]:
        """Resource fields against the group's options (none known: the service checks)."""
        v = self.values
        group = v["group"]
        opts = self.options.get(group) if group else None
        if opts is None:
            if self.options:  # options known, but this group has none
                return {"group": "choose a group to charge the job to"}
            return {}  # unknown (service error): the service checks on submit
        errors: dict[str, str] = {}
        if not opts.executors:
            errors["executor"] = (
                f"none of group {group}'s executors runs on this service: ask an admin"
            )
        gpus, cpus = v["gpus"], v["cpus"]
        if gpus < 0:
            errors["gpus"] = "GPUs cannot be negative"
        elif opts.max_gpus is not None and gpus > opts.max_gpus:
            errors["gpus"] = f"at most {opts.max_gpus} GPUs per node for group {group}"
        if cpus < 1:
            errors["cpus"] = "ask for at least 1 CPU"
        elif opts.max_cpus is not None and cpus > opts.max_cpus:
            errors["cpus"] = f"at most {opts.max_cpus} CPUs for group {group}"
        return errors

    # -- launching -------------------------------------------------------------------------
    def submit(self) -> dict[str, Any]:
        """Submit the job (call :meth:`validate` first); the new job.

        A 400 that names a field is also put in :attr:`errors` under that field.

        Raises:
            ServiceError: the service refused (or could not be reached).
        """
        client = self._client()
        try:
            with service_errors(client):
                job = client.submit_job(**self.request())
        except ServiceError as e:
            self.error = e
            where = field_for_message(e.detail, BLANK) if e.status == 400 else None
            if where:
                self.errors[where] = e.detail
            raise
        self.error, self.job = None, job
        return job

    def _client(self) -> TrackingClient:
        if self.client is None:
            raise self.error or ServiceError("No experiments service.", None, "NO_SERVICE")
        return self.client
