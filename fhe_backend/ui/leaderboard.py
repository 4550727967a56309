"""The Leaderboard tab: a challenge's ranked, verified results, their transcripts, and
submissions.

A challenge is one bundled with the Space (``assets/challenges/``, built by ``make assets``) or
a Hub dataset repo (``hf://datasets/OWNER/NAME``); a public page never opens arbitrary folders.
Scores are shown with their 95% Wilson interval and a check mark only when the result's
signature and transcript hashes check. Submissions go through the command line (the bundled
demo is read-only). Link: ``?tab=leaderboard&challenge=ID_OR_REF&entry=SUBMITTER``.
"""

from __future__ import annotations

import json
from html import escape
from typing import Any
from urllib.parse import quote

import gradio as gr

from ..challenge.cards import DEMO_WARNING
from ..challenge.demo import challenges_dir
from ..challenge.leaderboard import rows
from ..challenge.store import CHALLENGE, Challenge
from ..errors import ChallengeError
from ..hub.remote import is_hub_ref
from . import links, render, texts
from .handlers import page_link, user_errors

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
# The Space hosts only the bundled, read-only demo: submissions go through the command line,
# to a challenge its auditor runs (a form here could never succeed).
SUBMIT_NOTE = (
    "**To submit a model**, use the command line on a challenge that its auditor runs (the demo "
    "challenge here is read-only): `python -m fhe_backend submit --challenge CHALLENGE "
    "--model PACKAGE --submitter NAME --identity my-id/`, where CHALLENGE is the challenge's "
    "folder or `hf://datasets/OWNER/NAME` and PACKAGE a zoo id, a package folder or "
    "`hf://OWNER/NAME`; the auditor's desk scores it in FHE later, within the challenge's quota. "
    "To run a challenge of your own: `python -m fhe_backend challenge init` (see the README).")
NO_ENTRIES = "No scored result yet."
NO_CHALLENGE = "No challenge bundled."


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
    """The model as HTML: a Hub reference links to its repo. Every value is escaped: a
    challenge's files are written by others."""
    if is_hub_ref(model):
        repo = model.removeprefix("hf://").split("@")[0]
        return (f'<a href="https://huggingface.co/{quote(repo)}" rel="noopener">'
                f"{escape(model)}</a>")
    return escape(model)


def _score_cell(entry: dict[str, Any]) -> str:
    interval = entry["interval"]
    score = f"{entry['score']:.4f}"
    return f"{score} [{interval[0]:.3f}, {interval[1]:.3f}]" if interval else score


def table_html(entries: list[dict[str, Any]]) -> str:
    """The ranked entries as a table that becomes one card per entry on a narrow screen (every
    field in sight at 400 px, none behind a sideways scroll)."""
    if not entries:
        return f"<p>{escape(NO_ENTRIES)}</p>"
    cells = [[escape(str(e["rank"])), escape(str(e["submitter"])),
              escape((e["submitter_fingerprint"] or "")[:16] or "unsigned"),
              _model_cell(str(e["model"])), escape(_score_cell(e)), escape(str(e["mode"])),
              escape(str(e["date"])), "✓" if e["verified"] else "✗ not verified"]
             for e in entries]
    return render.stacked_table(HEADERS, cells)


def describe(challenge: Challenge) -> str:
    d = challenge.data
    head = (f"**{d['id']}**: {d['metric']} on `{d['benchmark']['id']}` "
            f"({d['benchmark']['n_samples']} hidden samples) · policy `{d['policy']}` · quota "
            f"{d['quota']} · auditor key `{challenge.public_key[:16]}…`")
    return f"{DEMO_WARNING}\n\n{head}" if challenge.is_demo else head


def show(ref: str, entry: str | None = None) -> tuple[str, str, Any, dict[str, Any]]:
    """The card, the table, the entries to open (``entry``, else the first, chosen) and the
    chosen entry's signed result."""
    card, table, choices, chosen = _entries(ref, entry)
    return (card, table, gr.Dropdown(choices=choices, value=chosen),
            transcript(ref, chosen or ""))


def _entries(ref: str, entry: str | None) -> tuple[str, str, list[str], str | None]:
    with user_errors("Loading the challenge"):
        challenge = open_challenge(ref)
        entries = rows(challenge)
    choices = [e["submitter"] for e in entries]
    chosen = entry if entry in choices else (choices[0] if choices else None)
    return describe(challenge), table_html(entries), choices, chosen


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


def load_page(request: gr.Request = None) -> tuple[Any, ...]:
    """``?tab=leaderboard&challenge=…&entry=…`` opens this tab on that challenge with that
    entry's result; a value that cannot be used is named in a warning."""
    link = page_link(request).for_tab(TAB_ID)
    choices = bundled()
    first = choices[0] if choices else ""
    wanted = link.challenge or first
    if not wanted:
        return gr.Dropdown(choices=choices), NO_CHALLENGE, "", gr.Dropdown(), {}
    try:
        _, _, entries, _ = _entries(wanted, None)
    except gr.Error as exc:
        gr.Warning(texts.UNKNOWN_QUERY_CHALLENGE.format(challenge=links.shown(wanted),
                                                        error=links.shown(exc.message, 300)))
        if not first or wanted == first:
            return gr.Dropdown(choices=choices), NO_CHALLENGE, "", gr.Dropdown(), {}
        wanted, entries = first, []
    if link.entry and link.entry not in entries:
        gr.Warning(texts.UNKNOWN_QUERY_ENTRY.format(entry=links.shown(link.entry)))
    return (gr.Dropdown(choices=choices, value=wanted), *show(wanted, link.entry))


def leaderboard_tab(demo: gr.Blocks) -> dict[str, gr.components.Component]:
    gr.Markdown(INTRO)
    challenge = gr.Dropdown(choices=bundled(), label="Challenge", allow_custom_value=True,
                            info="a bundled challenge, or hf://datasets/OWNER/NAME",
                            elem_id="lb-challenge")
    card = gr.Markdown(elem_id="lb-card")
    table = gr.HTML(elem_id="lb-table", label="Ranked results")
    entry = gr.Dropdown(choices=[], label="Open the result of", elem_id="lb-entry")
    result = gr.JSON(label="Signed result, its check and its transcript", elem_id="lb-result",
                     elem_classes="json-view")
    gr.Markdown(SUBMIT_NOTE, elem_id="lb-submit-note")
    light = {"concurrency_limit": None, "api_visibility": "undocumented"}
    challenge.input(show, challenge, [card, table, entry, result], api_name="leaderboard",
                    **light)
    entry.input(transcript, [challenge, entry], result, api_name="leaderboard_result", **light)
    demo.load(load_page, None, [challenge, card, table, entry, result],
              api_name="leaderboard_load", show_progress="hidden", **light)
    return {"challenge": challenge, "entry": entry}
