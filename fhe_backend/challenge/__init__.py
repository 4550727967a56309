"""The test-set game: challenges on a hidden benchmark, submissions, the auditor's desk, signed
results and a leaderboard.

A benchmark maintainer (the auditor) keeps one plaintext benchmark hidden and evaluates any
number of submitted model packages on it in FHE; every result is signed with the auditor's
Ed25519 identity and tied to the run's public transcript, so anyone can check what was released.
A release policy (the Ladder of Blum & Hardt, one state per challenge, or rounding) limits what
adaptive resubmission under any number of names can learn about the hidden set.

    identity.py     the auditor's Ed25519 key pair (private half 0600 in a 0700 folder)
    notes.py        the auditor's private notes, one folder per challenge id (claimed once)
    policy.py       release policies (ladder:STEP, ladder:auto, round:DIGITS), quota and
                    budget rates, Wilson intervals
    attack.py       the boosting attack simulated against each policy (challenge attack-sim)
    store.py        the challenge folder (or hf://datasets/OWNER/NAME): init, submissions, results
    desk.py         the auditor's automated side: check, keygen, encrypt, run, decrypt, sign
    runs.py         runs by the server a signed submission names, and their signatures
    spotcheck.py    re-execution of a random subset of a run made by another server, sized
    leaderboard.py  result verification and the ranked table
    demo.py         the bundled demo challenge (``make assets``), signed by a demo identity
    cards.py        the challenge's Hub card
    publish.py      publishing the challenge's public files to a Hub dataset repo
    mirror.py       a local mirror of a challenge published on the Hub
"""
