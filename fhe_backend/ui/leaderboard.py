"""The Leaderboard tab: a challenge's ranked, verified results, their transcripts, and
submissions.

A challenge is one bundled with the Space (``assets/challenges/``, built by ``make assets``) or
a Hub dataset repo (``hf://datasets/OWNER/NAME``); a public page never opens arbitrary folders.
Scores are shown with their 95% Wilson interval and a check mark only when the result's
signature and transcript hashes check. Submitting writes a submission file; the auditor's desk
scores it later, at the auditor's. Deep link: ``?tab=leaderboard&challenge=ID_OR_REF``.
"""

from __future__ import annotations

import json
from typing import Any

import gradio as gr

from ..challenge.cards import DEMO_WARNING
from ..challenge.demo import challenges_dir
from ..challenge.leaderboard import rows
from ..challenge.store import CHALLENGE, Challenge
from ..errors import ChallengeError
from ..hub.remote import is_hub_ref
from ..hub.zoo import model_ids
from .handlers import user_errors

TAB_ID = "leaderboard"
HEADERS = ["Rank", "Submitter", "Submitter key", "Model", "Score (95% interval)", "Mode", "Date",
           "Verified"]
INTRO = (
    "Models scored on a **hidden benchmark** in FHE: the benchmark's owner (the auditor) never "
    "publishes it, so nobody can train on it, yet every score is signed and tied to the "
    "public transcript of the encrypted computation. The release policy (a Ladder, one state "
    "for the whole challenge) publishes a new score only when it beats the best score released "
    "so far by more than a step, whoever submits, so resubmitting small variations under any "
    "name cannot mine the hidden set. ✓ means the result's Ed25519 signature and "
    "its transcript's hashes check against the challenge's key. Mode *sealed*: the metric was "
    "computed under FHE and only the confusion counts were decrypted; *per-sample*: each "
    "sample's scores were decrypted. The submitter key is the fingerprint of the key that "
    "signed the submission (*unsigned*: anyone could have submitted under that name).")
SUBMIT_NOTE = ("A submission is a model package reference (a zoo id or `hf://OWNER/NAME`). It is "
               "written to the challenge's submissions; the auditor's desk scores it in FHE "
               "later, within the challenge's quota.")


def bundled() -> list[str]:
    root = challenges_dir()
    return sorted(p.name for p in root.iterdir() if (p / CHALLENGE).is_file()) if (
        root.is_dir()) else []


def open_challenge(ref: str) -> Challenge:
    ref = (ref or "").strip()
    if ref in bundled():
        return Challenge.open(str(challenges_dir() / ref))
    if is_hub_ref(ref):
        return Challenge.open(ref)
    raise ChallengeError(f"No challenge {ref!r}: choose a bundled one "
                         f"({', '.join(bundled()) or 'none'}) or hf://datasets/OWNER/NAME.")


def _model_cell(model: str) -> str:
    if is_hub_ref(model):
        repo = model.removeprefix("hf://").split("@")[0]
        return f"[{model}](https://huggingface.co/{repo})"
    return model


def _score_cell(entry: dict[str, Any]) -> str:
    interval = entry["interval"]
    score = f"{entry['score']:.4f}"
    return f"{score} [{interval[0]:.3f}, {interval[1]:.3f}]" if interval else score


def describe(challenge: Challenge) -> str:
    d = challenge.data
    head = (f"**{d['id']}**: {d['metric']} on `{d['benchmark']['id']}` "
            f"({d['benchmark']['n_samples']} hidden samples) · policy `{d['policy']}` · quota "
            f"{d['quota']} · auditor key `{challenge.public_key[:16]}…`")
    return f"{DEMO_WARNING}\n\n{head}" if challenge.is_demo else head


def show(ref: str) -> tuple[str, list[list[str]], Any, dict[str, Any]]:
    """The card, the table, the entries to open, and an empty transcript view."""
    with user_errors("Loading the challenge"):
        challenge = open_challenge(ref)
        entries = rows(challenge)
    table = [[str(e["rank"]), e["submitter"],
              (e["submitter_fingerprint"] or "")[:16] or "unsigned",
              _model_cell(str(e["model"])), _score_cell(e),
              str(e["mode"]), str(e["date"]), "✓" if e["verified"] else "✗ not verified"]
             for e in entries]
    choices = [e["submitter"] for e in entries]
    return (describe(challenge), table,
            gr.Dropdown(choices=choices, value=choices[0] if choices else None), {})


def transcript(ref: str, submitter: str) -> dict[str, Any]:
    """The signed result of a submitter's entry, its check, and its transcript's header."""
    if not submitter:
        return {}
    with user_errors("Opening the result"):
        challenge = open_challenge(ref)
        entry = next((e for e in rows(challenge) if e["submitter"] == submitter), None)
        if entry is None:
            raise ChallengeError(f"{submitter} has no scored result in this challenge.")
        result = {k: v for k, v in entry["_result"].items() if k != "_file"}
        path = challenge.transcript_path(str(result["submission_id"]))
        header: dict[str, Any] = {}
        if path.is_file():
            data = json.loads(path.read_text(encoding="utf-8"))
            header = {k: v for k, v in data.items() if k != "samples"}
        return {"check": entry["_check"].to_dict(), "result": result, "transcript": header}


def submit(ref: str, model: str, submitter: str) -> str:
    with user_errors("Submitting"):
        if (ref or "").strip() in bundled():
            raise ChallengeError("The bundled demo challenge is read-only here; create your own "
                                 "with `challenge init` and submit with the CLI.")
        if not is_hub_ref((model or "").strip()) and (model or "").strip() not in model_ids():
            raise ChallengeError("Submit a zoo id or a Hub model reference (hf://OWNER/NAME).")
        sub = open_challenge(ref).submit((submitter or "").strip(), model.strip())
    return f"Submitted as `{sub['id']}`; the auditor's desk will score it."


def deep_link(request: gr.Request) -> tuple[Any, ...]:
    """``?tab=leaderboard&challenge=…`` opens this tab on that challenge."""
    params = dict(request.query_params) if request is not None else {}
    choices = bundled()
    wanted = params.get("challenge") or (choices[0] if choices else "")
    tabs = gr.Tabs(selected=TAB_ID) if params.get("tab") == TAB_ID else gr.Tabs()
    if not wanted:
        return tabs, gr.Dropdown(choices=choices), "No challenge bundled.", [], gr.Dropdown(), {}
    return (tabs, gr.Dropdown(choices=choices, value=wanted), *show(wanted))


def leaderboard_tab(demo: gr.Blocks) -> None:
    from gradio.context import Context

    # The Tabs this tab is laid out in: the deep link selects this tab through it.
    tabs = Context.block
    if not isinstance(tabs, gr.Tabs):
        raise TypeError("leaderboard_tab must be called inside gr.Tabs()")
    with gr.Tab("Leaderboard", id=TAB_ID):
        gr.Markdown(INTRO)
        challenge = gr.Dropdown(choices=bundled(), label="Challenge", allow_custom_value=True,
                                info="a bundled challenge, or hf://datasets/OWNER/NAME",
                                elem_id="lb-challenge")
        card = gr.Markdown(elem_id="lb-card")
        table = gr.Dataframe(headers=HEADERS, interactive=False, elem_id="lb-table",
                             datatype=["str", "str", "markdown", "str", "str", "str", "str"])
        with gr.Row():
            entry = gr.Dropdown(choices=[], label="Open the result of", elem_id="lb-entry")
        result = gr.JSON(label="Signed result, its check and its transcript", elem_id="lb-result")
        with gr.Accordion("Submit a model", open=False):
            gr.Markdown(SUBMIT_NOTE)
            with gr.Row():
                model = gr.Textbox(label="Model package", placeholder="hf://OWNER/NAME",
                                   elem_id="lb-model")
                submitter = gr.Textbox(label="Submitter", elem_id="lb-submitter")
            send = gr.Button("Submit", elem_id="lb-submit")
            status = gr.Markdown(elem_id="lb-status")
    light = {"concurrency_limit": None, "api_visibility": "undocumented"}
    challenge.input(show, challenge, [card, table, entry, result], api_name="leaderboard",
                    **light)
    entry.input(transcript, [challenge, entry], result, api_name="leaderboard_result", **light)
    # One at a time: a submission may download a model package from the Hub to check it.
    send.click(submit, [challenge, model, submitter], status, api_name="leaderboard_submit",
               concurrency_limit=1, concurrency_id="leaderboard_submit",
               api_visibility="undocumented")
    demo.load(deep_link, None, [tabs, challenge, card, table, entry, result],
              api_name="leaderboard_load", show_progress="hidden", **light)
