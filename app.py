"""Hugging Face Space entry point. The UI lives in ``fhe_backend.ui``; importing this module only
builds the Blocks (the queue is configured there): nothing is compiled or downloaded."""

from __future__ import annotations

import argparse

from fhe_backend.ui import build_demo, launch_options
from fhe_backend.ui.settings import no_hot_reload
from fhe_backend.untrusted.sandbox import keep_warm

demo = build_demo()


def main() -> None:
    parser = argparse.ArgumentParser(description="Run the encrypted-audit Space locally.")
    parser.add_argument("--share", action="store_true", help="also serve a public gradio.live link")
    parser.add_argument("--port", type=int, default=None, help="port (default: Gradio's 7860)")
    args = parser.parse_args()
    keep_warm()  # a long-lived server: keep a compiled sandbox child ready for the next run
    no_hot_reload()
    demo.launch(share=args.share, server_port=args.port, **launch_options())


if __name__ == "__main__":
    main()
