"""Sealed audits: only aggregate counts are ever decrypted.

    circuit.py  the count circuit the owner builds, its layout and the package's sealed view
    report.py   a sealed report's metrics, intervals and fairness from its decrypted counts
    dp.py       differential privacy: the noise a server adds to each count cell, its delta
    budget.py   the epsilon each auditor key may spend per UTC day, kept by the server
    dp_report.py  a report's intervals widened for that noise, from the noisy counts
    leak.py     what the decrypted counts reveal, emulated in clear (``bench --sealed-leak``)
    total.py    one total per run: count + add in one module (a measured design, not wired in)

The sealed audit's auditor lives with the other secrets, in ``auditor/sealed.py``.
"""
