"""The Gradio Space of fhe_backend: ``build_demo()`` builds it, ``launch_options()`` launches it.

Endpoints (all under one FHE queue, one job at a time): ``/run_audit`` (model, benchmark,
fhe_mode, limit, audits, budget) returns the JSON object of ``python -m fhe_backend audit --json``;
``/audit`` and ``/verify`` are the Audit tab's buttons; ``/bias_audit`` is the Bias &
interpretability tab's; ``/server_run`` is the Hub tab's server role.
"""

from .layout import build_demo
from .settings import launch_options

__all__ = ["build_demo", "launch_options"]
