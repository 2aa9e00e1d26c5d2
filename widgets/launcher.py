"""``TrainingLauncher()``: a form for a flow-training job that turns into its monitor.

The form covers the training config (action, lattice, couplings, model, training), the
resources the service offers the user's group (``GET api/v1/jobs/options``) and the
project. Values are checked as they are typed with :mod:`flows.config` (imported lazily),
the very checks ``python -m flows.train`` and the service make: a bad field is
highlighted with the reason and Launch is disabled. Without ``flows`` in the kernel the
service's 400 message is shown instead (on the field it names, where it names one).
``Launch`` submits ``POST api/v1/jobs`` and the panel becomes a :class:`~widgets.RunMonitor`.
Service errors (401, 403, 429, 5xx, unreachable) appear in the status line; nothing typed
is lost.
"""

from __future__ import annotations

import contextlib
import html
import json
import re
from collections.abc import Callable, Iterator
from typing import Any

import ipywidgets as w

from latticehub.client import TrackingClient

from . import api
from .monitor import RunMonitor

#: Config keys that have their own field in the form (others go in "More config").
FORM_KEYS = ("action", "L", "m2", "lam", "beta", "n_layers", "hidden", "kernel",
             "steps", "batch_size", "lr", "seed")  # fmt: skip
#: Couplings of each action (the others are left out of the config).
COUPLINGS = {"phi4": ("m2", "lam"), "u1": ("beta",)}
#: Resource fields of the form.
RESOURCE_KEYS = ("group", "executor", "partition", "gpus", "cpus", "mem", "time")
#: Presets: label -> (key, values given to ``flows.config.make_config``).
PRESETS: dict[str, dict[str, Any]] = {
    "tutorial φ⁴ L=8": {"action": "phi4", "L": 8},
    "φ⁴ L=16": {"action": "phi4", "L": 16},
    "U(1) L=8, β=2": {"action": "u1", "L": 8, "beta": 2.0},
}
#: The tutorial config, used when ``flows`` cannot be imported in this kernel.
FALLBACK = {"action": "phi4", "L": 8, "m2": -4.0, "lam": 8.0, "beta": 2.0, "n_layers": 16,
            "hidden": [8, 8], "kernel": 3, "steps": 600, "batch_size": 64, "lr": 5e-3,
            "seed": 0}  # fmt: skip
_STYLE = {"description_width": "10em"}


def _flows_config() -> Any:
    """:mod:`flows.config`, or ``None`` when the kernel lacks it."""
    try:
        from flows import config
    except ImportError:
        return None
    return config


def _clock(seconds: int) -> str:
    """Seconds as Slurm's ``H:MM:SS`` (for placeholders)."""
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def parse_hidden(text: str) -> list[int] | str:
    """``"8, 8"`` -> ``[8, 8]``; anything else is returned as typed (to be refused)."""
    try:
        return [int(part) for part in text.replace(" ", "").split(",") if part]
    except ValueError:
        return text


def field_for_message(message: str, fields: Any) -> str | None:
    """The form field a validation message is about (``"L"``, ``"gpus"`` ...), if any.

    >>> field_for_message("config: lr must be > 0 (e.g. 1e-3), got -0.001", ["lr", "L"])
    'lr'
    >>> field_for_message("phi^4 checkerboard couplings need an even L, got L=3", ["L"])
    'L'
    """
    text = message.removeprefix("config: ")
    m = re.match(r"(?:resources\.)?([A-Za-z_][A-Za-z0-9_]*)", text)
    if m and m[1] in fields:
        return m[1]
    if re.search(r"\bL=", text) and "L" in fields:
        return "L"
    if "group" in fields and re.search(r"\bgroup\b", text) and not text.startswith("resources"):
        return "group"
    return None


class TrainingLauncher(w.VBox):
    """Form to launch ``flows.train`` as a job; becomes the job's :class:`RunMonitor`.

    Args:
        client: the service client (default: from the notebook's environment).
        project: the project to record the run in (created in the group if new).
        preset: a key of :data:`PRESETS` to start from (default: the tutorial).
        clone: a run id whose params fill the form.

    Attributes:
        fields: field name -> input widget (``L``, ``lr``, ``gpus``, ``project`` ...).
        errors: field name -> why its value is refused (empty when Launch is enabled).
        options: the job options per group from the service (``{}`` if unavailable).
        job: the submitted job, once launched; ``monitor``: its :class:`RunMonitor`.

    Example::

        from widgets import TrainingLauncher
        TrainingLauncher(project="phi4-scan")
    """

    def __init__(
        self,
        client: TrackingClient | None = None,
        *,
        project: str = "",
        preset: str | None = None,
        clone: str | None = None,
    ):
        super().__init__()
        self.add_class("lh-launcher")
        self.errors: dict[str, str] = {}
        self.options: dict[str, dict] = {}
        self.job: dict | None = None
        self.monitor: RunMonitor | None = None
        self.error: api.ServiceError | None = None
        self._quiet = False
        self.fields: dict[str, w.Widget] = {}
        self.field_errors: dict[str, w.HTML] = {}
        self._rows: dict[str, w.Widget] = {}
        self._build()
        self.client: TrackingClient | None = None
        try:
            self.client = api.make_client(client)
            self.options = api.job_options(self.client)
        except api.ServiceError as e:
            self._remember(e)
        names: list[str] = []
        if self.client is not None and self.error is None:
            try:
                names = api.project_names(self.client)
            except api.ServiceError as e:
                self._remember(e)
        with self._batch():
            self.fields["project"].options = names
            self.fields["project"].value = project
            self._set_groups()
            self.apply_preset(preset or next(iter(PRESETS)), announce=False)
        if clone:
            self.clone(clone)
        self.validate()
        if self.error is None and not self.options:
            self._show("None of your groups may submit jobs: ask an admin for job limits.", "warn")

    # -- building ------------------------------------------------------------------------
    def _add(self, name: str, widget: w.Widget, help_text: str = "") -> w.Widget:
        widget.style = _STYLE
        widget.layout = w.Layout(width="26em")
        error = w.HTML()
        error.add_class("lh-field-error")
        hint = w.HTML(f'<span style="opacity:0.6">{help_text}</span>') if help_text else None
        row = w.HBox([widget, error] if hint is None else [widget, hint, error])
        row.add_class(f"lh-field-{name}")
        widget.add_class(f"lh-input-{name}")
        self.fields[name], self.field_errors[name], self._rows[name] = widget, error, row
        widget.observe(self._changed, names="value")
        return row

    def _build(self) -> None:
        def section(title: str) -> w.HTML:
            return w.HTML(f"<b>{title}</b>")

        action = w.Dropdown(
            options=[("φ⁴ (phi4)", "phi4"), ("U(1) gauge (u1)", "u1")], description="action"
        )
        action.observe(self._action_changed, names="value")
        physics = [
            section("Physics"),
            self._add("action", action),
            self._add("L", w.IntText(description="lattice size L"), "sites per side"),
            self._add("m2", w.FloatText(description="m² (m2)")),
            self._add("lam", w.FloatText(description="λ (lam)")),
            self._add("beta", w.FloatText(description="β (beta)")),
        ]
        model = [
            section("Model"),
            self._add("n_layers", w.IntText(description="layers")),
            self._add("hidden", w.Text(description="channels"), "hidden widths, e.g. 8,8"),
            self._add("kernel", w.IntText(description="kernel"), "odd, e.g. 3"),
        ]
        training = [
            section("Training"),
            self._add("steps", w.IntText(description="steps")),
            self._add("batch_size", w.IntText(description="batch size")),
            self._add("lr", w.FloatText(description="learning rate")),
            self._add("seed", w.IntText(description="seed")),
            self._add(
                "extra",
                w.Textarea(description="more config", placeholder='{"log_every": 10}', rows=2),
                "JSON object of other flows.train keys",
            ),
        ]
        group = w.Dropdown(description="group")
        group.observe(self._group_changed, names="value")
        resources = [
            section("Resources"),
            self._add("group", group),
            self._add("executor", w.Dropdown(description="executor")),
            self._add("partition", w.Dropdown(description="partition")),
            self._add("gpus", w.IntText(description="GPUs per node", value=0)),
            self._add("cpus", w.IntText(description="CPUs", value=1)),
            self._add("mem", w.Text(description="memory"), "e.g. 4G; empty: default"),
            self._add("time", w.Text(description="time limit"), "e.g. 1:00:00; empty: default"),
        ]
        self.fields["executor"].observe(self._executor_changed, names="value")
        run = [
            section("Run"),
            self._add("project", w.Combobox(description="project", ensure_option=False)),
            self._add("name", w.Text(description="run name", placeholder="optional")),
        ]
        self.preset = w.Dropdown(
            options=[("— preset —", "")] + [(k, k) for k in PRESETS], description="preset"
        )
        self.preset.style = _STYLE
        self.preset.add_class("lh-preset")
        self.preset.observe(self._preset_chosen, names="value")
        self.clone_id = w.Text(placeholder="run id", layout=w.Layout(width="18em"))
        self.clone_button = w.Button(description="Clone from run", icon="copy")
        self.clone_button.add_class("lh-clone")
        self.clone_button.on_click(lambda _b: self.clone(self.clone_id.value.strip()))
        self.launch_button = w.Button(description="Launch", button_style="primary", icon="rocket")
        self.launch_button.add_class("lh-launch")
        self.launch_button.on_click(lambda _b: self.launch())
        self.status_line = w.HTML()
        self.status_line.add_class("lh-status")
        top = w.HBox([self.preset, self.clone_id, self.clone_button])
        columns = w.HBox(
            [w.VBox(physics + model), w.VBox(training + resources + run)],
            layout=w.Layout(flex_flow="row wrap"),
        )
        self._form = (top, columns, w.HBox([self.launch_button]), self.status_line)
        self.children = self._form
        self._action_changed()

    # -- filling -------------------------------------------------------------------------
    @contextlib.contextmanager
    def _batch(self) -> Iterator[None]:
        """Fill several fields without validating after each."""
        quiet, self._quiet = self._quiet, True
        try:
            yield
        finally:
            self._quiet = quiet

    def set_config(self, config: dict[str, Any]) -> None:
        """Fill the form from a training config; keys without a field go in "more config"."""
        extra: dict[str, Any] = {}
        with self._batch():
            for key, value in config.items():
                if key in ("out", "resume"):
                    continue
                if key not in FORM_KEYS:
                    extra[key] = value
                elif key == "hidden":
                    self.fields[key].value = (
                        ", ".join(str(v) for v in value) if isinstance(value, list) else str(value)
                    )
                else:
                    self.fields[key].value = value
            self.fields["extra"].value = json.dumps(extra) if extra else ""
        self._changed()

    def apply_preset(self, name: str, announce: bool = True) -> None:
        """Fill the form with a preset of :data:`PRESETS` (the recommended settings)."""
        values = PRESETS[name]
        config = _flows_config()
        full = config.make_config(values).to_dict() if config else {**FALLBACK, **values}
        keep = {"action", "L", *COUPLINGS["phi4"], *COUPLINGS["u1"], "n_layers", "hidden",
                "kernel", "steps", "batch_size", "lr", "seed"}  # fmt: skip
        self.set_config({k: v for k, v in full.items() if k in keep})
        if announce:
            self._show(f"Preset {name!r} applied.", "info")

    def clone(self, run_id: str) -> None:
        """Fill the form from the params (and project) of an existing run."""
        if not run_id:
            self._show("Type the id of the run to clone.", "warn")
            return
        if self.client is None:
            self._show(self.error.message if self.error else "No service.", "error")
            return
        try:
            run = api.get_run(self.client, run_id)
        except api.ServiceError as e:
            self._remember(e)
            return
        flows_config = _flows_config()
        known = set(flows_config.TrainConfig.__dataclass_fields__) if flows_config else None
        values: dict[str, Any] = {}
        ignored = []
        for key, raw in run["params"].items():
            if known is not None and key not in known:
                ignored.append(key)
                continue
            try:
                values[key] = json.loads(raw)
            except ValueError:
                values[key] = raw  # strings are stored as they are ("phi4")
        self.set_config(values)
        try:
            self.fields["project"].value = api.find_project(self.client, run["project_id"])["name"]
        except api.ServiceError:
            pass  # the project field keeps what was typed
        note = f" (ignored params not in flows.train: {', '.join(ignored)})" if ignored else ""
        self._show(f"Filled from run {run_id} ({run['name']}){note}.", "info")

    def _set_groups(self) -> None:
        groups = sorted(self.options)
        self.fields["group"].options = groups
        self.fields["group"].value = groups[0] if groups else None
        self._group_changed()

    # -- reading -------------------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        """The training config as typed (without checking; see :meth:`validate`)."""
        f = self.fields
        action = f["action"].value
        out: dict[str, Any] = {"action": action, "L": f["L"].value}
        for key in COUPLINGS.get(action, ()):
            out[key] = f[key].value
        for key in ("n_layers", "kernel", "steps", "batch_size", "lr", "seed"):
            out[key] = f[key].value
        out["hidden"] = parse_hidden(f["hidden"].value)
        extra = self._extra()
        if isinstance(extra, dict):
            out.update({k: v for k, v in extra.items() if k not in out})
        return out

    def resources(self) -> dict[str, Any]:
        """The resources to ask for (empty fields left to the group's defaults)."""
        f = self.fields
        out: dict[str, Any] = {"executor": f["executor"].value, "cpus": f["cpus"].value}
        if f["executor"].value == "slurm" and f["partition"].value:
            out["partition"] = f["partition"].value
        if f["gpus"].value:
            out["gpus"] = f["gpus"].value
        for key in ("mem", "time"):
            if f[key].value.strip():
                out[key] = f[key].value.strip()
        return out

    def request(self) -> dict[str, Any]:
        """The body of ``POST api/v1/jobs`` for the form's values."""
        body: dict[str, Any] = {
            "project": self.fields["project"].value.strip(),
            "config": self.config(),
            "resources": self.resources(),
        }
        if self.fields["group"].value:
            body["group"] = self.fields["group"].value
        if self.fields["name"].value.strip():
            body["name"] = self.fields["name"].value.strip()
        return body

    def _extra(self) -> dict | str:
        text = self.fields["extra"].value.strip()
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

    # -- checking ------------------------------------------------------------------------
    def validate(self) -> dict[str, str]:
        """Check every field; highlight the bad ones, enable Launch only when none is.

        Returns:
            field name -> reason (also kept in :attr:`errors`).
        """
        errors: dict[str, str] = {}
        extra = self._extra()
        if isinstance(extra, str):
            errors["extra"] = extra
        errors.update(self._config_errors(self.config(), errors))
        errors.update(self._resource_errors())
        if not self.fields["project"].value.strip():
            errors["project"] = "name the project to record the run in (created if new)"
        self._highlight(errors)
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

    def _resource_errors(self) -> dict[str, str]:
        f = self.fields
        group = f["group"].value
        limits = self.options.get(group) if group else None
        if not limits:
            if self.options:  # options known, but this group has none
                return {"group": "choose a group to charge the job to"}
            return {}  # unknown (service error): the service checks on submit
        errors: dict[str, str] = {}
        gpus, cpus = f["gpus"].value, f["cpus"].value
        if gpus < 0:
            errors["gpus"] = "GPUs cannot be negative"
        elif gpus > limits["max_gpus"]:
            errors["gpus"] = f"at most {limits['max_gpus']} GPUs per node for group {group}"
        if cpus < 1:
            errors["cpus"] = "ask for at least 1 CPU"
        elif cpus > limits["max_cpus"]:
            errors["cpus"] = f"at most {limits['max_cpus']} CPUs for group {group}"
        return errors

    def _highlight(self, errors: dict[str, str]) -> None:
        self.errors = errors
        for name, widget in self.fields.items():
            label = self.field_errors[name]
            reason = errors.get(name)
            if reason:
                widget.add_class("lh-invalid")
                widget.layout.border = "2px solid #cf222e"
                label.value = (
                    f'<span class="lh-error" style="color:#cf222e">{html.escape(reason)}</span>'
                )
            else:
                widget.remove_class("lh-invalid")
                widget.layout.border = None
                label.value = ""
        self.launch_button.disabled = bool(errors)
        if errors:
            self.launch_button.tooltip = "fix the highlighted fields first"
        else:
            self.launch_button.tooltip = "submit the job"

    # -- events --------------------------------------------------------------------------
    def _changed(self, _change: Any = None) -> None:
        if not self._quiet:
            self.validate()

    def _action_changed(self, _change: Any = None) -> None:
        action = self.fields["action"].value
        for key in ("m2", "lam", "beta"):
            shown = key in COUPLINGS.get(action, ())
            self._rows[key].layout.display = None if shown else "none"

    def _group_changed(self, _change: Any = None) -> None:
        limits = self.options.get(self.fields["group"].value) or {}
        executor = self.fields["executor"]
        previous = executor.value
        executor.options = limits.get("executors") or ["docker"]
        executor.value = previous if previous in executor.options else executor.options[0]
        partition = self.fields["partition"]
        previous = partition.value
        partition.options = limits.get("partitions") or []
        if partition.options:
            partition.value = previous if previous in partition.options else partition.options[0]
        if limits:
            self.fields["cpus"].value = min(self.fields["cpus"].value or 1, limits["max_cpus"])
            self.fields["time"].placeholder = f"default {_clock(limits['default_time_s'])}"
            self.fields["mem"].placeholder = f"default {limits['default_mem_mb']}M"
        self._executor_changed()

    def _executor_changed(self, _change: Any = None) -> None:
        slurm = self.fields["executor"].value == "slurm"
        has_partitions = bool(self.fields["partition"].options)
        self._rows["partition"].layout.display = None if slurm and has_partitions else "none"
        self._changed()

    def _preset_chosen(self, change: Any) -> None:
        if change["new"]:
            self.apply_preset(change["new"])
            self.preset.value = ""

    # -- launching -----------------------------------------------------------------------
    def launch(self) -> RunMonitor | None:
        """Submit the job (the Launch button); on success the panel becomes its monitor.

        Returns:
            The :class:`RunMonitor`, or ``None`` when the form or the service refused.
        """
        if self.validate():
            self._show("Fix the highlighted fields first.", "error")
            return None
        if self.client is None:
            self._show(self.error.message if self.error else "No service.", "error")
            return None
        self.launch_button.disabled = True
        self._show("Submitting…", "busy")
        try:
            job = api.submit_job(self.client, self.request())
        except api.ServiceError as e:
            self._remember(e)
            field = field_for_message(e.detail, self.fields) if e.status == 400 else None
            if field:
                self.errors[field] = e.detail
                self._highlight(self.errors)
            else:
                self.launch_button.disabled = bool(self.errors)
            return None
        self.error = None
        self.job = job
        self._show(f"Job {job['id']} submitted.", "ok")
        self.monitor = RunMonitor(job["run_id"], self.client, job=job)
        back = w.Button(description="New launch", icon="arrow-left")
        back.add_class("lh-back")
        back.on_click(lambda _b: self.back_to_form())
        note = w.HTML(
            api.status_html(f"Job {job['id']} submitted ({job.get('executor', '')}).", "ok")
        )
        self.children = (self.monitor, w.HBox([back, note]))
        return self.monitor

    def back_to_form(self) -> None:
        """Show the form again (values kept) to launch another job; stops the monitor."""
        if self.monitor is not None:
            self.monitor.close()
            self.monitor = None
        self.children = self._form
        self._show("", "info")
        self.validate()

    def close(self) -> None:
        """Close the panel (and its monitor's thread)."""
        if self.monitor is not None:
            self.monitor.close()
        super().close()

    # -- messages ------------------------------------------------------------------------
    def _remember(self, error: api.ServiceError) -> None:
        self.error = error
        self._show(error.message, "error")

    def _show(self, message: str, level: str = "info") -> None:
        self.status_line.value = api.status_html(message, level)
