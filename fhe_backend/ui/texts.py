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

# Mode names, labels and radio texts: fhe_backend.modes (one registry for the CLI and the Space).
NO_MODELS = "This Space's zoo has no models yet."
NO_RESULT = "No audit has run in this session yet: choose a model and press **Run the audit**."
CHOOSE_MODEL = "Choose a model first."
CHOOSE_BENCHMARK = "Choose a benchmark that fits the model first."
NO_FITTING_BENCHMARK = "No benchmark in this Space's zoo fits {model}."
UNKNOWN_MODE = "Unknown FHE mode {mode!r}; use {known}."
BAD_LIMIT = "The number of samples must be a whole number of at least 1."
BAD_BUDGET = "The FHE query budget must be a whole number of at least 1, or 0 or empty for none."
BAD_VERIFY_N = "The number of samples to verify must be a whole number: 0 for all, or at least 1."
LIMIT_CAPPED = (
    "{requested} samples were asked for and {benchmark} holds {used}: all {used} were audited."
)
# A query is one ciphertext run: a sample, or a probe of the bias audits.
EXECUTE_CAP = (
    "Real FHE runs are limited to {cap} FHE queries on this Space (one per sample or probe) and "
    "this request needs {n}; choose fewer samples or audits, use simulate, or run "
    "`python -m fhe_backend audit` on your machine."
)
QUERY_CAP = (
    "Requests are limited to {cap} queries on this Space, even simulated, and this one needs "
    "{n}; choose fewer samples or audits, or run `python -m fhe_backend audit` on your machine."
)
NOT_IN_ZOO = "No {kind} {ref!r} in this Space's zoo (it has: {known})."
PACKAGE_BROKEN = "⚠ This model package cannot be used: {error}"
UNKNOWN_QUERY_MODEL = "The link names a model {model!r} that this Space does not have."
UNFITTING_QUERY_BENCHMARK = "The link names a benchmark {benchmark!r} that does not fit {model}."
UNKNOWN_QUERY_BENCHMARK = (
    "The link names a benchmark {benchmark!r} that this Space does not have (it has: {known})."
)
UNFITTING_QUERY_MODELS = "The link names models that do not fit {benchmark}: {models}."
COMPARE_QUERY_MODE = "The link names an FHE mode {mode!r} that Compare does not offer; use {known}."
UNKNOWN_QUERY_CHALLENGE = "The link names a challenge {challenge!r} that cannot be opened: {error}"
UNKNOWN_QUERY_ENTRY = "The link names an entry {entry!r} that this challenge does not have."
UNKNOWN_QUERY_TAB = "The link names a tab {tab!r} that this Space does not have (it has: {known})."
UNKNOWN_QUERY_MODE = "The link names an FHE mode {mode!r} that this Space lacks; use {known}."
BAD_QUERY_SAMPLES = "The link's sample count {samples!r} is not a whole number of at least 1."
QUERY_SAMPLES_CAPPED = "The link asks for {samples} samples; this benchmark and mode allow {top}."
LINK_RESTORED = (
    "This page was opened from a link: its inputs are set, nothing has run yet. Press **Run the "
    "audit** to see the results."
)
LINK_RESTORED_BIAS = (
    "This page was opened from a link: its inputs are set, nothing has run yet. Press **Run the "
    "audits** to see the results."
)
COMPARE_LINK_RESTORED = (
    "This page was opened from a link: its inputs are set, nothing has run yet. Press "
    "**Compare** to see the results."
)
DEEP_LINK_IGNORED = (
    "This Gradio deep link cannot restore the page faithfully, so the page opens as new; use "
    "Share via Link at the top for a link to a tab and its inputs."
)
SHARE_LINK = "Share via Link"
SHARE_LINK_LABEL = "Link to this tab and its inputs (results are not in links: Run them again)"
NO_SCHEMA = "Choose a model to see the input columns it expects."
SCHEMA_COLUMNS = "**Input columns, in order** ({n}; a table's columns may come in any order)"
SCHEMA_STEPS = "preprocessing (auditor's client, before encryption)"
SCHEMA_CLASSES = "**Class labels** (values of the label column): {classes}"
SCHEMA_MORE = "… ({n} in all)"
MODEL_INFO = "A zoo model, or a Hub model package typed as hf://OWNER/NAME[@REVISION]."
UPLOAD_NOTE = """\
**Your own benchmark (optional).** Upload a CSV or Parquet file with the model's columns (see
*Input schema*) and a label column; it replaces the benchmark chosen above, and *Samples* limits
how many of its rows are audited. **This demo auditor encrypts the file inside the Space: the
Space sees your plaintext.** A real auditor keeps the data and the key on their own machine and
encrypts with `python -m fhe_backend encrypt --benchmark FILE.csv`. The file is kept only in
this session's temporary folder, deleted when you close the tab.
"""
UPLOAD_GONE = "The uploaded file is no longer on the Space; upload it again."
UPLOAD_CHOICE_PREFIX = "uploaded: "
UPLOAD_IN_USE = "Your uploaded table is the benchmark: remove the file to choose a zoo benchmark."
BENCHMARK_INFO = "The zoo benchmarks that fit the model; or upload your own below."
UPLOAD_ACCEPTED = "✅ **{name}**: {n} rows, fits {model}. *Run the audit* audits this table."
UPLOAD_REFUSED = "⚠ **Not usable:** {error}"
UPLOAD_TOO_BIG = (
    "Your file {name} was refused: uploads are limited to {limit}, so nothing ran. Upload a "
    "smaller file, or press Run again to audit the zoo benchmark {benchmark}."
)
# The banner says it, not only a toast: an exception would leave a bare "Error" on the banner.
UPLOAD_TOO_BIG_BANNER = (
    "### Nothing ran\n⚠ {sentence} Any results below are from the previous run."
)
SEMICOLON_UNREADABLE = (
    "{name} looks semicolon-separated but cannot be read that way; save it as a comma-separated "
    "CSV."
)
# Part of the backend's sentence about labels outside the model's classes.
OUTSIDE_CLASSES = "labels outside the model's classes"
LABELS_BY_NAME = (
    "This model's labels are named {classes}: column {column!r} must hold these names (a number "
    "such as 0 or 1 is not one of them)."
)
SAMPLES_INFO = ("A seeded random draw, stratified by label (not the file's first rows). Real "
                "FHE is capped at {cap} samples on this Space (FHE_AUDIT_MAX_SAMPLES).")
SEALED_SAMPLES_INFO = (
    "A seeded random draw, stratified by label and group. Sealed real FHE is slow (big keys): "
    "capped at {batches} batches of {batch} samples here "
    "(FHE_AUDIT_MAX_SEALED_BATCHES), and at most {cap} samples (FHE_AUDIT_MAX_SAMPLES)."
)
SEALED_UNAVAILABLE = "No sealed mode for {model}: {reason}"
SEALED_NO_CIRCUIT = "its package carries no sealed circuit (its owner did not build one)."
SEALED_INFO = "Sealed: available for {model}, whose package carries a sealed circuit."
# Who can settle a re-execution of a run: bit-exact circuits anyone, bootstrapped ones only
# whoever decrypts (verifier/verify.py); the Space's session keys go with each run.
PUBLICLY_VERIFIABLE = (
    "An execute run of {model} is publicly verifiable: its circuit has no bootstrapping, "
    "so anyone re-executes it bit for bit, without a key (the bundle's VERIFY command)."
)
KEY_HOLDER_ONLY = (
    "{runs} of {model} {are} verifiable by the key holder only: {why} bootstraps, so a "
    "re-execution elsewhere gives other bytes and only decrypting settles it. This Space "
    "deletes its key after each run: here and from the bundle such a check stays inconclusive."
)
KEY_HOLDER_RUNS = {"all": "Runs", "sealed": "A sealed run"}
KEY_HOLDER_WHY = {"all": "its circuit", "sealed": "the sealed circuit"}
SEALED_CAP = (
    "Sealed audits are limited to {cap} samples on this Space ({batches} batches of {batch}) "
    "and this request needs {n}; choose fewer samples, or run `python -m fhe_backend audit "
    "--sealed` on your machine."
)
SEALED_BIAS_ONLY_FAIRNESS = (
    "A sealed audit answers the fairness audit only (from counts); untick {others}, which "
    "need per-sample outputs, or choose another mode."
)
BIAS_SEALED_INFO = (
    "Sealed: only counts are decrypted, so only the fairness audit applies, for models with a "
    "sealed circuit."
)
SEALED_BIAS_NEEDS_FAIRNESS = "A sealed audit here runs the fairness audit: tick it."

ESTIMATE_EXECUTE = (
    "**Estimated click to result, real FHE: ≈ {total}** (likely {low} to {high}) for {n} "
    "samples: start-up and key generation, then {n} × {per_sample} of encryption, FHE run and "
    "decryption per sample. {basis}"
)
ESTIMATE_BASIS_HERE = (
    "From this Space's own {runs} run(s) of this model ({state}); each new run updates it."
)
ESTIMATE_BASIS_PACKAGE = (
    "This Space has not run this model yet ({state}): from the package's figures (measured on "
    "{machine}) scaled by this Space's speed on other models, plus a start-up measured on a "
    "2-core machine; hence the wide spread. This Space has {cpus} CPUs."
)
ESTIMATE_UNKNOWN = (
    "**Real FHE:** this model's package has no measured FHE time, so no estimate; {n} samples."
)
ESTIMATE_SEALED = (
    "**Estimated cost, sealed real FHE:** {n} samples in **{batches} batch(es)** of {batch} · "
    "**{pbs} PBS per batch** · {time}. Key generation comes first ({keys} of bootstrap and "
    "key-switching keys in memory): a minute or more. Only one total is decrypted: for the "
    "whole run, summed under FHE, the number predicted `{positive}` for each true label and "
    "group."
)
ESTIMATE_SEALED_TIME = "≈ **{total}** of FHE run ({per_batch} per batch; {basis})"
ESTIMATE_SEALED_NO_TIME = "no time estimate ({basis})"
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
    "sealed": {
        "keygen": "Auditor generates the sealed circuit's keys (large: this takes a while)",
        "encrypt": "Auditor encrypts batches of samples with their label codes",
        "run": "Server counts each batch and adds the counts up (FHE)",
    },
}
SAMPLE_PROGRESS = "{label}: {done} of {total} {unit}"

RESULT_BANNER = (
    "### Mode: {mode}\n**{model}** on **{benchmark}** · {n} samples ({failed} failed) · "
    "accuracy **{accuracy:.4f}** · agreement with the clear circuit {agreement}"
)
NO_FHE = "no FHE (simulate)"
INTERVAL_HEADER = "95% interval"
# Every metric the page shows: its name for a reader and what it measures, in one line (the
# report's JSON keeps the identifiers, which the page shows beside them).
METRICS = {
    "accuracy": ("accuracy", "share of samples given their true class"),
    "balanced_accuracy": ("balanced accuracy",
                          "mean of each class's recall: not inflated when one class is rare"),
    "precision": ("precision", "of the samples predicted positive, the share truly positive"),
    "recall": ("recall", "of the truly positive samples, the share found"),
    "f1": ("F1", "harmonic mean of precision and recall"),
    "roc_auc": ("ROC AUC", "chance that a positive sample scores above a negative one "
                           "(0.5: guessing, 1: perfect)"),
}
METRIC_LABEL = "{label} ({name}): {meaning}"
CLEAR_ACCURACY = "clear reference accuracy: the same circuit in Concrete's simulator"
AGREEMENT = "agreement with the clear circuit: share of samples with the same label"
NOT_AVAILABLE = "n/a ({reason})"
HISTORY_ENTRY = "#{n} · {model} on {benchmark} · {mode} · {samples} samples"
HISTORY_BIAS = " · bias: {audits}"
HISTORY_COMPARE = " · from Compare"
NO_PREVIEW = "No ciphertext: simulate mode encrypts nothing."
VERIFY_NOTHING_YET = (
    "Nothing has run in this session yet: run an audit in real FHE (execute), then verify it."
)
VERIFY_NEEDS_EXECUTE = (
    "Run an audit in real FHE (execute) first: a simulation has no ciphertexts to re-execute."
)
VERIFY_RESULT = (
    "**{status}** · the key holder's check ({mode} run of {model} on {benchmark}). {summary}"
)
VERIFY_KEY_GONE = (
    "This circuit is verifiable by the key holder only, and this Space deleted its session key "
    "after the run: nobody can settle this run. To audit a bootstrapped model verifiably, run "
    "the roles on your machine and keep your keys (`encrypt --keys`, then `verify --keys`; "
    "see the README's Command line)."
)
VERIFY_BUTTON = "Verify (the key holder's check): re-execute the run, compare hashes"
BUNDLE_README = """\
Audit bundle of {model} on {benchmark} ({mode}), downloaded from the encrypted-audit Space.

report.json, report.md   the audit's report (metrics, transcript hashes)
transcript.json          hashes of the model, inputs, evaluation keys and outputs
encrypted/, run/         the encrypted benchmark (no secret key) and the server's run
VERIFY.txt               the command that re-executes run/ and checks every hash

Who can verify it: {verifiability}
"""
VERIFY_PROGRESS = "Verifier re-executes the run in FHE"
SESSION_CLOSED = "The tab that asked for this job was closed, so the job stopped."
UNEXPECTED = "The {action} failed unexpectedly ({kind}); the details are in the Space's log."

# -- Bias & interpretability tab ------------------------------------------------------------

BIAS_INTRO = """\
### Bias and interpretability, on encrypted queries
Beyond accuracy, the auditor asks the model about inputs it made up: the same person with
*sex* swapped (**counterfactual**), one feature set to a baseline (**occlusion**) or shuffled
across samples (**permutation**), random points to fit a readable **surrogate** model. Each probe
is one more FHE query, shuffled among the real samples under a random id: the server cannot tell
probes from samples. **Fairness** needs no extra query: the sensitive attributes stay with the
auditor and are joined to the decrypted predictions.
"""
# The choices and titles are the audit kinds' own (fhe_backend.audits.AUDITS).
BIAS_AUDITS_INFO = (
    "{always} is always measured. {sensitive} need a benchmark with sensitive attributes."
)
BIAS_SAMPLES_INFO = ("A seeded random draw, stratified by label (and group for fairness). Every "
                     "sample brings its probes along: see the cost below.")
BIAS_BUDGET_INFO = (
    "Refuse to run when the audits need more FHE queries than this (0: no budget). This "
    "Space allows {cap} queries in real FHE and {max_queries} simulated (FHE_AUDIT_MAX_SAMPLES, "
    "FHE_AUDIT_MAX_QUERIES)."
)
BIAS_NO_RESULT = (
    "No bias audit has run in this session yet: choose the audits, check their cost and press "
    "**Run the audits**."
)
CHOOSE_AUDITS = "Choose at least one audit."

BIAS_COST_TITLE = "FHE queries"
BIAS_COST_HEADERS = ["audit", "FHE queries", "real FHE ≈"]
BIAS_COST_SAMPLES = "{audits} (the samples themselves)"  # other rows: the probes' own
BIAS_COST_TOTAL = "**total**"
BIAS_COST_NOTE = {
    "execute": "**Real FHE** (execute): plus key generation and encryption. Times measured at "
               "{per_query} per query on {machine}; this Space has {cpus} CPUs.",
    "simulate": "**Simulate**: no encryption, the same circuit in clear; seconds to a minute. "
                "The last column is what real FHE would take.",
}

NOT_MEASURED = "not measured"
COST_PROBLEM = "⚠ {problem}"

BIAS_BANNER = (
    "### Mode: {mode}\n**{model}** on **{benchmark}** · {n} samples · {queries} queries "
    "({failed} failed) · accuracy **{accuracy:.4f}** · audits: {audits}"
)
SECTION_HEADING = "#### {title} · {mode}"

FAIRNESS_READING = (
    "**{attribute}**: demographic parity difference **{dpd}**. The model predicts "
    "*{positive}* for {high_rate:.1%} of {high} (n={high_n}) and {low_rate:.1%} of {low} "
    "(n={low_n}). Equalized odds difference {eod}: the largest gap between groups in true or "
    "false positive rate. A 95% interval reaching 0 does not rule out equal treatment."
)
FAIRNESS_ONE_GROUP = (
    "**{attribute}**: these samples hold a single group ({groups}); there is nothing to compare: "
    "audit more samples."
)
FAIRNESS_INCONCLUSIVE = (
    "⚠ **Inconclusive** for {attribute}: {groups}. Its rates and gaps are noisy: audit more "
    "samples before drawing conclusions."
)
COUNTERFACTUAL_READING = (
    "Changing **{attribute}** flips **{rate:.1%}** of predictions (n={n} probes{interval}) and "
    "moves the probability of *{tracked}* by {change:+.3f} on average ({abs_change:.3f} in "
    "absolute value)."
)
COUNTERFACTUAL_NOT_PROBED = "Not probed: {reason}."
# One sample's probes move together: the interval counts samples, not probes.
FLIP_INTERVAL = "; 95% CI {low:.1%} to {high:.1%}, probes clustered by sample"
COUNTERFACTUAL_IGNORED = "The model's output does not depend on **{attribute}** at all."
PREDICTED_CLASS = "the predicted class"
OCCLUSION_READING = (
    "**Occlusion** ({n} probes: one feature at a time set to the auditor's baseline, the median "
    "or most frequent value): {top} move the model's log-odds most."
)
OCCLUSION_UNUSED = ("Occluding these changed nothing on these {n} samples (no proof that the "
                    "model ignores them): {names}.")
PERMUTATION_READING = (
    "**Permutation** ({n} probes: one feature at a time shuffled across the samples): shuffling "
    "{top} lowers accuracy most. On {n_samples} samples one changed prediction moves accuracy "
    "by {step:.1%}."
)
PERMUTATION_FLAT = (
    "**Permutation** ({n} probes): shuffling no single feature lowers accuracy on these "
    "{n_samples} samples; too few samples to rank features this way."
)
IMPORTANCE_PROBED = "**Samples probed**: {n} of {available} ({how})."
IMPORTANCE_SUBSAMPLE = "a random subsample, sized by a pilot of {pilot} on Concrete's simulator"
IMPORTANCE_EVERY = "every sample"
IMPORTANCE_TIGHT = (
    "{method}: every feature's 95% half-width is within the tolerance of {tolerance:.3f} "
    "(largest {widest:.3f})."
)
IMPORTANCE_LOOSE = (
    "⚠ {method}: 95% half-widths up to {widest:.3f}, over the tolerance of {tolerance:.3f}; "
    "its ranking is rough."
)
IMPORTANCE_RULE = "Stopping rule: {rule}."
IMPORTANCE_PROMISE = "Promise: {guarantee} (tolerance {tolerance:.3f})."
PIXEL_NAME = "pixel ({row}, {col})"
CODED_CATEGORY = "{meaning} ({code})"
# Below this fidelity a surrogate's rules describe another model than the audited one.
SURROGATE_LOW_FIDELITY = (
    "⚠ **Low fidelity ({fidelity:.0%}):** the surrogate tree disagrees with the model on "
    "{disagree:.0%} of held-out probes, so its rules explain the model poorly; do not read the "
    "model's logic from them."
)
SURROGATE_PRUNED = "Splits whose two branches give the same class are merged ({n} pruned)."
SURROGATE_READING = (
    "A depth-{depth} decision tree fitted to the model's answers on {n} probes agrees with the "
    "model on **{fidelity:.0%}** of held-out probes (its fidelity{interval}); its rules are "
    "below. A "
    "sparse linear model agrees on {linear:.0%} with {k} non-zero weights, largest: {top}. "
    "Weights are per unit of each feature (0/1 for a category)."
)
SURROGATE_NONE = (
    "The model gave one label to every probe: there is nothing for a surrogate to explain."
)
IMPORTANCE_AXES = {
    "occlusion": "occlusion: mean |change of log-odds|",
    "permutation": "permutation: drop of accuracy",
}
FAIRNESS_BARS = {"selection_rate": "selection rate", "tpr": "true positive rate",
                 "fpr": "false positive rate"}
FLIP_AXIS = "share of predictions flipped"
WEIGHT_AXIS = "sparse linear weight (per unit of the feature)"
NO_WEIGHTS = "no non-zero weight"
TOP_OF = "top {k} of {n}"

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
**Scaling.** With `FHE_AUDIT_SCHEDULER=tcp://HOST:PORT` set, the Space runs the samples on that
Dask cluster instead of its own CPUs.

**Limits.** The server needs the model's `server.zip`, whose circuit holds the quantized weights
in clear: whoever runs this tab sees the model. A private model is therefore audited on a
**private duplicate** of this Space (button at the top) owned by the model owner, not here.
"""
HUB_EXAMPLE_BUTTON = "Load the example (published locally by this Space)"
HUB_EXAMPLE_NOTE = (
    "**Example, clearly not from huggingface.co:** this Space published the zoo's "
    "breast-cancer-logreg and {n} encrypted samples of breast-cancer-test into its own local Hub "
    "cache, under the made-up owner `{owner}`. The key that encrypted them was thrown away: run "
    "the server role on them, but no one can decrypt the outputs."
)
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
* **Integrity is checked by re-execution, not by a proof.** A circuit without bootstrapping is
  bit-for-bit deterministic, so anyone holding the model package, the encrypted benchmark and the
  run folder can re-execute the run and compare every hash. A circuit with bootstrapping
  (XGBoost, MLP, CNN, every sealed circuit) gives other bytes in another process: only the key
  holder settles its re-execution, by decrypting (the Mode box says which, per model; this
  Space's key goes with each run). FHE alone does not prove which model a server ran.
* **Metadata leaks:** the server learns the number of samples, their sizes and per-sample timing.
* **Sealed audits hide less than "aggregates only" suggests.** The server adds the batches'
  counts up under FHE and the key holder decrypts one total per run: for each (group, true
  label), how many rows were predicted positive. A cell the model predicts all alike pins its
  rows, and a malicious auditor (one real row per cell, the rest masked) reads 4 predictions
  per run; per-batch counts, which this Space opened before, let a curious auditor pin 45-61%
  of the zoo models' predictions. Noise on the total (`run --dp-epsilon`, with a budget per
  key) bounds what any run says about a row, but only on a server the model owner runs: here
  the Space plays every role. `bench --sealed-leak` prints the figures, and the README's threat
  model has the table per mode and party.
"""

CLI_EQUIVALENTS = """\
### Command-line equivalents
```shell
# The Audit tab's Run button: every role in one process (prints the same JSON as /run_audit)
python -m fhe_backend audit --model MODEL --benchmark BENCH --fhe execute --limit N --json
# Sealed (aggregates only): the server counts under FHE, only the counts are decrypted
python -m fhe_backend audit --model MODEL --benchmark BENCH --sealed --limit N --json
# The Bias & interpretability tab: the same, with probes for the chosen audits
python -m fhe_backend audit --model MODEL --benchmark BENCH --fhe simulate --limit N \
    --audits fairness,counterfactual,importance,surrogate --budget MAX_QUERIES --json

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

# Bias and interpretability: a comma-separated audit list and an optional FHE query budget
report = client.predict("adult-income-logreg", "adult-income-test", "simulate", 20,
                        "fairness,counterfactual,importance,surrogate", 2000,
                        api_name="/run_audit")
print(report["plan"]["n_queries"], report["fairness"]["sex"]["demographic_parity_difference"])
```
Other endpoints: `/audit` and `/verify` (the Audit tab's buttons, per session), `/bias_audit`
(the Bias tab's button), `/compare`, `/history`, `/server_run` (the Hub tab). A link such as
`?tab=audit&model=breast-cancer-logreg&benchmark=breast-cancer-test&fhe=simulate&samples=20`
opens a tab with its inputs set (`tab=` one of audit, bias, compare, history, hub,
leaderboard, how; `fhe=` execute, simulate or sealed);
*Share via Link* at the top copies such a link for the tab you are on. Links carry inputs, not
results: press Run on the reopened page.
"""

# -- Markdown audit report (downloadable) ----------------------------------------------------

REPORT_NOTES = {
    "execute": "Produced by the one-process demo: the same process generated the keys, encrypted, "
               "ran and decrypted. The transcript's hashes let anyone re-execute the run; "
               "without bootstrapping anyone settles it, with bootstrapping only the key "
               "holder (by decrypting).",
    "simulate": "Produced by the demo in simulate mode: nothing was encrypted; Concrete's "
                "simulator ran the same circuit in clear.",
    "sealed": "Produced by the one-process demo in sealed mode: the server computed the counts "
              "under FHE, added them up under FHE, and only that one total was decrypted (no "
              "per-sample output, no batch's counts; what the total still reveals is in How "
              "it works).",
}

# -- History tab -----------------------------------------------------------------------------

HISTORY_INTRO = (
    "### This session's audits\nEvery audit you ran in this tab's session, newest first, with "
    "its results and report files. They are deleted with the session's files when you close "
    "the tab."
)
HISTORY_EMPTY = "No audit has run in this session yet: run one on the *Audit* tab."
HISTORY_COUNT = "{n} audit(s) in this session; choose one to re-open it."
HISTORY_GONE = "That audit is no longer in this session's history (it keeps the latest 20)."

# -- Compare tab -----------------------------------------------------------------------------

COMPARE_INTRO = (
    "### Compare models on one benchmark\nPick a benchmark and the models that fit it: each "
    "model is audited on the same samples, in the same mode, one after the other; one table "
    "and one chart put them side by side."
)
COMPARE_MODELS_INFO = "The zoo models that fit this benchmark."
CHOOSE_MODELS = "Choose at least one model to compare."
COMPARE_NO_RESULT = "No comparison has run yet: choose the models and press **Compare**."
COMPARE_BANNER = "### Mode: {mode}\n{n_models} models on **{benchmark}** · {n} samples each"
COMPARE_HEADERS = ["model", "accuracy", "accuracy interval", "balanced accuracy", "F1",
                   "ROC AUC", "FHE s/sample", "PBS/sample"]
COMPARE_LEGEND_METRICS = ("accuracy", "balanced_accuracy", "f1", "roc_auc")
COMPARE_EXECUTE_CAP = (
    "Real FHE runs are limited to {cap} FHE queries per request on this Space and comparing "
    "{n_models} models on {n} samples needs {total}; choose fewer samples or models, or simulate."
)
COMPARE_AXES = {"accuracy": "accuracy (bars: interval when the report has one)",
                "pbs": "PBS per sample (circuit)"}
NO_FHE_TIME = "n/a (simulate)"

# -- representation (hidden-layer probes) ------------------------------------------------------
LAYERS_INTRO = (
    "The owner published a hidden layer: its activations were decrypted for every sample and "
    "a linear probe tried to read each sensitive attribute (and the label, as a sanity check) "
    "from them. A layer computed from the inputs cannot know more than they do; what it can do "
    "is make an attribute *linearly* readable where the inputs did not."
)
LAYERS_LAYER_HEADING = "**Layer {layer}** ({module}, {width} units)"
LAYERS_METHOD = "Method: {method}."
LAYERS_CHANCE = "chance (attribute shuffled, 95%)"
LAYERS_LAYER = "probe on the hidden layer (95% CI)"
LAYERS_INPUTS = "probe on the inputs"
LAYERS_AXIS = "ROC-AUC of a linear probe (out of fold)"
BIAS_COST_LAYERS = "{audit} (the samples again, on each published hidden layer's circuit)"
