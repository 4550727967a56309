"""Links to the page: ``?tab=&model=&benchmark=&fhe=&samples=`` (Compare adds ``models=``, the
Leaderboard ``challenge=&entry=``) read on load, written by the *Share via Link* button.

A link carries inputs only, never results: a reopened page shows the inputs and asks for Run,
so a result is only ever shown beside the inputs that made it.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlencode

from .. import modes
from . import texts

# The parameters a link may carry besides the tab, in the order the button writes them.
LINK_KEYS = ("model", "benchmark", "models", "fhe", "samples", "challenge", "entry")
# The page's tabs by their link id, in page order (layout.TABS gives each its label and
# builder, and checks it follows this list): every tab's load reads the link against it.
TAB_IDS = ("audit", "bias", "compare", "history", "hub", "leaderboard", "how")
DEFAULT_TAB = TAB_IDS[0]  # the tab a link without ``tab=`` opens: the first tab
# Gradio's own deep links (``?deep_link=``) restore a snapshot of every component that mixes
# stale inputs with results (measured: a model chosen before the snapshot missing from it). The
# page ignores them: defaults, no results, and a warning pointing to Share via Link.
DEEP_LINK = "deep_link"
# A warning repeats at most this much of a link's value, and names at most SHOWN_NAMES of a list:
# a link is anyone's text, and Gradio renders a warning's text as HTML.
SHOWN_CHARS = 60
SHOWN_NAMES = 5


@dataclass
class Link:
    """A link's request: the tab it opens and the inputs it names for that tab (checked against
    the tab ids and modes; the model and benchmark are checked by the tab that takes them)."""

    tab: str
    model: str | None = None
    benchmark: str | None = None
    fhe: str | None = None
    samples: int | None = None
    models: list[str] | None = None  # Compare's chosen models
    challenge: str | None = None  # the Leaderboard's challenge and opened entry
    entry: str | None = None
    warnings: list[str] = field(default_factory=list)

    def for_tab(self, tab_id: str) -> Link:
        """The link's inputs when it opens ``tab_id``; no inputs for the other tabs."""
        return self if self.tab == tab_id else Link(tab_id)


def parse(params: dict[str, str], tab_ids: Sequence[str] = TAB_IDS) -> Link:
    """The link's tab (the first tab when absent or unknown to ``tab_ids``) and inputs, with a
    warning per value that cannot be used."""
    warnings: list[str] = []
    tab = params.get("tab") or DEFAULT_TAB
    if tab not in tab_ids:
        warnings.append(texts.UNKNOWN_QUERY_TAB.format(tab=shown(tab), known=", ".join(tab_ids)))
        tab = DEFAULT_TAB
    fhe = params.get("fhe") or None
    if fhe is not None and fhe not in modes.MODES:
        warnings.append(texts.UNKNOWN_QUERY_MODE.format(mode=shown(fhe), known=modes.known()))
        fhe = None
    samples = None
    if params.get("samples"):
        try:
            samples = int(params["samples"])
        except ValueError:
            samples = 0
        if samples < 1:
            warnings.append(texts.BAD_QUERY_SAMPLES.format(samples=shown(params["samples"])))
            samples = None
    if DEEP_LINK in params:
        warnings.append(texts.DEEP_LINK_IGNORED)
    models = [m.strip() for m in params["models"].split(",") if m.strip()] if (
        params.get("models")) else None
    return Link(tab, params.get("model") or None, params.get("benchmark") or None, fhe,
                samples, models, params.get("challenge") or None, params.get("entry") or None,
                warnings)


def shown(value: object, limit: int = SHOWN_CHARS) -> str:
    """A link's value as a warning may repeat it: cut to ``limit`` characters, HTML-escaped (a
    link naming the tab ``<a href=…>`` put a stranger's link into the Space's own warning)."""
    text = str(value)
    return html.escape(text if len(text) <= limit else text[:limit] + "…")


def shown_list(values: Iterable[object]) -> str:
    """The first SHOWN_NAMES values, each :func:`shown`, and how many more there are."""
    values = list(values)
    more = f" and {len(values) - SHOWN_NAMES} more" if len(values) > SHOWN_NAMES else ""
    return ", ".join(shown(v) for v in values[:SHOWN_NAMES]) + more


def query(tab: str, values: dict[str, object]) -> str:
    """``?tab=…&model=…``: the tab and its non-empty inputs."""
    if str(values.get("benchmark") or "").startswith(texts.UPLOAD_CHOICE_PREFIX):
        # An upload stays in the session that made it: the link names no benchmark.
        values = {**values, "benchmark": None, "samples": None}
    if isinstance(values.get("samples"), float):
        values = {**values, "samples": int(values["samples"])}
    if isinstance(values.get("models"), list | tuple):
        values = {**values, "models": ",".join(values["models"]) or None}
    pairs = [("tab", tab)] + [(key, str(values[key])) for key in LINK_KEYS
                              if values.get(key) not in (None, "")]
    return "?" + urlencode(pairs)


def clamp_samples(link: Link, top: int, suggested: int) -> int:
    """The link's sample count within the slider's range, saying so when it had to shrink."""
    if link.samples is None:
        return suggested
    if link.samples > top:
        link.warnings.append(texts.QUERY_SAMPLES_CAPPED.format(samples=link.samples, top=top))
        return top
    return link.samples
