"""``TrainingLauncher()``: a form for a flow-training job that turns into its monitor.

The form covers the training config (action, lattice, couplings, model, training), the
resources the service offers the user's group (``GET api/v1/jobs/options``) and the
project. Values are checked as they are typed with :mod:`flows.config` (imported lazily),
the very checks ``python -m flows.train`` and the service make: a bad field is
highlighted with the reason and Launch is disabled. Without ``flows`` in the kernel the
service's 400 message is shown instead (on the field it names, where it names one).
``Launch`` submits ``POST api/v1/jobs`` and the panel becomes a :class:`~widgets.RunMonitor`.
Service errors (401, 403, 429, 5xx, unreachable) appear in the status line; nothing typed
is lost. The values, checks and service calls live in :mod:`widgets.launcher_state`; this
module is the view.
"""

from __future__ import annotations

import contextlib
import html
from collections.abc import Iterator
from typing import Any

import ipywidgets as w

from latticehub.client import TrackingClient

from . import api
from .launcher_state import (  # noqa: F401 - re-exported: their old home
    COUPLINGS,
    FALLBACK,
    FORM_KEYS,
    PRESETS,
    RESOURCE_KEYS,
    GroupOptions,
    LauncherState,
    field_for_message,
    parse_hidden,
)
from .monitor import RunMonitor

_STYLE = {"description_width": "10em"}


class TrainingLauncher(w.VBox):
    """Form to launch ``flows.train`` as a job; becomes the job's :class:`RunMonitor`.

    Args:
        client: the service client (default: from the notebook's environment).
        project: the project to record the run in (created in the group if new).
        preset: a key of :data:`PRESETS` to start from (default: the tutorial).
        clone: a run id whose params fill the form.

    Attributes:
        state: the form's :class:`~widgets.launcher_state.LauncherState` (values, checks).
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
        self.monitor: RunMonitor | None = None
        self._quiet = False
        self.fields: dict[str, w.Widget] = {}
        self.field_errors: dict[str, w.HTML] = {}
        self._rows: dict[str, w.Widget] = {}
        self._build()
        self.state = LauncherState(client)
        self.state.load()
        self.state.start(project, preset)
        self._show_error()
        with self._batch():
            self.fields["project"].options = self.state.project_names
        self._show_state()
        if clone:
            self.clone(clone)
        self.validate()
        if self.error is None and not self.options:
            self._show("None of your groups may submit jobs: ask an admin for job limits.", "warn")

    # -- the state's attributes ----------------------------------------------------------
    @property
    def client(self) -> TrackingClient | None:
        """The service client (``None`` when the environment names no service)."""
        return self.state.client

    @property
    def options(self) -> dict[str, GroupOptions]:
        """The job options per group from the service (``{}`` if unavailable)."""
        return self.state.options

    @property
    def errors(self) -> dict[str, str]:
        """Field name -> why its value is refused."""
        return self.state.errors

    @property
    def error(self) -> api.ServiceError | None:
        """The last service error, if any."""
        return self.state.error

    @property
    def job(self) -> dict | None:
        """The submitted job, once launched."""
        return self.state.job

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

    # -- values between widgets and state ------------------------------------------------
    @contextlib.contextmanager
    def _batch(self) -> Iterator[None]:
        """Fill several fields without validating after each."""
        quiet, self._quiet = self._quiet, True
        try:
            yield
        finally:
            self._quiet = quiet

    def _read(self) -> None:
        """Copy the widgets' values into the state."""
        self.state.values.update({name: widget.value for name, widget in self.fields.items()})

    def _show_state(self) -> None:
        """Show all of the state: the group's choices first, then every value."""
        values = self.state.values
        choices = self.state.group_choices(values["group"])
        with self._batch():
            self.fields["group"].options = self.state.groups
            self.fields["executor"].options = choices["executors"]
            self.fields["partition"].options = choices["partitions"]
            for key in ("mem", "time"):
                self.fields[key].placeholder = choices["placeholders"].get(key, "empty: default")
        self._write(values)
        self._executor_changed()

    def _write(self, values: dict[str, Any]) -> None:
        """Show ``values`` in their widgets (and so in the state)."""
        with self._batch():
            for name, value in values.items():
                if name in self.fields and self.fields[name].value != value:
                    self.fields[name].value = value
        self._read()

    def set_config(self, config: dict[str, Any]) -> None:
        """Fill the form from a training config; keys without a field go in "more config"."""
        self._write(self.state.config_values(config))
        self._changed()

    def apply_preset(self, name: str, announce: bool = True) -> None:
        """Fill the form with a preset of :data:`PRESETS` (the recommended settings)."""
        self._write(self.state.preset_values(name))
        self._changed()
        if announce:
            self._show(f"Preset {name!r} applied.", "info")

    def clone(self, run_id: str) -> None:
        """Fill the form from the params (and project) of an existing run."""
        if not run_id:
            self._show("Type the id of the run to clone.", "warn")
            return
        try:
            values, ignored, run = self.state.clone(run_id)
        except api.ServiceError as e:
            self.state.error = e
            self._show_error()
            return
        self._write(values)
        self._changed()
        note = f" (ignored params not in flows.train: {', '.join(ignored)})" if ignored else ""
        self._show(f"Filled from run {run_id} ({run['name']}){note}.", "info")

    # -- reading -------------------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        """The training config as typed (without checking; see :meth:`validate`)."""
        self._read()
        return self.state.config()

    def resources(self) -> dict[str, Any]:
        """The resources to ask for (empty fields left to the group's defaults)."""
        self._read()
        return self.state.resources()

    def request(self) -> dict[str, Any]:
        """The body of ``POST api/v1/jobs`` for the form's values."""
        self._read()
        return self.state.request()

    # -- checking ------------------------------------------------------------------------
    def validate(self) -> dict[str, str]:
        """Check every field; highlight the bad ones, enable Launch only when none is.

        Returns:
            field name -> reason (also kept in :attr:`errors`).
        """
        self._read()
        errors = self.state.validate()
        self._highlight(errors)
        return errors

    def _highlight(self, errors: dict[str, str]) -> None:
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

    def _group_changed(self, change: Any = None) -> None:
        if self._quiet:
            return
        previous = change["old"] if change else self.state.values["group"]
        self._read()
        self.state.values["group"] = previous  # choose_group compares with the group before
        self.state.choose_group(self.fields["group"].value)
        self._show_state()

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
            self._show_error()
            return None
        self.launch_button.disabled = True
        self._show("Submitting…", "busy")
        try:
            job = self.state.submit()
        except api.ServiceError:
            self._show_error()
            self._highlight(self.state.errors)
            return None
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
    def _show_error(self) -> None:
        if self.error is not None:
            self._show(self.error.message, "error")
        elif self.client is None:
            self._show("No service.", "error")

    def _show(self, message: str, level: str = "info") -> None:
        self.status_line.value = api.status_html(message, level)
