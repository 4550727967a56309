"""The test-set game end to end, offline, in real FHE: challenge, submissions, the desk, signed
results, the Ladder, quotas, a killed desk, another server's run, a challenge on the Hub cache.

The hidden benchmark is the first 40 rows of the breast-cancer test set; the models are the zoo's
logistic regression and a weak one (fitted to shuffled labels), both linear: milliseconds per
sample, so the whole module runs in about a minute on this 2-core box.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from support import FAST_MODEL, lay_out

from fhe_backend import cli
from fhe_backend.challenge.identity import Identity, key_fingerprint
from fhe_backend.challenge.leaderboard import leaderboard, verify_result
from fhe_backend.challenge.policy import Policy, commit_score, wilson_interval
from fhe_backend.challenge.spotcheck import catch_probability
from fhe_backend.challenge.store import Challenge
from fhe_backend.formats.artifacts import (
    OUTPUTS,
    TRANSCRIPT,
    EncryptedBenchmark,
    RunResult,
    read_json,
    write_ciphertexts,
    write_json,
)
from fhe_backend.formats.hashing import content_hash, sha256_bytes
from fhe_backend.hub.references import resolve_benchmark, resolve_model
from fhe_backend.server.run import FHEServer

REPO = Path(__file__).resolve().parent.parent
N_HIDDEN = 40
WEAK = "breast-cancer-weak"


def cli_run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fhe_backend", *args], capture_output=True,
                          text=True, cwd=REPO, timeout=600,
                          env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})})


def in_process(capfd: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capfd.readouterr()
    code = cli.main(list(args))
    out, err = capfd.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A hidden benchmark folder, a weak model package, and a challenge on them."""
    from concrete.ml.sklearn import LogisticRegression

    from fhe_backend.owner.package import package_model
    from fhe_backend.owner.zoo_build import NO_PBS_SETTINGS, breast_cancer_data

    root = tmp_path_factory.mktemp("game")
    source = resolve_benchmark("breast-cancer-test")
    hidden = root / "hidden"
    hidden.mkdir()
    meta = read_json(source.path / "benchmark.json", "benchmark")
    write_json(hidden / "benchmark.json", {**meta, "id": "breast-cancer-hidden",
                                           "fits_models": [], "n_samples": N_HIDDEN})
    source.frame.head(N_HIDDEN).to_parquet(hidden / "data.parquet")
    data = breast_cancer_data(standardize=True)
    labels = np.random.default_rng(0).permutation(data.y_train)  # learns nothing useful
    model = LogisticRegression(n_bits=8, random_state=0).fit(data.X_train, labels)
    package_model(model, data.X_train, root / WEAK, model_id=WEAK,
                  class_names=data.class_names, input_schema=data.schema,
                  compile_settings=NO_PBS_SETTINGS, description="fitted to shuffled labels")
    identity, challenge = root / "id", root / "ch"
    assert cli.main(["challenge", "init", "--benchmark", str(hidden), "--metric", "accuracy",
                     "--policy", "ladder:0.01", "--quota", "3/day", "--identity", str(identity),
                     "--out", str(challenge)]) == 0
    return {"root": root, "hidden": hidden, "weak": root / WEAK, "identity": identity,
            "challenge": challenge, "keys": root / "keys"}


def forge_outputs(run: RunResult, rows: list[tuple[str, bytes]]) -> None:
    """Replace a run's outputs and rewrite its transcript to match, as a cheating server can."""
    write_ciphertexts(run.path / OUTPUTS, rows)
    transcript = run.transcript.to_dict()
    transcript["outputs_sha256"] = content_hash(rows)
    for record, (_, blob) in zip(transcript["samples"], rows, strict=True):
        record["output_sha256"] = sha256_bytes(blob)
    write_json(run.path / TRANSCRIPT, transcript)


def desk(world: dict[str, Path], *extra: str) -> list[str]:
    """The desk, per sample: the zoo's logistic regression also has a sealed circuit, whose
    keys take minutes (the sealed desk is tested on its own, heavy, below)."""
    return ["desk", "--challenge", str(world["challenge"]), "--keys", str(world["keys"]),
            "--identity", str(world["identity"]), "--once", "--mode", "per-sample", *extra]


def test_identity_private_half_stays_private(world):
    ident = world["identity"]
    assert oct(ident.stat().st_mode & 0o777) == "0o700"
    assert oct((ident / "private_key.pem").stat().st_mode & 0o777) == "0o600"
    challenge = Challenge.open(str(world["challenge"]))
    assert challenge.public_key == Identity.load(ident).public_key
    public = [p for p in world["challenge"].rglob("*") if p.is_file()]
    pem = (ident / "private_key.pem").read_bytes()
    assert all(pem not in p.read_bytes() for p in public)
    assert "breast-cancer-hidden" in (world["challenge"] / "README.md").read_text()
    # the benchmark's reference and its hash's salt are private notes of the identity
    assert str(world["hidden"]) not in (world["challenge"] / "challenge.json").read_text()


def test_an_identity_whose_files_disagree_is_refused_in_one_sentence(tmp_path):
    """identity.json names the key every signature claims: a key other than the private key's
    own (or not a key at all) was accepted and every submission it signed was then rejected as
    forged; a private key file that is not PEM raised a traceback."""
    from fhe_backend.errors import ChallengeError

    mine, other = Identity.open(tmp_path / "mine"), Identity.open(tmp_path / "other")
    meta = json.loads((mine.path / "identity.json").read_text())
    for public_key in (other.public_key, "z" * 64):
        (mine.path / "identity.json").write_text(json.dumps({**meta, "public_key": public_key}))
        with pytest.raises(ChallengeError, match="another public key than its private key"):
            Identity.load(mine.path)
    (mine.path / "identity.json").write_text(json.dumps(meta))
    assert Identity.load(mine.path).public_key == mine.public_key
    framed = b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"
    for garbage in (b"garbage\n", framed):
        (mine.path / "private_key.pem").write_bytes(garbage)
        with pytest.raises(ChallengeError, match="PEM private key") as caught:
            Identity.load(mine.path)
        assert "\n" not in str(caught.value)


def test_files_dropped_in_results_neither_hide_a_submission_nor_shadow_an_entry(tmp_path):
    """results/ is writable by whoever may submit to a Hub challenge. An unsigned result for a
    rival's submission made the desk skip it for good, and one dated later than a submitter's
    signed result replaced their verified leaderboard entry with an unverified one."""
    from fhe_backend.challenge.store import RESULT_FORMAT, init_challenge

    auditor = Identity.open(tmp_path / "auditor")
    ch = init_challenge("breast-cancer-test", "accuracy", "ladder:0.01", "3/day", auditor,
                        tmp_path / "ch")
    rival = ch.submit("rival", FAST_MODEL)
    alice = ch.submit("alice", FAST_MODEL)
    (ch.path / "results").mkdir(exist_ok=True)
    base = {"format": RESULT_FORMAT, "challenge": ch.challenge_id, "transcript": None,
            "decision": "released", "model": FAST_MODEL}
    genuine = auditor.sign_document({**base, "submission_id": alice["id"], "submitter": "alice",
                                     "submitted_at": alice["submitted_at"], "score": 0.9})
    write_json(ch.result_path(alice["id"]), genuine)
    fake = {**base, "submission_id": rival["id"], "submitter": "rival",
            "submitted_at": rival["submitted_at"], "score": 0.1, "decision": "rejected"}
    write_json(ch.result_path(rival["id"]), fake)
    later = f"{alice['id'][:-6]}ffffff"  # a forged later result for alice under its own name
    write_json(ch.result_path(later), {**base, "submission_id": later, "submitter": "alice",
                                       "submitted_at": "9999-12-31T00:00:00+00:00",
                                       "score": 0.1})
    ch = Challenge.open(str(ch.path))
    assert [s["id"] for s in ch.pending()] == [rival["id"]]
    entries = {e["submitter"]: e for e in leaderboard(ch)["entries"]}
    assert entries["alice"]["score"] == 0.9 and entries["alice"]["verified"]
    assert not entries["rival"]["verified"]


def test_a_malformed_file_in_results_does_not_break_the_leaderboard(tmp_path, capfd):
    """Unverified results are shown, so their fields are anyone's: a score that is text, an
    interval of one number, a fingerprint that is a number or a 'best' that is text made
    `leaderboard` (text and --json) exit with a traceback; a file that is not JSON stopped it
    (and the desk) with one sentence."""
    from fhe_backend.challenge.leaderboard import leaderboard_text
    from fhe_backend.challenge.store import RESULT_FORMAT, init_challenge

    auditor = Identity.open(tmp_path / "auditor")
    ch = init_challenge("breast-cancer-test", "accuracy", "ladder:0.01", "9/day", auditor,
                        tmp_path / "ch")
    (ch.path / "results").mkdir(exist_ok=True)
    odd = [{"score": "abc"}, {"score": True}, {"score": 0.5, "interval": [1]},
           {"score": 0.5, "interval": "zz", "submitter_fingerprint": 5, "best": "x"},
           {"score": 0.5, "best": {"model": ["a"], "date": 3}, "mode": {}}]
    for n, fields in enumerate(odd):
        sub = ch.submit(f"s{n}", FAST_MODEL)
        write_json(ch.result_path(sub["id"]), {
            "format": RESULT_FORMAT, "submission_id": sub["id"], "submitter": f"s{n}",
            "submitted_at": sub["submitted_at"], **fields})
    # files that are not even JSON objects stopped the leaderboard and the desk altogether
    for folder in ("results", "submissions"):
        (ch.path / folder / "garbage.json").write_text("{not json")
        (ch.path / folder / "deep.json").write_text('{"a":' * 100_000 + "1" + "}" * 100_000)
        (ch.path / folder / "folder.json").mkdir()
    assert len(Challenge.open(str(ch.path)).submissions()) == len(odd)
    board = leaderboard(Challenge.open(str(ch.path)))
    assert [e["submitter"] for e in board["entries"]] == ["s2", "s3", "s4"]
    assert all(not e["verified"] and e["interval"] is None and e["submitter_fingerprint"] is None
               and e["model"] is None and e["mode"] is None for e in board["entries"])
    assert "NOT VERIFIED" in leaderboard_text(board, demo=False)
    for extra in ((), ("--json",)):
        code, _out, err = in_process(capfd, "leaderboard", "--challenge", str(ch.path), *extra)
        assert code == 0, err


def test_names_differing_in_case_share_the_quota_and_the_key_binding(tmp_path):
    """'Alice' was another submitter than 'alice': a fresh quota, and free of alice's key."""
    from fhe_backend.challenge.store import RESULT_FORMAT, init_challenge
    from fhe_backend.errors import ChallengeError, QuotaError

    auditor, alice = Identity.open(tmp_path / "auditor"), Identity.open(tmp_path / "alice")
    ch = init_challenge("breast-cancer-test", "accuracy", "ladder:0.01", "2/day", auditor,
                        tmp_path / "ch")
    first = ch.submit("alice", FAST_MODEL, identity=alice)
    write_json(ch.result_path(first["id"]), auditor.sign_document({
        "format": RESULT_FORMAT, "challenge": ch.challenge_id, "submission_id": first["id"],
        "submitter": "alice", "submitted_at": first["submitted_at"], "transcript": None,
        "decision": "rejected", "submitter_key": alice.public_key}))
    with pytest.raises(ChallengeError, match="signed by key"):
        ch.submit("ALICE", FAST_MODEL)
    ch.submit("Alice", FAST_MODEL, identity=alice)
    with pytest.raises(QuotaError, match="2 of 2"):
        ch.submit("aLiCe", FAST_MODEL, identity=alice)


def test_a_signed_submission_replayed_in_another_challenge_is_rejected(tmp_path):
    """Challenge ids are folder names: a submission alice signed for one auditor's 'ch' was
    scored, in her name, by another auditor's 'ch' it was copied into."""
    from fhe_backend.challenge.desk import Desk
    from fhe_backend.challenge.store import init_challenge

    alice = Identity.open(tmp_path / "alice")
    made = []
    for who in ("one", "two"):
        auditor = Identity.open(tmp_path / who / "auditor")
        made.append((auditor, init_challenge("breast-cancer-test", "accuracy", "ladder:0.01",
                                             "3/day", auditor, tmp_path / who / "ch")))
    (_, first), (auditor, second) = made
    sub = first.submit("alice", FAST_MODEL, identity=alice)
    assert sub["auditor_key"] == first.public_key != second.public_key
    shutil.copy(first.path / "submissions" / f"{sub['id']}.json", second.path / "submissions")
    report = Desk(Challenge.open(str(second.path)), tmp_path / "keys", auditor,
                  mode="per-sample").process_pending()
    assert [r["decision"] for r in report.processed] == ["rejected"]
    assert "another challenge" in report.processed[0]["reason"]


def test_a_submission_dated_outside_the_challenge_is_rejected(tmp_path):
    """The quota counts per day of the date a submission file states: files dated on days in
    the future, or before the challenge existed, were each a fresh day's quota."""
    from fhe_backend.challenge.desk import Desk
    from fhe_backend.challenge.store import init_challenge

    auditor = Identity.open(tmp_path / "auditor")
    ch = init_challenge("breast-cancer-test", "accuracy", "ladder:0.01", "1/day", auditor,
                        tmp_path / "ch")
    genuine = ch.submit("eve", FAST_MODEL)
    os.remove(ch.path / "submissions" / f"{genuine['id']}.json")
    for tail, date in (("aaaaaa", "2099-01-01T00:00:00+00:00"),
                       ("bbbbbb", "2001-01-01T00:00:00+00:00")):
        doc = {**genuine, "id": genuine["id"][:-6] + tail, "submitted_at": date}
        write_json(ch.path / "submissions" / f"{doc['id']}.json", doc)
    report = Desk(Challenge.open(str(ch.path)), tmp_path / "keys", auditor,
                  mode="per-sample").process_pending()
    reasons = {r["submission_id"][-6:]: r.get("reason", "") for r in report.processed}
    assert [r["decision"] for r in report.processed] == ["rejected", "rejected"]
    assert "in the future" in reasons["aaaaaa"]
    assert "before the challenge was created" in reasons["bbbbbb"]


def test_three_submitters_ladder_ranking_and_verification(world, capfd):
    ch = str(world["challenge"])
    order = [("alice", FAST_MODEL), ("bob", str(world["weak"])), ("carol", str(world["weak"])),
             ("carol", FAST_MODEL), ("alice", FAST_MODEL)]
    for submitter, model in order:
        code, _, err = in_process(capfd, "submit", "--challenge", ch, "--model", model,
                                  "--submitter", submitter)
        assert code == 0, err
    code, out, err = in_process(capfd, *desk(world), "--json")
    assert code == 0, err
    processed = json.loads(out)["processed"]
    assert [p["submitter"] for p in processed] == [s for s, _ in order]
    alice1, bob, carol1, carol2, alice2 = processed
    assert alice1["decision"] == carol2["decision"] == bob["decision"] == "released"
    # the resubmission does not beat alice's best by the step: her released score is unchanged
    assert alice2["decision"] == "previous best re-released"
    assert alice2["score"] == alice1["score"]
    assert carol2["score"] > carol1["score"]
    assert all(p["mode"] == "per-sample" for p in processed)

    code, out, _ = in_process(capfd, "leaderboard", "--challenge", ch, "--json")
    board = json.loads(out)
    assert set(board) == {"challenge", "benchmark", "metric", "policy", "entries"}
    assert board["metric"] == "accuracy" and board["policy"] == "ladder:0.01"
    entries = board["entries"]
    assert [e["rank"] for e in entries] == [1, 2, 3]
    assert set(entries[0]) == {"rank", "submitter", "model", "model_fingerprint", "score",
                               "interval", "mode", "date", "verified", "submitter_fingerprint"}
    assert all(e["submitter_fingerprint"] is None for e in entries)  # unsigned submissions
    assert [e["submitter"] for e in entries] == ["alice", "carol", "bob"]  # tie: earliest first
    assert all(e["verified"] for e in entries)
    assert entries[0]["score"] > entries[2]["score"] + 0.2  # the real model beats the weak one
    low, high = entries[0]["interval"]
    assert low < entries[0]["score"] < high
    assert entries[1]["model"] == FAST_MODEL  # carol's best is her second model

    # every result records a salted raw-score hash, the policy and the decision
    results = Challenge.open(ch).results()
    assert len(results) == 5
    for result in results.values():
        assert len(result["raw_score_sha256"]) == 64 and result["policy"] == "ladder:0.01"
        note = Identity.load(world["identity"]).read_note(
            "ch", f"score-{result['submission_id']}")
        # the auditor can prove what was withheld: salt + raw score reproduce the hash
        assert commit_score(note["raw_score"], bytes.fromhex(note["salt"]))[0] == (
            result["raw_score_sha256"])


def test_edited_or_foreign_results_are_unverified(world, tmp_path):
    """Subprocesses: the exit code of verify-result is the contract (0 verified, 1 not)."""
    challenge = Challenge.open(str(world["challenge"]))
    results = sorted(challenge.results().values(), key=lambda r: r["submitted_at"])
    if not results:
        pytest.skip("needs the results of the end-to-end test")
    good = results[0]["_file"]
    ok = cli_run("verify-result", str(good), "--challenge", str(world["challenge"]))
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith("Verified")

    edited = json.loads(good.read_text())
    edited["score"] = 0.99
    edited_file = tmp_path / "edited.json"
    edited_file.write_text(json.dumps(edited))
    bad = cli_run("verify-result", str(edited_file), "--challenge", str(world["challenge"]),
                  "--json")
    assert bad.returncode == 1, bad.stderr
    assert json.loads(bad.stdout)["verified"] is False

    other = Identity.open(tmp_path / "mallory")
    forged = other.sign_document({k: v for k, v in edited.items() if k != "signature"})
    forged_file = tmp_path / "forged.json"
    forged_file.write_text(json.dumps(forged))
    assert cli_run("verify-result", str(forged_file), "--challenge",
                   str(world["challenge"])).returncode == 1

    # in the challenge itself, the edited result is shown unverified and ranked last
    copy = tmp_path / "copy"
    shutil.copytree(world["challenge"], copy, ignore=shutil.ignore_patterns("work"))
    write_json(copy / "results" / good.name, edited)
    entries = leaderboard(Challenge.open(str(copy)))["entries"]
    alice = next(e for e in entries if e["submitter"] == results[0]["submitter"])
    # alice's latest result is the one shown; edit that one instead and check again
    latest = max((r for r in results if r["submitter"] == "alice"),
                 key=lambda r: r["submitted_at"])
    tampered = {k: v for k, v in latest.items() if k != "_file"}
    tampered["score"] = 1.0
    write_json(copy / "results" / latest["_file"].name, tampered)
    entries = leaderboard(Challenge.open(str(copy)))["entries"]
    alice = next(e for e in entries if e["submitter"] == "alice")
    assert alice["verified"] is False and alice["rank"] == len(entries)

    # a transcript that does not match the result's hashes: unverified
    transcript = copy / "transcripts" / f"{results[1]['submission_id']}.json"
    data = json.loads(transcript.read_text())
    data["outputs_sha256"] = "0" * 64
    transcript.write_text(json.dumps(data))
    assert not verify_result(Challenge.open(str(copy)), results[1]).verified


def test_quota_refuses_the_fourth_submission_of_a_day(world, capfd):
    ch = str(world["challenge"])
    for _ in range(3):
        assert in_process(capfd, "submit", "--challenge", ch, "--model", FAST_MODEL,
                          "--submitter", "dave")[0] == 0
    fourth = cli_run("submit", "--challenge", ch, "--model", FAST_MODEL, "--submitter", "dave")
    assert fourth.returncode == 2
    last = fourth.stderr.strip().splitlines()[-1]
    assert last.startswith("error: dave has made 3 of 3 submissions") and (
        "the next is allowed from" in last), last
    assert "Traceback" not in fourth.stderr


def test_desk_killed_and_restarted_writes_one_result_per_submission(world):
    """dave's three pending submissions: SIGKILL the desk once it is working, restart it."""
    challenge = Challenge.open(str(world["challenge"]))
    pending = challenge.pending()
    if len(pending) < 2:
        pytest.skip("needs the quota test's pending submissions")
    proc = subprocess.Popen([sys.executable, "-m", "fhe_backend", *desk(world)], cwd=REPO,
                            env={**os.environ, "PYTHONPATH": str(REPO)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    work = [world["challenge"] / "work" / s["id"] for s in pending]
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not (work[1] / "encrypted").exists():
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert len(challenge.pending()) >= 1, "the desk finished before it was killed"
    again = cli_run(*desk(world))
    assert again.returncode == 0, again.stderr
    assert challenge.pending() == []
    results = list((world["challenge"] / "results").glob("*"))
    assert sorted(p.name for p in results) == sorted(
        f"{s['id']}.json" for s in challenge.submissions())
    assert all(verify_result(challenge, r).verified for r in challenge.results().values())


def test_desk_refuses_submission_files_written_around_submit(world, capfd):
    """Submission files come from anyone: over the quota, malformed, or (on a Hub challenge) a
    path on the auditor's machine are refused before any FHE."""
    folder = world["challenge"] / "submissions"
    dave = sorted(folder.glob("*-dave-*.json"))
    if len(dave) != 3:
        pytest.skip("needs the quota test's submissions")
    extra = json.loads(dave[-1].read_text())
    extra["id"] = extra["id"][:-6] + "ffffff"
    write_json(folder / f"{extra['id']}.json", extra)
    write_json(folder / "junk.json", {"format": "fhe-audit/submission", "id": "junk",
                                      "submitter": "../../x", "model": FAST_MODEL})
    code, out, err = in_process(capfd, *desk(world), "--json")
    assert code == 0, err
    assert [(p["submission_id"], p["decision"]) for p in json.loads(out)["processed"]] == [
        (extra["id"], "rejected")]
    result = Challenge.open(str(world["challenge"])).results()[extra["id"]]
    assert "quota" in result["reason"] and result["score"] is None

    from fhe_backend.challenge.desk import Desk

    challenge = Challenge.open(str(world["challenge"]))
    sub = challenge.submit("grace", str(world["weak"]))
    hub_desk = Desk(challenge, world["keys"], Identity.load(world["identity"]),
                    local_models=False)
    rejected = hub_desk.process(sub)
    assert rejected["decision"] == "rejected" and "Hub reference" in rejected["reason"]


def test_run_by_another_server_is_spot_checked(world, capfd):
    ch = str(world["challenge"])
    for _ in range(2):
        assert in_process(capfd, "submit", "--challenge", ch, "--model", FAST_MODEL,
                          "--submitter", "erin")[0] == 0
    code, out, _ = in_process(capfd, *desk(world, "--wait-for-runs"), "--json")
    assert code == 0 and len(json.loads(out)["waiting"]) == 2
    challenge = Challenge.open(ch)
    honest, cheat = challenge.pending()
    package = resolve_model(FAST_MODEL)
    for sub in (honest, cheat):
        encrypted = EncryptedBenchmark.load(challenge.work_dir(sub["id"]) / "encrypted")
        FHEServer(package).run(encrypted, challenge.external_run(sub["id"]))
    # the cheat swaps outputs between samples and rewrites a self-consistent transcript
    run_dir = challenge.external_run(cheat["id"])
    run = RunResult.load(run_dir)
    rows = run.outputs()
    forge_outputs(run, [(sid, rows[(i + 1) % len(rows)][1]) for i, (sid, _) in enumerate(rows)])

    # Every sample re-executed: whether a cyclic swap changes the label of k random samples
    # is chance (catch probabilities are tested on their own), and a test must not be.
    every = str(EncryptedBenchmark.load(challenge.work_dir(cheat["id"]) / "encrypted")
                .manifest.n_samples)
    code, out, err = in_process(capfd, *desk(world, "--spot-check", every), "--json")
    assert code == 0, err
    processed = {p["submission_id"]: p["decision"] for p in json.loads(out)["processed"]}
    assert processed == {honest["id"]: "released", cheat["id"]: "void"}
    results = Challenge.open(ch).results()
    assert results[honest["id"]]["decision"] == "released"
    assert results[honest["id"]]["executed_by"] == "another server (spot-checked)"
    void = results[cheat["id"]]
    assert void["decision"] == "void" and void["score"] is None
    assert void["spot_check"]["k"] == int(every) and void["spot_check"]["problems"]
    assert verify_result(Challenge.open(ch), void).verified  # the void decision is signed


def test_signed_submissions_bind_the_submitter_to_their_key(world, capfd, tmp_path):
    """A signed submission names its key; an altered one, one signed by another key under the
    same name, and an unsigned one under that name are refused; unsigned names stay free."""
    ch = str(world["challenge"])
    heidi = world["root"] / "heidi-identity"
    code, out, err = in_process(capfd, "submit", "--challenge", ch, "--model", FAST_MODEL,
                                "--submitter", "heidi", "--identity", str(heidi), "--json")
    assert code == 0, err
    genuine = json.loads(out)
    key = Identity.load(heidi).public_key
    assert genuine["submitter_key"] == key and len(genuine["signature"]) == 128
    assert oct((heidi / "private_key.pem").stat().st_mode & 0o777) == "0o600"
    folder = world["challenge"] / "submissions"
    # altered after signing: another model under a new id, the signature left as it was
    weak = resolve_model(str(world["weak"]))
    altered = {**genuine, "id": genuine["id"][:-6] + "aaaaaa", "model": str(world["weak"]),
               "model_fingerprint": weak.fingerprint}
    write_json(folder / f"{altered['id']}.json", altered)
    code, out, err = in_process(capfd, "submit", "--challenge", ch, "--model", FAST_MODEL,
                                "--submitter", "ivy", "--json")  # unsigned, as before
    assert code == 0, err
    ivy = json.loads(out)
    assert "signature" not in ivy and "submitter_key" not in ivy
    code, out, err = in_process(capfd, *desk(world), "--json")
    assert code == 0, err
    decisions = {p["submission_id"]: p["decision"] for p in json.loads(out)["processed"]}
    assert decisions == {genuine["id"]: "released", altered["id"]: "rejected",
                         ivy["id"]: "released"}
    results = Challenge.open(ch).results()
    assert "altered or forged" in results[altered["id"]]["reason"]
    assert results[altered["id"]]["submitter_key"] is None
    assert results[genuine["id"]]["submitter_fingerprint"] == key_fingerprint(key)

    # heidi is now bound to her key: submit refuses another key, or none, under her name ...
    for extra in (("--identity", str(tmp_path / "mallory")), ()):
        code, _, err = in_process(capfd, "submit", "--challenge", ch, "--model", FAST_MODEL,
                                  "--submitter", "heidi", *extra)
        assert code == 2 and "signed by key" in err, err
    # ... and so does the desk, for files written around submit
    body = {k: v for k, v in genuine.items() if k != "signature"}
    mallory = Identity.open(tmp_path / "mallory")
    forged = mallory.sign_document({**body, "id": genuine["id"][:-6] + "bbbbbb",
                                    "submitter_key": mallory.public_key})
    unsigned = {k: v for k, v in body.items() if k != "submitter_key"}
    unsigned["id"] = genuine["id"][:-6] + "cccccc"
    for doc in (forged, unsigned):
        write_json(folder / f"{doc['id']}.json", doc)
    code, out, err = in_process(capfd, *desk(world), "--json")
    assert code == 0, err
    assert {p["submission_id"]: p["decision"] for p in json.loads(out)["processed"]} == {
        forged["id"]: "rejected", unsigned["id"]: "rejected"}
    results = Challenge.open(ch).results()
    for doc, what in ((forged, "signed by another key"), (unsigned, "unsigned")):
        reason = results[doc["id"]]["reason"]
        assert "earlier submissions were signed by another key" in reason and what in reason

    entries = {e["submitter"]: e for e in leaderboard(Challenge.open(ch))["entries"]}
    assert entries["heidi"]["submitter_fingerprint"] == key_fingerprint(key)
    assert entries["heidi"]["verified"] and entries["ivy"]["verified"]
    assert entries["ivy"]["submitter_fingerprint"] is None
    shown = cli_run("leaderboard", "--challenge", ch)
    assert f"key {key_fingerprint(key)[:16]}" in shown.stdout and "unsigned" in shown.stdout


@pytest.mark.heavy
@pytest.mark.timeout(3600)
def test_sealed_desk_scores_from_counts_and_spot_checks_batches(world, capfd):
    """The zoo's XGBoost has a sealed circuit: the desk audits it sealed (20 hidden rows: two
    batches of 16, the second padded), scores from the decrypted counts, and spot-checks
    another server's sealed run batch by batch. Sealed keygen alone takes minutes."""
    from fhe_backend.auditor.sealed import SealedAuditor
    from fhe_backend.audits import simulate_predictions

    model, n_rows = "breast-cancer-xgb", 20
    root = world["root"]
    hidden = root / "hidden-sealed"
    hidden.mkdir()
    source = resolve_benchmark("breast-cancer-test")
    meta = read_json(source.path / "benchmark.json", "benchmark")
    write_json(hidden / "benchmark.json", {**meta, "id": "breast-cancer-hidden-sealed",
                                           "fits_models": [], "n_samples": n_rows})
    source.frame.head(n_rows).to_parquet(hidden / "data.parquet")
    ch = root / "ch-sealed"
    assert cli.main(["challenge", "init", "--benchmark", str(hidden), "--metric", "accuracy",
                     "--policy", "ladder:0.01", "--quota", "3/day", "--identity",
                     str(world["identity"]), "--out", str(ch)]) == 0
    base = ["desk", "--challenge", str(ch), "--keys", str(world["keys"]), "--identity",
            str(world["identity"]), "--once", "--json"]

    assert in_process(capfd, "submit", "--challenge", str(ch), "--model", model,
                      "--submitter", "sam")[0] == 0
    code, out, err = in_process(capfd, *base)
    assert code == 0, err
    (sam,) = json.loads(out)["processed"]
    assert sam["mode"] == "sealed" and sam["decision"] == "released"
    result = Challenge.open(str(ch)).results()[sam["submission_id"]]
    assert result["decrypted"]["n_batches"] == 2 and result["n_samples"] == n_rows
    assert result["transcript"]["n_samples"] == 2  # the run's ciphertexts are batches
    note = Identity.load(world["identity"]).read_note("ch-sealed",
                                                      f"score-{sam['submission_id']}")
    package, bench = resolve_model(model), resolve_benchmark(str(hidden))
    reference = simulate_predictions(package, bench)
    y_true = bench.labels(package.manifest.class_names)
    index = {s: i for i, s in enumerate(bench.sample_ids())}
    y_ref = y_true[[index[s] for s in reference.sources]]
    assert note["raw_score"] == float(np.mean(reference.predictions == y_ref))
    (entry,) = leaderboard(Challenge.open(str(ch)))["entries"]
    assert entry["mode"] == "sealed" and entry["verified"] and entry["interval"]

    # another server's runs: one honest, one with two batches' outputs swapped
    for _ in range(2):
        assert in_process(capfd, "submit", "--challenge", str(ch), "--model", model,
                          "--submitter", "tom")[0] == 0
    code, out, _ = in_process(capfd, *base, "--wait-for-runs")
    assert code == 0 and len(json.loads(out)["waiting"]) == 2
    challenge = Challenge.open(str(ch))
    honest, cheat = challenge.pending()
    for sub in (honest, cheat):
        encrypted = EncryptedBenchmark.load(challenge.work_dir(sub["id"]) / "encrypted")
        assert encrypted.manifest.circuit == "sealed"
        FHEServer(package).run(encrypted, challenge.external_run(sub["id"]))
    run_dir = challenge.external_run(cheat["id"])
    run = RunResult.load(run_dir)
    rows = run.outputs()
    auditor = SealedAuditor(package, world["keys"])
    counts = [auditor.decrypt_output(b) for _, b in rows]
    if np.array_equal(counts[0], counts[1]):
        pytest.skip("both batches hold the same counts: swapping them changes nothing")
    forge_outputs(run, [(rows[0][0], rows[1][1]), (rows[1][0], rows[0][1])])
    code, out, err = in_process(capfd, *base, "--spot-check", "2")
    assert code == 0, err
    assert {p["submission_id"]: p["decision"] for p in json.loads(out)["processed"]} == {
        honest["id"]: "released", cheat["id"]: "void"}
    results = Challenge.open(str(ch)).results()
    spot = results[honest["id"]]["spot_check"]
    assert spot["unit"] == "batch" and spot["k"] == 2 and spot["ok"]
    void = results[cheat["id"]]
    assert void["mode"] == "sealed" and "counts" in void["reason"]
    assert verify_result(Challenge.open(str(ch)), void).verified


def test_challenge_on_the_hub_through_an_offline_cache(world, tmp_path, monkeypatch, capfd):
    if not Challenge.open(str(world["challenge"])).results():  # run alone: one result first
        code, _, err = in_process(capfd, "submit", "--challenge", str(world["challenge"]),
                                  "--model", FAST_MODEL, "--submitter", "dave")
        assert code == 0, err
        assert in_process(capfd, *desk(world))[0] == 0
    dry = tmp_path / "dry"
    published = cli_run("challenge", "publish", "--challenge", str(world["challenge"]),
                        "--repo", "o/challenge", "--dry-run", "--out", str(dry), "--json")
    assert published.returncode == 0, published.stderr
    files = json.loads(published.stdout)["files"]
    assert "challenge.json" in files and not any(f.startswith("work") for f in files)
    cache = tmp_path / "hf-cache"
    snapshot = lay_out(cache, "dataset", "o/challenge", dry, "c3" * 20)
    env = {"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(cache)}
    board = cli_run("leaderboard", "--challenge", "hf://datasets/o/challenge", "--json", env=env)
    assert board.returncode == 0, board.stderr
    local = leaderboard(Challenge.open(str(world["challenge"])))
    assert json.loads(board.stdout) == local and local["entries"]
    result = next(iter(sorted((dry / "results").iterdir())))
    check = cli_run("verify-result", f"results/{result.name}", "--challenge",
                    "hf://datasets/o/challenge", env=env)
    assert check.returncode == 0, check.stderr
    missing = cli_run("leaderboard", "--challenge", "hf://datasets/o/none", env=env)
    assert missing.returncode == 2 and "not in the local Hub cache" in missing.stderr

    # Submitting to and running the desk on the Hub challenge: the real code down to the
    # upload, which here commits into the cached snapshot instead of the Hub.
    def commit_to_snapshot(folder: Path, repo_id: str, paths: list[str], *, message: str,
                           ) -> str:
        assert repo_id == "o/challenge" and message
        for name in paths:
            (snapshot / name).parent.mkdir(exist_ok=True)
            shutil.copyfile(folder / name, snapshot / name)
        return "offline-commit"

    from huggingface_hub import constants

    from fhe_backend.hub import remote as hub

    monkeypatch.setattr(hub, "upload_files", commit_to_snapshot)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("FHE_AUDIT_HOME", str(tmp_path / "home"))
    ref = "hf://datasets/o/challenge"
    code, out, err = in_process(capfd, "submit", "--challenge", ref, "--model", FAST_MODEL,
                                "--submitter", "frank", "--json")
    assert code == 0, err
    sub_id = json.loads(out)["id"]
    assert (snapshot / "submissions" / f"{sub_id}.json").is_file()
    code, _, err = in_process(capfd, "submit", "--challenge", ref, "--model",
                              str(world["weak"]), "--submitter", "frank")
    assert code == 2 and "submit a model on the Hub" in err
    code, out, err = in_process(capfd, "desk", "--challenge", ref, "--keys", str(world["keys"]),
                                "--identity", str(world["identity"]), "--once", "--json",
                                "--mode", "per-sample")
    assert code == 0, err
    assert [p["submission_id"] for p in json.loads(out)["processed"]] == [sub_id]
    assert (snapshot / "results" / f"{sub_id}.json").is_file()
    board = leaderboard(Challenge.open(ref))
    frank = next(e for e in board["entries"] if e["submitter"] == "frank")
    assert frank["verified"] and frank["score"] == board["entries"][0]["score"]

    # The real upload fails offline, after real FHE: one sentence, and exit code 2 from a
    # subprocess (Concrete's exit hook must not turn it into 0).
    sub = json.loads((snapshot / "submissions" / f"{sub_id}.json").read_text())
    late = {**sub, "id": sub_id[:-6] + "eeeeee", "submitter": "ivan"}
    write_json(snapshot / "submissions" / f"{late['id']}.json", late)
    failed = cli_run("desk", "--challenge", ref, "--keys", str(world["keys"]), "--identity",
                     str(world["identity"]), "--once", "--mode", "per-sample",
                     env={**env, "FHE_AUDIT_HOME": str(tmp_path / "home")})
    assert failed.returncode == 2, failed.stderr
    assert "Traceback" not in failed.stderr
    assert failed.stderr.strip().splitlines()[-1].startswith("error: "), failed.stderr
    assert (tmp_path / "home" / "challenges" / "o--challenge" / "results"
            / f"{late['id']}.json").is_file()  # scored in the mirror, kept for the next try
    assert not (snapshot / "results" / f"{late['id']}.json").exists()
    code, out, err = in_process(capfd, "desk", "--challenge", ref, "--keys", str(world["keys"]),
                                "--identity", str(world["identity"]), "--once", "--json",
                                "--mode", "per-sample")
    assert code == 0 and json.loads(out)["processed"] == [], err
    assert (snapshot / "results" / f"{late['id']}.json").is_file()  # the retry uploaded it


def test_policies_intervals_and_catch_probability():
    ladder = Policy.parse("ladder:0.01")
    assert ladder.release(0.9123, None).released == 0.91
    assert ladder.release(0.915, 0.91).decision == "previous best re-released"
    assert ladder.release(0.9301, 0.91).released == 0.93
    assert Policy.parse("round:2").release(0.91234, 0.99).released == 0.91
    # Wilson 95% for 0.5 on 100 samples (textbook value 0.4038, 0.5962)
    assert wilson_interval(0.5, 100) == [0.4038, 0.5962]
    assert catch_probability(171, 18, 20) == pytest.approx(
        1 - np.prod([(171 - 18 - i) / (171 - i) for i in range(20)]))
    assert catch_probability(100, 0, 20) == 0.0 and catch_probability(10, 1, 10) == 1.0
    digest, salt = commit_score(0.9)
    assert commit_score(0.9, bytes.fromhex(salt))[0] == digest != commit_score(0.9)[0]


def test_leaderboard_tab_renders_the_bundled_demo(tmp_path_factory):
    """The Space in-process: the tab's endpoints give the demo challenge's ranked table and a
    verified result with its transcript; the tab has no submit form (the demo is read-only:
    submissions go through the command line)."""
    import re
    from contextlib import closing

    from gradio_client import Client
    from support import launched_space

    from fhe_backend.challenge.demo import CHALLENGE_ID
    from fhe_backend.ui.leaderboard import bundled

    if CHALLENGE_ID not in bundled():
        pytest.skip("the demo challenge is not built (make assets)")
    with launched_space(tmp_path_factory, FAST_MODEL) as (_, url), closing(
            Client(url, verbose=False)) as client:
        card, table, entry, shown = client.predict(CHALLENGE_ID, api_name="/leaderboard")
        assert "Demo identity" in card and "ladder:0.01" in card
        rows = [re.findall(r"<td[^>]*>(.*?)</td>", tr)
                for tr in re.findall(r"<tr>(.*?)</tr>", table)[1:]]
        assert [r[0] for r in rows] == [str(i) for i in range(1, len(rows) + 1)]
        assert all(r[-1] == "✓" for r in rows) and len(rows) == 2
        assert entry["value"] == rows[0][1] and shown["result"]["submitter"] == rows[0][1]
        shown = client.predict(CHALLENGE_ID, rows[1][1], api_name="/leaderboard_result")
        assert shown["check"]["verified"] and shown["transcript"]["outputs_sha256"]
        with pytest.raises(ValueError, match="leaderboard_submit"):  # no such endpoint
            client.predict(CHALLENGE_ID, FAST_MODEL, "someone", api_name="/leaderboard_submit")
