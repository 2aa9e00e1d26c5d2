"""The spawn options form: render (escaped HTML) and parse (pure)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from html import escape

from latticehub.limits import MIN_CPU, MIN_MEMORY, GroupLimits
from latticehub.units import format_bytes, format_cpu


@dataclass(frozen=True)
class GroupOffer:
    """One group the user may charge, with what it allows."""

    name: str
    limits: GroupLimits
    in_use: int
    images: Sequence[str]


def _usage(offer: GroupOffer) -> str:
    cap = offer.limits.max_servers
    used = f"{offer.in_use}/{cap}" if cap is not None else f"{offer.in_use}/unlimited"
    return (
        f"{used} servers, up to {format_bytes(offer.limits.mem_limit)} memory and "
        f"{format_cpu(offer.limits.cpu_limit)} CPUs per server"
    )


def render_options_form(offers: Sequence[GroupOffer], default_image: str) -> str:
    """HTML for the spawn page: group choice, image, memory, CPUs and GPUs.

    Every value from configuration or group properties is escaped.
    """
    if not offers:
        return ""
    groups = "\n".join(
        f'<option value="{escape(o.name)}"{" selected" if i == 0 else ""}>'
        f"{escape(o.name)} ({escape(_usage(o))})</option>"
        for i, o in enumerate(offers)
    )
    images = []
    for image in dict.fromkeys(i for o in offers for i in o.images):
        used_by = ", ".join(o.name for o in offers if image in o.images)
        selected = " selected" if image == default_image else ""
        images.append(
            f'<option value="{escape(image)}"{selected}>{escape(image)} '
            f"(groups: {escape(used_by)})</option>"
        )
    max_gpus = max((o.limits.gpus or 0) for o in offers)
    gpu_field = (
        f'<label for="lh-gpus">GPUs</label>'
        f'<input class="form-control" id="lh-gpus" name="gpus" type="number" min="0" '
        f'max="{max_gpus}" value="0">'
        if max_gpus
        else ""
    )
    return f"""
<div class="form-group latticehub-options">
  <label for="lh-group">Group to charge</label>
  <select class="form-control" id="lh-group" name="group">
{groups}
  </select>
  <label for="lh-image">Image</label>
  <select class="form-control" id="lh-image" name="image">
{chr(10).join(images)}
  </select>
  <label for="lh-mem">Memory (at least {format_bytes(MIN_MEMORY)}, e.g. 2G; empty: the group's
    default)</label>
  <input class="form-control" id="lh-mem" name="mem_limit" type="text" placeholder="2G">
  <label for="lh-cpu">CPUs (at least {format_cpu(MIN_CPU)}, e.g. 1.5; empty: the group's
    default)</label>
  <input class="form-control" id="lh-cpu" name="cpu_limit" type="text" placeholder="1">
  {gpu_field}
</div>
"""


FORM_FIELDS = ("group", "image", "mem_limit", "cpu_limit", "gpus")


def options_from_form(formdata: Mapping[str, Sequence[str]]) -> dict[str, str]:
    """Turn the posted form (field -> list of values) into ``user_options``.

    Empty fields are dropped so that the group's defaults apply; values are validated
    later, in ``start()``, where the group is known.
    """
    options = {}
    for name in FORM_FIELDS:
        values = formdata.get(name) or []
        value = values[0].strip() if values else ""
        if value:
            options[name] = value
    return options
