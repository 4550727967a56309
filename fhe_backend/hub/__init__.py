"""Where artifacts come from and go: the embedded zoo, the Hugging Face Hub, references.

    zoo.py         lists the embedded zoo (``assets/``)
    registry.py    benchmarks the auditor registered on this machine (``register-benchmark``)
    references.py  a zoo id, folder, Hub ref or registered id turned into an artifact
    remote.py      the Hub: downloads, discovery (the only module importing huggingface_hub)
    publish.py     uploads of packages, encrypted benchmarks and runs (``--dry-run`` folders)
    cards.py       the Hub cards of published artifacts
"""
