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
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from support import FAST_MODEL, lay_out

from fhe_backend import cli
from fhe_backend.challenge import notes
from fhe_backend.challenge.identity import Identity, key_fingerprint
from fhe_backend.challenge.leaderboard import leaderboard, verify_result
from fhe_backend.challenge.policy import (
    NOT_RELEASED,
    Leader,
    Policy,
    commit_score,
    published_interval,
    wilson_interval,
)
from fhe_backend.challenge.spotcheck import catch_probability
from fhe_backend.challenge.store import Challenge, day_of
from fhe_backend.formats.artifacts import (
    OUTPUTS,
    TOTAL_ID,
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
    if transcript["total"]:  # a sealed run: its one total
        ((_, blob),) = rows
        transcript["total"]["output_sha256"] = sha256_bytes(blob)
    else:
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
            "challenge_sha256": ch.fingerprint, "decision": "released", "model": FAST_MODEL}
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
        "challenge_sha256": ch.fingerprint, "submitter": "alice", "transcript": None,
        "received_at": datetime.now(UTC).isoformat(), "decision": "released",
        "submitter_key": alice.public_key}))
    with pytest.raises(ChallengeError, match="signed by key"):
        ch.submit("ALICE", FAST_MODEL)
    ch.submit("Alice", FAST_MODEL, identity=alice)
    with pytest.raises(QuotaError, match="2 of 2"):
        ch.submit("aLiCe", FAST_MODEL, identity=alice)
    # one submitter, one board entry: her best, whatever the case of the name it was under
    second = Challenge.open(str(ch.path)).pending()[0]
    for sub, name, score in ((first, "alice", 0.9), (second, "Alice", 0.95)):
        write_json(ch.result_path(sub["id"]), auditor.sign_document({
            "format": RESULT_FORMAT, "challenge": ch.challenge_id, "transcript": None,
            "submission_id": sub["id"], "challenge_sha256": ch.fingerprint, "submitter": name,
            "received_at": datetime.now(UTC).isoformat(), "decision": "released",
            "score": score, "submitter_key": alice.public_key}))
    entries = leaderboard(Challenge.open(str(ch.path)))["entries"]
    assert [(e["submitter"], e["score"]) for e in entries] == [("Alice", 0.95)]


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


def test_one_ladder_for_the_whole_challenge_whatever_the_names(world, capfd):
    """The Ladder's state was kept per submitter name and names are free: each new name (or
    case variant) got its own rounded score released. Now a score is released only when it
    beats the challenge's best released score by more than the step, whoever submits."""
    ch = str(world["challenge"])
    order = [("bob", str(world["weak"])), ("carol", str(world["weak"])), ("alice", FAST_MODEL),
             ("carol", FAST_MODEL), ("ALICE", FAST_MODEL)]
    for submitter, model in order:
        code, _, err = in_process(capfd, "submit", "--challenge", ch, "--model", model,
                                  "--submitter", submitter)
        assert code == 0, err
    code, out, err = in_process(capfd, *desk(world), "--json")
    assert code == 0, err
    processed = json.loads(out)["processed"]
    assert [p["submitter"] for p in processed] == [s for s, _ in order]  # order of receipt
    bob, carol1, alice1, carol2, alice2 = processed
    assert bob["decision"] == alice1["decision"] == "released"
    # the same model under another name, and the same score under a case variant: nothing
    for held in (carol1, carol2, alice2):
        assert held["decision"] == NOT_RELEASED and held["score"] is None
    assert alice1["score"] > bob["score"] + 0.2  # the real model beats the weak one
    assert all(p["mode"] == "per-sample" for p in processed)

    code, out, _ = in_process(capfd, "leaderboard", "--challenge", ch, "--json")
    board = json.loads(out)
    assert set(board) == {"challenge", "benchmark", "metric", "policy", "budget",
                          "not_released", "entries"}
    assert board["metric"] == "accuracy" and board["policy"] == "ladder:0.01"
    assert board["budget"] == "100/day" and board["not_released"] == 3
    entries = board["entries"]
    assert set(entries[0]) == {"rank", "submitter", "model", "model_fingerprint", "score",
                               "interval", "mode", "date", "verified", "submitter_fingerprint"}
    assert [(e["rank"], e["submitter"]) for e in entries] == [(1, "alice"), (2, "bob")]
    assert all(e["verified"] and e["submitter_fingerprint"] is None for e in entries)
    low, high = entries[0]["interval"]
    assert low < entries[0]["score"] < high

    # every scored result records a salted raw-score hash, the policy, the leader it was
    # compared with, the desk's receipt time, and an interval from the raw score
    results = Challenge.open(ch).results()
    assert len(results) == 5
    identity = Identity.load(world["identity"])
    for result in results.values():
        assert len(result["raw_score_sha256"]) == 64 and result["policy"] == "ladder:0.01"
        assert result["challenge_sha256"] == Challenge.open(ch).fingerprint
        assert result["received_at"]
        note = notes.read(identity, "ch", f"score-{result['submission_id']}")
        # the auditor can prove what was withheld: salt + raw score reproduce the hash
        assert commit_score(note["raw_score"], bytes.fromhex(note["salt"]))[0] == (
            result["raw_score_sha256"])
        if result["score"] is not None:
            assert result["interval"] == published_interval(note["raw_score"], N_HIDDEN, 0.01)
            assert "not for the best of many" in result["interval_note"]
        else:
            assert result["interval"] is None
    alice2_result = results[alice2["submission_id"]]
    assert alice2_result["previous_best"] == alice1["score"] and alice2_result["margin"] == 0.01


def test_a_back_dated_submission_is_ordered_by_receipt(world, capfd):
    """A submission file may state any `submitted_at`: one dated before the leader's, written
    after it was scored, was ordered (and laddered) as if it came first."""
    ch = Challenge.open(str(world["challenge"]))
    leader = max((r for r in ch.signed_results() if r.get("score") is not None),
                 key=lambda r: r["score"], default=None)
    if leader is None:
        pytest.skip("needs the results of the end-to-end test")
    sub = ch.submit("mallory", FAST_MODEL)
    os.remove(ch.path / "submissions" / f"{sub['id']}.json")
    created = datetime.fromisoformat(ch.data["created_at"])
    early = {**sub, "submitted_at": created.isoformat(),
             "id": f"{created:%Y%m%dT%H%M%S%f}-mallory-{sub['id'][-6:]}"}
    write_json(ch.path / "submissions" / f"{early['id']}.json", early)
    code, out, err = in_process(capfd, *desk(world), "--json")
    assert code == 0, err
    (done,) = json.loads(out)["processed"]
    assert done["decision"] == NOT_RELEASED and done["score"] is None
    result = Challenge.open(str(world["challenge"])).results()[early["id"]]
    assert result["received_at"] > leader["received_at"]
    board = leaderboard(Challenge.open(str(world["challenge"])))["entries"]
    assert board[0]["submitter"] == "alice" and "mallory" not in [e["submitter"] for e in board]


def test_edited_or_foreign_results_are_unverified(world, tmp_path):
    """Subprocesses: the exit code of verify-result is the contract (0 verified, 1 not)."""
    challenge = Challenge.open(str(world["challenge"]))
    results = sorted(challenge.results().values(), key=lambda r: r["received_at"])
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
    shown = next(e for e in entries if e["submitter"] == results[0]["submitter"])
    assert shown["verified"] is False and shown["rank"] == len(entries)
    shutil.copyfile(good, copy / "results" / good.name)
    # alice's best released result is the one shown; edit that one instead and check again
    latest = max((r for r in results if r["submitter"] == "alice" and r["score"] is not None),
                 key=lambda r: r["score"])
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
    """erin's signed submissions name a runner key; the runner's signed runs are spot-checked,
    a forged one is void. A file a third party plants in runs/ID/ is ignored: it used to get
    the victim a signed void."""
    ch = str(world["challenge"])
    erin, runner = world["root"] / "erin-identity", world["root"] / "runner-identity"
    runner_key = Identity.open(runner).public_key
    for _ in range(2):
        assert in_process(capfd, "submit", "--challenge", ch, "--model", FAST_MODEL,
                          "--submitter", "erin", "--identity", str(erin), "--runner-key",
                          runner_key)[0] == 0
    victim = Challenge.open(ch).submit("victor", FAST_MODEL)  # unsigned: names no runner
    code, out, _ = in_process(capfd, *desk(world, "--wait-for-runs"), "--json")
    assert code == 0
    report = json.loads(out)
    # victor's submission names no runner, so there is nothing to wait for: the desk ran it
    assert len(report["waiting"]) == 2 and [p["submission_id"] for p in report["processed"]] == [
        victim["id"]]
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
    for sub in (honest, cheat):
        code, _, err = in_process(capfd, "challenge", "sign-run", "--challenge", ch,
                                  "--submission", sub["id"], "--identity", str(runner))
        assert code == 0, err

    # Every sample re-executed: whether a cyclic swap changes the label of k random samples
    # is chance (catch probabilities are tested on their own), and a test must not be.
    every = str(EncryptedBenchmark.load(challenge.work_dir(cheat["id"]) / "encrypted")
                .manifest.n_samples)
    code, out, err = in_process(capfd, *desk(world, "--spot-check", every), "--json")
    assert code == 0, err
    processed = {p["submission_id"]: p["decision"] for p in json.loads(out)["processed"]}
    assert processed == {honest["id"]: NOT_RELEASED, cheat["id"]: "void"}
    results = Challenge.open(ch).results()
    assert results[honest["id"]]["executed_by"] == "another server (spot-checked)"
    spot = results[honest["id"]]["spot_check"]
    assert spot["k"] == int(every) and spot["altered_share_upper_95"] == 0.0
    assert spot["target"]["chosen_by"] == "auditor" and spot["target"]["altered"] == 1
    void = results[cheat["id"]]
    assert void["decision"] == "void" and void["score"] is None
    assert void["spot_check"]["k"] == int(every) and void["spot_check"]["problems"]
    assert verify_result(Challenge.open(ch), void).verified  # the void decision is signed

    # A third party plants garbage (or a copy of a signed run) in the runs/ of a rival's
    # signed submission: ignored, the desk runs it itself.
    code, out, err = in_process(capfd, "submit", "--challenge", ch, "--model", FAST_MODEL,
                                "--submitter", "erin", "--identity", str(erin), "--runner-key",
                                runner_key, "--json")
    assert code == 0, err
    target = json.loads(out)["id"]
    planted = Challenge.open(ch).external_run(target)
    shutil.copytree(run_dir, planted)  # signed by the runner, but for another submission
    write_json(planted / TRANSCRIPT, {"format": "garbage"})
    code, out, err = in_process(capfd, *desk(world), "--json")
    assert code == 0, err
    assert [(p["submission_id"], p["decision"]) for p in json.loads(out)["processed"]] == [
        (target, NOT_RELEASED)]
    assert Challenge.open(ch).results()[target]["executed_by"] == "the desk"


def test_only_a_run_signed_by_the_named_runner_counts(tmp_path):
    from fhe_backend.challenge.runs import SIGNATURE, counted_run, sign_run
    from fhe_backend.challenge.store import init_challenge
    from fhe_backend.errors import ChallengeError

    auditor, owner = Identity.open(tmp_path / "auditor"), Identity.open(tmp_path / "owner")
    runner, other = Identity.open(tmp_path / "runner"), Identity.open(tmp_path / "other")
    ch = init_challenge("breast-cancer-test", "accuracy", "ladder:0.01", "9/day", auditor,
                        tmp_path / "ch")
    with pytest.raises(ChallengeError, match="signed submission"):
        ch.submit("owner", FAST_MODEL, runner_key=runner.public_key)  # unsigned
    sub = ch.submit("owner", FAST_MODEL, identity=owner, runner_key=runner.public_key)
    folder = ch.external_run(sub["id"])
    folder.mkdir(parents=True)
    write_json(folder / TRANSCRIPT, {"format": "garbage"})
    assert counted_run(ch, sub) is None  # unsigned run
    sign_run(ch, sub["id"], other)
    assert counted_run(ch, sub) is None  # signed by a key the submission does not name
    sign_run(ch, sub["id"], runner)
    assert counted_run(ch, sub) == folder
    write_json(folder / TRANSCRIPT, {"format": "garbage", "edited": True})
    assert counted_run(ch, sub) is None  # the transcript changed after signing
    sign_run(ch, sub["id"], runner)
    unsigned = {k: v for k, v in sub.items() if k not in ("signature", "submitter_key")}
    assert counted_run(ch, unsigned) is None  # an unsigned submission names nobody
    renamed = {**sub, "runner_key": other.public_key}  # the name edited: signature breaks
    assert counted_run(ch, renamed) is None
    (folder / SIGNATURE).write_text("{not json")
    assert counted_run(ch, sub) is None


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
    assert decisions == {genuine["id"]: NOT_RELEASED, altered["id"]: "rejected",
                         ivy["id"]: NOT_RELEASED}  # alice leads with the same model
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

    assert results[ivy["id"]]["submitter_fingerprint"] is None
    challenge = Challenge.open(ch)
    assert all(verify_result(challenge, results[s["id"]]).verified for s in (genuine, ivy))


@pytest.mark.heavy
@pytest.mark.timeout(3600)
def test_sealed_desk_scores_from_counts_and_spot_checks_batches(world, capfd):
    """The zoo's XGBoost has a sealed circuit: the desk audits it sealed (20 hidden rows: two
    batches of 16, the second padded), scores from the decrypted counts, and spot-checks
    another server's sealed run batch by batch. Sealed keygen alone takes minutes."""
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
    note = notes.read(Identity.load(world["identity"]), "ch-sealed",
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
    tom, runner = root / "tom-identity", root / "tom-runner"
    for _ in range(2):
        assert in_process(capfd, "submit", "--challenge", str(ch), "--model", model,
                          "--submitter", "tom", "--identity", str(tom), "--runner-key",
                          Identity.open(runner).public_key)[0] == 0
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
    # The cheat publishes the first batch's counts as the run's total, transcript rewritten.
    from fhe_backend.sealed.circuit import COUNT, sealed_view
    from fhe_backend.untrusted.sandbox import IsolatedCircuit

    encrypted = EncryptedBenchmark.load(challenge.work_dir(cheat["id"]) / "encrypted")
    ((_, ciphertext), *_) = encrypted.ciphertexts()
    with IsolatedCircuit(sealed_view(package).server_zip,
                         encrypted.evaluation_keys_path.read_bytes()) as circuit:
        partial = circuit.run(ciphertext, function=COUNT)
    forge_outputs(run, [(TOTAL_ID, partial)])
    for sub in (honest, cheat):
        assert in_process(capfd, "challenge", "sign-run", "--challenge", str(ch),
                          "--submission", sub["id"], "--identity", str(runner))[0] == 0
    code, out, err = in_process(capfd, *base)  # a sealed run is checked whole
    assert code == 0, err
    assert {p["submission_id"]: p["decision"] for p in json.loads(out)["processed"]} == {
        honest["id"]: NOT_RELEASED, cheat["id"]: "void"}
    results = Challenge.open(str(ch)).results()
    spot = results[honest["id"]]["spot_check"]
    assert spot["unit"] == "batch" and spot["k"] == 2 and spot["ok"]
    assert spot["target"] == {"altered": 1, "power": 0.95, "chosen_by": "target",
                              "catch_probability": 1.0}
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
    remote = Challenge.open(ref)
    frank = remote.results()[sub_id]
    assert verify_result(remote, frank).verified and frank["decision"] == NOT_RELEASED

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


def test_one_identity_cannot_make_two_challenges_with_one_id(tmp_path, capfd):
    """`challenge init --id race` twice with one identity overwrote the first challenge's
    private notes (its desk then failed "Benchmark changed"), and a result signed for the second
    verified on the first's leaderboard."""
    from fhe_backend.challenge.store import RESULT_FORMAT, init_challenge
    from fhe_backend.errors import ChallengeError

    auditor = tmp_path / "auditor"

    def init(out: str, identity: Path = auditor) -> tuple[int, str]:
        code, _, err = in_process(capfd, "challenge", "init", "--benchmark",
                                  "breast-cancer-test", "--identity", str(identity), "--id",
                                  "race", "--out", str(tmp_path / out))
        return code, err

    assert init("a") == (0, "")
    before = notes.read(Identity.load(auditor), "race", "challenge")
    code, err = init("b")
    assert code == 2 and "already has a challenge 'race'" in err
    assert notes.read(Identity.load(auditor), "race", "challenge") == before
    assert not (tmp_path / "b" / "challenge.json").exists()

    # the same key in a copied identity folder makes another "race": results do not cross
    shutil.copytree(auditor, tmp_path / "copy", ignore=shutil.ignore_patterns("challenges"))
    assert init("c", tmp_path / "copy")[0] == 0
    first, second = Challenge.open(str(tmp_path / "a")), Challenge.open(str(tmp_path / "c"))
    assert first.challenge_id == second.challenge_id and first.public_key == second.public_key
    result = Identity.load(tmp_path / "copy").sign_document({
        "format": RESULT_FORMAT, "challenge": "race", "challenge_sha256": second.fingerprint,
        "submission_id": "x", "submitter": "eve", "transcript": None, "decision": "released",
        "score": 0.99})
    assert verify_result(second, result).verified
    check = verify_result(first, result)
    assert not check.verified and "another challenge" in check.reason
    # nor does the desk take it as the result of a submission of the first challenge
    from fhe_backend.challenge.desk import Desk

    sub = first.submit("eve", FAST_MODEL)
    os.remove(first.path / "submissions" / f"{sub['id']}.json")
    sub = {**sub, "submitted_at": "2099-01-01T00:00:00+00:00"}
    write_json(first.path / "submissions" / f"{sub['id']}.json", sub)
    write_json(first.result_path(sub["id"]), Identity.load(tmp_path / "copy").sign_document(
        {**result, "submission_id": sub["id"]}))
    assert Challenge.open(str(first.path)).pending() != []
    done = Desk(Challenge.open(str(first.path)), tmp_path / "keys", Identity.load(auditor),
                mode="per-sample").process(sub)
    assert done["decision"] == "rejected" and done["challenge_sha256"] == first.fingerprint

    # a notes folder that is a symbolic link is never followed, nor its target chmodded
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    os.chmod(elsewhere, 0o755)
    linked = Identity.open(tmp_path / "linked")
    os.symlink(elsewhere, linked.path / "challenges")
    with pytest.raises(ChallengeError, match="not a plain folder"):
        init_challenge("breast-cancer-test", "accuracy", "ladder:0.01", "3/day", linked,
                       tmp_path / "d", "race")
    assert oct(elsewhere.stat().st_mode & 0o777) == "0o755" and not any(elsewhere.iterdir())
    notes_of_a = auditor / "challenges" / "race"
    shutil.move(notes_of_a, elsewhere / "race")
    os.symlink(elsewhere / "race", notes_of_a)
    with pytest.raises(ChallengeError, match="not a plain folder"):
        notes.read(Identity.load(auditor), "race", "challenge")


def test_a_rejected_file_uses_no_quota(world, tmp_path):
    """A back-dated file the desk rejected used alice's one daily slot: her real submission
    was then "over the quota". Only accepted submissions count."""
    from datetime import timedelta

    from fhe_backend.challenge.desk import Desk
    from fhe_backend.challenge.store import init_challenge

    auditor = Identity.open(tmp_path / "auditor")
    ch = init_challenge(str(world["hidden"]), "accuracy", "ladder:0.01", "1/day", auditor,
                        tmp_path / "ch")
    genuine = ch.submit("alice", FAST_MODEL)
    os.remove(ch.path / "submissions" / f"{genuine['id']}.json")
    created = datetime.fromisoformat(ch.data["created_at"])
    back = created - timedelta(minutes=30)
    if back.date() != datetime.now(UTC).date():
        pytest.skip("too close to midnight (UTC) for a back-dated file of the same day")
    forged = {**genuine, "submitted_at": back.isoformat(),
              "id": f"{back:%Y%m%dT%H%M%S%f}-alice-{genuine['id'][-6:]}"}
    write_json(ch.path / "submissions" / f"{forged['id']}.json", forged)
    report = Desk(Challenge.open(str(ch.path)), world["keys"], auditor,
                  mode="per-sample").process_pending()
    assert [r["decision"] for r in report.processed] == ["rejected"]
    real = Challenge.open(str(ch.path)).submit("alice", FAST_MODEL)  # was: over the quota
    report = Desk(Challenge.open(str(ch.path)), world["keys"], auditor,
                  mode="per-sample").process_pending()
    assert [(r["submission_id"], r["decision"]) for r in report.processed] == [
        (real["id"], "released")]


def test_the_budget_caps_evaluations_whoever_asks(world, tmp_path, capfd):
    """Names are free, so a per-name quota does not bound the evaluations an attacker gets:
    the challenge's daily budget does, and what is over it waits for the next UTC day."""
    from fhe_backend.challenge.store import init_challenge
    from fhe_backend.errors import ChallengeError

    auditor = Identity.open(tmp_path / "auditor")
    with pytest.raises(ChallengeError, match="Unknown budget"):
        init_challenge(str(world["hidden"]), "accuracy", "ladder:0.01", "9/day", auditor,
                       tmp_path / "bad", budget="lots")
    ch = init_challenge(str(world["hidden"]), "accuracy", "ladder:0.01", "9/day", auditor,
                        tmp_path / "ch", budget="1/day")
    assert Challenge.open(str(ch.path)).budget.per_day == 1
    for name in ("sybil1", "sybil2", "sybil3"):
        ch.submit(name, FAST_MODEL)
    code, out, err = in_process(capfd, "desk", "--challenge", str(ch.path), "--keys",
                                str(world["keys"]), "--identity", str(auditor.path), "--once",
                                "--mode", "per-sample")
    assert code == 0, err
    assert "Processed 1 submission(s)" in out and "2 deferred" in out
    assert len(Challenge.open(str(ch.path)).pending()) == 2
    unlimited = init_challenge(str(world["hidden"]), "accuracy", "ladder:0.01", "9/day",
                               auditor, tmp_path / "open", budget="none")
    assert unlimited.budget is None and unlimited.data["budget"] is None


def test_attack_sim_prints_each_policys_inflation(capfd):
    code, out, err = in_process(capfd, "challenge", "attack-sim", "--n", "171", "--submissions",
                                "300", "--policy", "raw,ladder:0.01,ladder:auto", "--trials",
                                "3", "--json")
    assert code == 0, err
    outcomes = {o["policy"]: o for o in json.loads(out)["outcomes"]}
    assert list(outcomes) == ["raw", "ladder:0.01", "ladder:auto"]
    # seed 0, 3 trials: raw 0.768, ladder:0.01 0.617, ladder:auto 0.589
    assert outcomes["raw"]["board"] > 0.72  # random labels, majority vote: inflated
    assert outcomes["ladder:0.01"]["board"] < outcomes["raw"]["board"] - 0.1
    assert outcomes["ladder:auto"]["board"] < outcomes["raw"]["board"] - 0.1
    for o in outcomes.values():
        assert abs(o["fresh"] - 0.5) < 0.1 and o["inflation"] == pytest.approx(
            o["board"] - 0.5, abs=1e-4)
    code, out, _ = in_process(capfd, "challenge", "attack-sim", "--submissions", "50",
                              "--trials", "1")
    assert code == 0 and "inflation" in out and "ladder:auto" in out
    code, _, err = in_process(capfd, "challenge", "attack-sim", "--policy", "ladder:1.5")
    assert code == 2 and "ladder step" in err


def test_policies_intervals_and_catch_probability():
    ladder = Policy.parse("ladder:0.01")
    first = ladder.release(0.9123, None, 100)
    assert first.released == 0.91 and first.decision == "released"
    held = ladder.release(0.915, Leader(0.91), 100)
    assert held.released is None and held.decision == NOT_RELEASED and held.previous_best == 0.91
    assert ladder.release(0.9301, Leader(0.91), 100).released == 0.93
    assert Policy.parse("round:2").release(0.91234, Leader(0.99), 100).released == 0.91
    # Wilson 95% for 0.5 on 100 samples (textbook value 0.4038, 0.5962)
    assert wilson_interval(0.5, 100) == [0.4038, 0.5962]
    # the published interval: from the raw score, ends rounded outward to the step
    # (statsmodels' proportion_confint(162, 171, method="wilson"): 0.90301, 0.97207)
    assert wilson_interval(162 / 171, 171) == [0.903, 0.9721]
    assert published_interval(162 / 171, 171, 0.01) == [0.9, 0.98]
    assert published_interval(162 / 171, 171, 0.05) == [0.9, 1.0]
    assert catch_probability(171, 18, 20) == pytest.approx(
        1 - np.prod([(171 - 18 - i) / (171 - i) for i in range(20)]))
    assert catch_probability(100, 0, 20) == 0.0 and catch_probability(10, 1, 10) == 1.0
    digest, salt = commit_score(0.9)
    assert commit_score(0.9, bytes.fromhex(salt))[0] == digest != commit_score(0.9)[0]


def test_ladder_auto_releases_only_past_one_paired_standard_error():
    from fhe_backend.errors import ChallengeError

    auto = Policy.parse("ladder:auto")
    assert str(auto) == "ladder:auto" and auto.resolution == 0.01
    n = 200
    leader_correct = np.r_[np.ones(150), np.zeros(50)].astype(np.int8)
    assert auto.release(0.75, None, n, leader_correct).released == 0.75  # no leader yet
    leader = Leader(0.75, leader_correct)
    # two more right answers, nothing else changed: differences (0,...,1,1) have a standard
    # error of 0.0071, below the 0.01 gain: released
    better = leader_correct.copy()
    better[150:152] = 1
    decision = auto.release(0.76, leader, n, better)
    assert decision.released == 0.76 and decision.margin == pytest.approx(
        np.std(better - leader_correct, ddof=1) / np.sqrt(n))
    # the same gain by trading 20 right answers for 22 others: the standard error (0.032)
    # exceeds it: not released
    shuffled = leader_correct.copy()
    shuffled[:20] = 0
    shuffled[150:172] = 1
    assert auto.release(0.76, leader, n, shuffled).decision == NOT_RELEASED
    # without per-sample correctness (a sealed run) the unpaired standard error is used
    unpaired = auto.release(0.76, leader, n, None)
    assert unpaired.decision == NOT_RELEASED and unpaired.margin == pytest.approx(
        np.sqrt((0.76 * 0.24 + 0.75 * 0.25) / n))
    with pytest.raises(ChallengeError, match="ladder:auto needs a per-sample score"):
        from fhe_backend.challenge.store import check_settings

        check_settings("f1", "ladder:auto", "3/day")


def test_spot_check_is_sized_to_catch_one_release_step():
    """k = 20 of 171: a server altering 5 outputs (three ladder steps) escaped half the time,
    1 output 88% of the time. k now comes from a target: 95% to catch ceil(step x n)."""
    from fhe_backend.challenge.spotcheck import altered_share_bound, plan, size_for

    assert catch_probability(171, 5, 20) < 0.5 and catch_probability(171, 1, 20) < 0.12
    assert size_for(171, 2) == 133 and size_for(171, 5) == 77  # the statistics notes' values
    sized = plan(171, 171, 0.01)
    assert (sized.k, sized.altered, sized.chosen_by) == (133, 2, "target")
    assert catch_probability(171, 2, sized.k) >= 0.95 > catch_probability(171, 2, sized.k - 1)
    assert plan(171, 171, 0.05).altered == 9
    # sealed: 171 samples in 11 batches; 2 samples can sit in one batch: every batch is checked
    assert (plan(11, 171, 0.01).k, plan(11, 171, 0.01).altered) == (11, 1)
    assert plan(171, 171, 0.01, k=20).to_dict()["chosen_by"] == "auditor"
    # what a pass of 133 implies: at most 1 of 171 altered (95%); of 171 (everything): none
    assert altered_share_bound(171, 133) == round(1 / 171, 4)
    assert altered_share_bound(171, 171) == 0.0
    assert altered_share_bound(171, 20) > 0.12


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


def test_a_void_spot_check_names_no_hidden_sample_and_uses_the_budget(world, capfd):
    """A runner who publishes chosen outputs (here sample 0's output for every sample) got a
    signed, public void naming each hidden sample whose model answer differed from the planted
    one: a per-sample reading of the hidden set, which the budget did not count either."""
    ch = str(world["challenge"])
    frank, runner = world["root"] / "frank-identity", world["root"] / "frank-runner"
    key = Identity.open(runner).public_key
    assert in_process(capfd, "submit", "--challenge", ch, "--model", FAST_MODEL, "--submitter",
                      "frank", "--identity", str(frank), "--runner-key", key)[0] == 0
    assert in_process(capfd, *desk(world, "--wait-for-runs"))[0] == 0
    challenge = Challenge.open(ch)
    (sub,) = [s for s in challenge.pending() if s["submitter"] == "frank"]
    encrypted = EncryptedBenchmark.load(challenge.work_dir(sub["id"]) / "encrypted")
    run = FHEServer(resolve_model(FAST_MODEL)).run(encrypted, challenge.external_run(sub["id"]))
    rows = run.outputs()
    forge_outputs(run, [(sid, rows[0][1]) for sid, _ in rows])
    assert in_process(capfd, "challenge", "sign-run", "--challenge", ch, "--submission",
                      sub["id"], "--identity", str(runner))[0] == 0
    today = datetime.now(UTC).date()
    before = Challenge.open(ch).evaluations(today)
    every = str(encrypted.manifest.n_samples)
    assert in_process(capfd, *desk(world, "--spot-check", every))[0] == 0
    void = Challenge.open(ch).results()[sub["id"]]
    assert void["decision"] == "void" and void["spot_check"]["decrypted"] > 0
    public = json.dumps({k: v for k, v in void.items() if k != "_file"})
    named = {sid for sid, _ in rows if f"sample {sid}" in public}
    assert not named, named
    assert Challenge.open(ch).evaluations(today) == before + 1


@pytest.mark.parametrize("fields", [{"benchmark": None}, {"benchmark": 5},
                                    {"id": "<img src=x onerror=alert(1)>"},
                                    {"metric": ["accuracy"]}])
def test_a_self_signed_challenge_of_the_wrong_shape_is_refused_in_one_sentence(
        fields, tmp_path, capfd):
    """Anyone can sign a challenge.json with their own key: one without a benchmark was a
    KeyError traceback in leaderboard, an id of HTML went into the Space's card."""
    from hostile import self_signed_challenge

    folder = self_signed_challenge(tmp_path / "ch", Identity.open(tmp_path / "me"), **fields)
    code, _, err = in_process(capfd, "leaderboard", "--challenge", str(folder))
    assert code == 2 and "Traceback" not in err and "challenge.json has a malformed" in err
    assert len(err.strip().splitlines()) == 1


def test_a_well_formed_self_signed_challenge_opens(tmp_path):
    from hostile import self_signed_challenge

    folder = self_signed_challenge(tmp_path / "ch", Identity.open(tmp_path / "me"))
    assert Challenge.open(str(folder)).challenge_id == "ch"


def test_a_mirror_of_another_challenge_is_refused(tmp_path, monkeypatch):
    """pull checked the mirror's key after copying the repo's challenge.json over it, so it
    compared the repo's file with itself: a mirror left by another challenge of that repo name
    was taken over, its work and receipts included."""
    from hostile import self_signed_challenge

    from fhe_backend.challenge import mirror
    from fhe_backend.hub.remote import HubError

    monkeypatch.setenv("FHE_AUDIT_HOME", str(tmp_path / "home"))
    ref = "hf://datasets/someone/race"
    old = self_signed_challenge(tmp_path / "old", Identity.open(tmp_path / "a"))
    new = self_signed_challenge(tmp_path / "new", Identity.open(tmp_path / "b"))
    mirror.pull(Challenge(old, Challenge.open(str(old)).data, ref))
    with pytest.raises(HubError, match="belongs to another challenge"):
        mirror.pull(Challenge(new, Challenge.open(str(new)).data, ref))
    assert mirror.pull(Challenge(old, Challenge.open(str(old)).data, ref)).public_key == (
        Identity.open(tmp_path / "a").public_key)


def test_an_edited_receipt_is_received_again_not_a_traceback(world, capfd):
    """work/receipts.json holding a number for a submission made the desk's ordering a
    TypeError; an entry that is not a time the desk wrote is received again, now."""
    from fhe_backend.challenge.desk import RECEIPTS

    ch = Challenge.open(str(world["challenge"]))
    first = ch.submit("receipt-one", FAST_MODEL)
    ch.submit("receipt-two", FAST_MODEL)
    path = ch.path / "work" / RECEIPTS
    path.parent.mkdir(exist_ok=True)
    known = json.loads(path.read_text()) if path.is_file() else {}
    path.write_text(json.dumps({**known, first["id"]: 5}))
    code, _, err = in_process(capfd, *desk(world))
    assert code == 0 and "Traceback" not in err, err
    results = Challenge.open(str(world["challenge"])).results()
    assert day_of(results[first["id"]]["received_at"]) == datetime.now(UTC).date()
