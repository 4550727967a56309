"""The Gradio Space of fhe_backend: ``build_demo()`` builds it, ``launch_options()`` launches it.

Endpoints (all under one FHE queue, one job at a time): ``/run_audit`` (model, benchmark,
fhe_mode, limit, audits, budget) returns the JSON object of ``python -m fhe_backend audit --json``;
``/audit`` and ``/verify`` are the Audit tab's buttons; ``/bias_audit`` is the Bias &
interpretability tab's; ``/server_run`` is the Hub tab's server role.

    layout.py       the Blocks: header, one function per tab, the API endpoint, the queue
    handlers.py     event functions: backend calls, one-sentence errors as ``gr.Error``
    bias.py         the Bias & interpretability tab's events
    bias_render.py  the Bias tab's views: a figure and a reading per audit, the cost table
    bias_layers.py  the Bias tab's view of the representation audit (hidden-layer probes)
    compare.py      the Compare tab: several models on the same samples
    leaderboard.py  the Leaderboard tab: a challenge's ranked, verified results
    history.py      the History tab: this session's audits, re-opened
    hub_example.py  the Hub tab's example, published into the Space's own Hub cache
    links.py        ``?tab=&model=...`` links read on load and written by *Share via Link*
    render.py       packages and reports turned into Markdown, rows and plots
    names.py        feature names as a reader knows them (pixels, coded categories)
    sessions.py     per-session scratch folders; a closed tab stops its job
    timings.py      click-to-result estimates, learnt from the Space's own runs
    settings.py     the Space's limits and launch options
    texts.py        every sentence the Space shows
"""

from .layout import build_demo
from .settings import launch_options

__all__ = ["build_demo", "launch_options"]
