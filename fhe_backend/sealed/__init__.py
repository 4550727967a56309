"""Sealed audits: only one total of counts per run is ever decrypted.

    circuit.py  the count + add + noise module the owner builds, its layout, the sealed view
    chain.py    a run's batch outputs added up into its one total (server, verifier, spot check)
    report.py   a sealed report's metrics, intervals and fairness from its decrypted counts
    dp.py       differential privacy: the noise a server adds to each count cell, its delta
    budget.py   the epsilon each auditor key may spend per UTC day, kept by the server
    dp_report.py  a report's intervals widened for that noise, from the noisy counts
    leak.py     what the decrypted counts reveal, emulated in clear (``bench --sealed-leak``)

The sealed audit's auditor lives with the other secrets, in ``auditor/sealed.py``.
"""
