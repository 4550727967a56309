"""Every sentence the Space shows, in one place (layout and handlers only arrange them)."""

from __future__ import annotations

TITLE = "Encrypted model audits with FHE"

HEADER = """\
# Encrypted model audits
Audit a classifier on a benchmark that its server never sees: the auditor encrypts the benchmark
with fully homomorphic encryption (TFHE, [Concrete ML](https://github.com/zama-ai/concrete-ml)),
the server runs the model on the ciphertexts, and only the auditor can decrypt the predictions
and score them against the labels it kept.
"""

ONE_PROCESS_NOTE = """\
**⚠ Demo: one process plays every role here, so this Space holds the secret key.** \
In real use the auditor generates the keys and keeps them on their own machine; the server only \
ever receives ciphertexts and evaluation keys. The files of a run are deleted when you close the \
tab. To audit without trusting this Space, use the *Hub benchmark* tab or the command line.
"""

# -- audit tab -------------------------------------------------------------------------------

MODE_LABELS = {
    "execute": "real FHE (execute)",
    "simulate": "simulation (simulate, no encryption)",
}
MODE_CHOICES = [
    ("Real FHE (execute): keygen, encrypt, run on ciphertexts, decrypt", "execute"),
    ("Simulate: the same circuit in clear, no encryption (seconds)", "simulate"),
]
NO_MODELS = "This Space's zoo has no models yet."
NO_RESULT = "No audit has run in this session yet: choose a model and press **Run the audit**."
CHOOSE_MODEL = "Choose a model first."
CHOOSE_BENCHMARK = "Choose a benchmark that fits the model first."
NO_FITTING_BENCHMARK = "No benchmark in this Space's zoo fits {model}."
UNKNOWN_MODE = "Unknown FHE mode {mode!r}; use execute or simulate."
BAD_LIMIT = "The number of samples must be a whole number of at least 1."
EXECUTE_CAP = (
    "Real FHE runs are limited to {cap} samples on this Space and this one asks for {n}; choose "
    "at most {cap} samples, use simulate, or run `python -m fhe_backend audit` on your machine."
)
NOT_IN_ZOO = "No {kind} {ref!r} in this Space's zoo (it has: {known})."
PACKAGE_BROKEN = "⚠ This model package cannot be used: {error}"
UNKNOWN_QUERY_MODEL = "The link names a model {model!r} that this Space does not have."
UNFITTING_QUERY_BENCHMARK = "The link names a benchmark {benchmark!r} that does not fit {model}."
SAMPLES_INFO = "Real FHE is capped at {cap} samples on this Space (FHE_AUDIT_MAX_SAMPLES)."

ESTIMATE_EXECUTE = (
    "**Estimated cost, real FHE:** {n} samples × {per_sample:.3f} s/sample ≈ **{total}** of FHE "
    "run, plus key generation and encryption. Measured on {machine}; this Space has {cpus} CPUs."
)
ESTIMATE_UNKNOWN = (
    "**Real FHE:** this model's package has no measured FHE time, so no estimate; {n} samples."
)
ESTIMATE_SIMULATE = (
    "**Simulate:** no FHE, no encryption: Concrete's simulator runs the same circuit in clear "
    "on {n} samples; it takes seconds. Predictions match real FHE; the timings do not."
)

# Progress: one line per role, in the order the demo plays them.
STEPS = {
    "execute": {
        "keygen": "Auditor generates the keys",
        "encrypt": "Auditor encrypts the samples",
        "run": "Server runs the model on ciphertexts (FHE)",
        "decrypt": "Auditor decrypts the outputs",
        "reference": "Reference: the same circuit in clear",
    },
    "simulate": {
        "run": "Simulating the circuit in clear (no encryption)",
        "reference": "Reference: the same circuit in clear",
    },
}
SAMPLE_PROGRESS = "{label}: {done} of {total} samples"

RESULT_BANNER = (
    "### Mode: {mode}\n**{model}** on **{benchmark}** · {n} samples ({failed} failed) · "
    "accuracy **{accuracy:.4f}** · agreement with the clear circuit {agreement}"
)
NO_FHE = "no FHE (simulate)"
NO_PREVIEW = "No ciphertext: simulate mode encrypts nothing."
VERIFY_NEEDS_EXECUTE = (
    "Run an audit in real FHE (execute) first: a simulation has no ciphertexts to re-execute."
)
VERIFY_RESULT = "**{status}** ({mode} run of {model} on {benchmark}). {summary}"
VERIFY_PROGRESS = "Verifier re-executes the run in FHE"
UNEXPECTED = "The {action} failed unexpectedly ({kind}); the details are in the Space's log."

# -- Hub tab ---------------------------------------------------------------------------------

HUB_INTRO = """\
### Run a model on an auditor's encrypted benchmark (server role)
The auditor encrypted a benchmark on their machine (`python -m fhe_backend encrypt`) and
published the ciphertexts and evaluation keys as a Hub dataset. This tab plays the **server**:
it downloads the model package and the encrypted benchmark, runs the model on the ciphertexts,
and hands back the encrypted outputs with a transcript of hashes. **No key and no plaintext is
asked for or seen here**; only the auditor can decrypt the outputs.
"""
HUB_LIMITS = """\
**Limits.** The server needs the model's `server.zip`, whose circuit holds the quantized weights
in clear: whoever runs this tab sees the model. A private model is therefore audited on a
**private duplicate** of this Space (button at the top) owned by the model owner, not here.
"""
MODEL_REF_HINT = "hf://OWNER/NAME or hf://OWNER/NAME@REVISION"
BENCHMARK_REF_HINT = "hf://datasets/OWNER/NAME or hf://datasets/OWNER/NAME@REVISION"
HUB_REFS_NEEDED = "Enter both references: the model package and the encrypted benchmark."
HUB_MISSING = "The Hub is not reachable from this Space: its Hub support is not installed."
HUB_UNREACHABLE = "The Hub is not reachable from this Space ({kind}); try again later."
SERVER_CAP = (
    "This encrypted benchmark has {n} samples and real FHE runs are limited to {cap} on this "
    "Space; run `python -m fhe_backend run` on your own machine or on a duplicate of the Space."
)
HUB_DOWNLOAD = "Server downloads the model package and the encrypted benchmark"
SERVER_PROGRESS = "Server runs the model on ciphertexts (FHE)"
SERVER_DONE = (
    "### Mode: real FHE (execute, server role)\nRan **{model}** on **{benchmark}**: {n} samples "
    "({failed} failed), {per_sample:.3f} s/sample. Outputs hash `{outputs}`. Download the run "
    "and give it to the auditor: only their key decrypts it."
)
DECRYPT_COMMAND = """\
# On the auditor's machine; KEYS is the key folder used to encrypt (never upload it)
unzip {archive}
python -m fhe_backend decrypt --run {run} --keys KEYS --benchmark {benchmark}
# add --model PACKAGE when the model is not in the auditor's zoo
"""

# -- How it works tab ------------------------------------------------------------------------

ROLES_TITLE = "### Who sees what"
ROLES_HEADERS = ["Party", "Holds", "Sees", "Never sees"]
ROLES_ROWS = [
    ("**Model owner**",
     "the model; publishes the model package (`client.zip`, `server.zip`, manifest)",
     "the run's transcript, if it is published",
     "the benchmark, the secret key, the decrypted predictions"),
    ("**Auditor**",
     "the plaintext benchmark (inputs, labels, sensitive attributes) and the **secret key**, "
     "both on their own machine",
     "`client.zip` (quantizers and encryption parameters, no weights), the decrypted "
     "predictions, the metrics",
     "the weights, unless they also run `server.zip`"),
    ("**Server** (this Space, or whoever runs `server.zip`)",
     "`server.zip`, whose circuit holds the quantized weights **in clear**; the encrypted "
     "benchmark and the evaluation keys",
     "ciphertexts, the number of samples, timings, hashes",
     "inputs, labels, predictions, the secret key"),
    ("**Public / verifier**",
     "the model package, the encrypted benchmark and the run folder, if published",
     "hashes; can re-execute the run and compare them",
     "anything in clear about the benchmark or the predictions"),
]

FLOW_DIAGRAM = """\
### Flow
```mermaid
sequenceDiagram
    participant O as Model owner
    participant A as Auditor (secret key)
    participant S as Server
    participant V as Anyone (verifier)
    O->>A: model package (client.zip: quantizers, no weights)
    O->>S: model package (server.zip: weights in clear)
    A->>A: keygen, encrypt the benchmark
    A->>S: encrypted benchmark (ciphertexts + evaluation keys)
    S->>S: run the circuit on the ciphertexts (FHE)
    S->>A: run folder (encrypted outputs + transcript of hashes)
    A->>A: decrypt, score against the kept labels
    S-->>V: published run folder
    V->>V: re-execute, compare hashes (verify)
```
"""

THREAT_MODEL = """\
### Threat model and limits
* **The benchmark stays secret** from the server and the model owner: they only handle TFHE
  ciphertexts (Concrete's default 128-bit security parameters) and public evaluation keys. This
  holds as long as the auditor's key folder stays on the auditor's machine.
* **The model is not secret from the server.** `server.zip` holds the quantized weights in clear
  (Concrete ML computes on encrypted data with a clear model). A private model is therefore
  audited on a **private duplicate** of this Space, or on the owner's machine, run by the owner;
  the auditor receives only `client.zip`.
* **In this demo one process plays every role, so it holds the secret key**; use it with public
  benchmarks only. Its files live in a per-session folder removed when the tab is closed.
* **What is audited is the compiled, quantized circuit** named by the model fingerprint (SHA-256
  of `client.zip` + `server.zip`), not the float model; the page shows both accuracies and the
  agreement between FHE predictions and the same circuit in clear.
* **Integrity is checked by re-execution, not by a proof.** FHE evaluation is deterministic, so
  anyone holding the model package, the encrypted benchmark and the run folder can re-execute the
  run and compare every hash (*Verify*). FHE alone does not prove which model a server ran.
* **Metadata leaks:** the server learns the number of samples, their sizes and per-sample timing.
"""

CLI_EQUIVALENTS = """\
### Command-line equivalents
```shell
# The Audit tab's Run button: every role in one process (prints the same JSON as /run_audit)
python -m fhe_backend audit --model MODEL --benchmark BENCH --fhe execute --limit N --json

# The same audit split across machines
python -m fhe_backend keygen  --model MODEL --keys KEYS                             # auditor
python -m fhe_backend encrypt --model MODEL --benchmark BENCH --keys KEYS --out ENC  # auditor
python -m fhe_backend run     --model MODEL --encrypted ENC --out RUN               # server
python -m fhe_backend decrypt --run RUN --keys KEYS --benchmark BENCH                # auditor
python -m fhe_backend verify  --model MODEL --encrypted ENC --run RUN --limit N     # anyone

# The zoo
python -m fhe_backend models
python -m fhe_backend benchmarks
```
"""

API_USAGE = """\
### API and links
Every action is an API endpoint (see *Use via API* at the bottom of the page). The main one
returns exactly the JSON object of `python -m fhe_backend audit --json`:
```python
from gradio_client import Client

client = Client("OWNER/SPACE")  # or the URL of a local run of app.py
report = client.predict("breast-cancer-logreg", "breast-cancer-test", "execute", 20,
                        api_name="/run_audit")  # model, benchmark, fhe_mode, limit (None = all)
print(report["fhe_mode"], report["metrics"]["accuracy"], report["transcript"]["outputs_sha256"])
```
Other endpoints: `/audit` and `/verify` (the Audit tab's buttons, per session), `/server_run`
(the Hub tab). A link such as
`?model=breast-cancer-logreg&benchmark=breast-cancer-test&fhe=simulate` preselects the Audit
tab's inputs; *Share via Link* at the top copies a link to the page as you see it.
"""

# -- Markdown audit report (downloadable) ----------------------------------------------------

REPORT_NOTES = {
    "execute": "Produced by the one-process demo: the same process generated the keys, encrypted, "
               "ran and decrypted. The transcript's hashes let anyone re-execute the run.",
    "simulate": "Produced by the demo in simulate mode: nothing was encrypted; Concrete's "
                "simulator ran the same circuit in clear.",
}
