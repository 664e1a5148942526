"""Dismissing a dead letter: over HTTP (and its OpenAPI declaration), from the CLI, against a
racing replay, and the database's own checks of the resolution columns."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import httpx
import psycopg
import pytest

from opus import cli
from shared.db.pool import Pool
from shared.deadletters import MAX_NOTE_LENGTH, dismissal_note
from shared.errors import InvalidRequestError
from tests.api.conftest import Keys

DEAD_LETTERS = "/api/v2/dead-letters"


def add_letter(conn: psycopg.Connection[Any], message_id: str = "m-1") -> int:
    """An outstanding consolidate message (a body replay would send)."""
    row = conn.execute(
        """INSERT INTO dead_letters (source, queue, message_id, body, reason, delivery_count)
           VALUES ('local', 'consolidate', %s, %s, 'MaxDeliveryCountExceeded', 5) RETURNING id""",
        (message_id, json.dumps({"feed": "nivoda-natural", "run_id": str(uuid.uuid4()), "trace_id": "t"})),
    ).fetchone()
    assert row is not None
    letter: int = row[0]
    return letter


def sent(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT count(*) FROM bus_messages WHERE queue = 'consolidate'").fetchone()
    assert row is not None
    count: int = row[0]
    return count


def admin(keys: Keys) -> dict[str, str]:
    return {"X-API-Key": keys.admin}


def error(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()["error"]
    return body


def test_a_dismissed_letter_leaves_the_outstanding_list_with_its_note(
    db: Pool, http: httpx.Client, keys: Keys, sync_db: psycopg.Connection[Any]
) -> None:
    letter, other = add_letter(sync_db, "m-1"), add_letter(sync_db, "m-2")
    note = {"note": "  poison body: fixed upstream, nothing to resend  "}
    assert http.post(f"{DEAD_LETTERS}/{letter}/dismiss", json=note, headers={"X-API-Key": keys.read}).status_code == 403

    response = http.post(f"{DEAD_LETTERS}/{letter}/dismiss", json=note, headers=admin(keys))

    assert response.status_code == 200, response.text
    dismissed = response.json()["data"]
    assert (dismissed["id"], dismissed["dismissal_note"]) == (letter, "poison body: fixed upstream, nothing to resend")
    assert dismissed["dismissed_at"] is not None
    assert (dismissed["replayed_at"], dismissed["replay_message_id"]) == (None, None)
    outstanding = http.get(DEAD_LETTERS, headers=admin(keys)).json()["data"]
    assert [d["id"] for d in outstanding] == [other]
    resolved = http.get(DEAD_LETTERS, params={"include_replayed": "true"}, headers=admin(keys)).json()["data"]
    assert {d["id"]: d["dismissal_note"] for d in resolved} == {
        letter: "poison body: fixed upstream, nothing to resend",
        other: None,
    }
    assert sent(sync_db) == 0, "a dismissal sends nothing"


def test_a_letter_is_resolved_once_replayed_or_dismissed(
    db: Pool, http: httpx.Client, keys: Keys, sync_db: psycopg.Connection[Any]
) -> None:
    dismissed, replayed = add_letter(sync_db, "m-1"), add_letter(sync_db, "m-2")
    assert http.post(f"{DEAD_LETTERS}/{dismissed}/dismiss", json={"note": "handled"}, headers=admin(keys)).is_success
    assert http.post(f"{DEAD_LETTERS}/{replayed}/replay", headers=admin(keys)).status_code == 202

    again = error(http.post(f"{DEAD_LETTERS}/{dismissed}/dismiss", json={"note": "twice"}, headers=admin(keys)), 409)
    assert again["message"].startswith(f"dead letter {dismissed} was already dismissed at ")
    assert again["message"].endswith("with the note 'handled'")
    refused = error(http.post(f"{DEAD_LETTERS}/{dismissed}/replay", headers=admin(keys)), 409)
    assert f"dead letter {dismissed} was already dismissed at " in refused["message"]
    assert sent(sync_db) == 1, "only the replayed letter was sent"
    late = error(http.post(f"{DEAD_LETTERS}/{replayed}/dismiss", json={"note": "late"}, headers=admin(keys)), 409)
    assert late["message"].startswith(f"dead letter {replayed} was already replayed at ")
    assert late["message"].endswith(f" as m-2:replay-{replayed}")
    missing = error(http.post(f"{DEAD_LETTERS}/999999/dismiss", json={"note": "gone"}, headers=admin(keys)), 404)
    assert missing["message"] == "dead letter 999999 does not exist"
    rows = sync_db.execute("SELECT id, dismissal_note, replayed_at IS NOT NULL FROM dead_letters ORDER BY id")
    assert rows.fetchall() == [(dismissed, "handled", False), (replayed, None, True)]


@pytest.mark.parametrize(
    ("body", "parameter", "message"),
    [
        (None, "body", "Field required"),
        ({}, "note", "Field required"),
        ({"note": ""}, "note", "String should have at least 1 character"),
        ({"note": " \t\n "}, "note", "the note is blank: say why the dead letter is dismissed"),
        ({"note": "x" * (MAX_NOTE_LENGTH + 1)}, "note", f"String should have at most {MAX_NOTE_LENGTH} characters"),
        ({"note": "ok", "by": "me"}, "by", "Extra inputs are not permitted"),
    ],
)
def test_a_dismissal_without_a_usable_note_is_a_422_naming_it(
    db: Pool,
    http: httpx.Client,
    keys: Keys,
    sync_db: psycopg.Connection[Any],
    body: dict[str, Any] | None,
    parameter: str,
    message: str,
) -> None:
    letter = add_letter(sync_db)
    refused = error(http.post(f"{DEAD_LETTERS}/{letter}/dismiss", json=body, headers=admin(keys)), 422)
    assert [(d["parameter"], d["message"]) for d in refused["details"]] == [(parameter, message)]
    assert [d["id"] for d in http.get(DEAD_LETTERS, headers=admin(keys)).json()["data"]] == [letter]


@pytest.mark.parametrize(
    ("note", "message"),
    [
        ("", "a note is required"),
        ("  \n ", "a note is required"),
        ("x" * (MAX_NOTE_LENGTH + 1), f"the note has {MAX_NOTE_LENGTH + 1} characters; at most {MAX_NOTE_LENGTH}"),
        ("a\x00b", "NUL"),
        ("caf\udce9", "not valid UTF-8"),  # a Latin-1 terminal's byte, as Python keeps it from argv
    ],
)
def test_the_service_refuses_a_note_it_cannot_store(note: str, message: str) -> None:
    with pytest.raises(InvalidRequestError, match=message):
        dismissal_note(note)


def test_the_service_trims_the_note_and_takes_the_longest() -> None:
    longest = "y" * MAX_NOTE_LENGTH
    assert dismissal_note(f"\t{longest} \n") == longest


def test_the_openapi_document_declares_dismiss_like_replay(http: httpx.Client) -> None:
    paths = http.get("/api/v2/openapi.json").json()["paths"]
    dismiss = paths["/api/v2/dead-letters/{dead_letter_id}/dismiss"]["post"]
    replay = paths["/api/v2/dead-letters/{dead_letter_id}/replay"]["post"]
    assert set(dismiss["responses"]) == set(replay["responses"]) - {"202", "400"} | {"200"}
    assert {"401", "403", "404", "409", "422", "429", "503"} <= set(dismiss["responses"])
    assert dismiss["requestBody"]["required"] is True
    assert dismiss["security"] == replay["security"]
    listing = {p["name"]: p for p in paths["/api/v2/dead-letters"]["get"]["parameters"]}
    assert "dismissed" in listing["include_replayed"]["description"]


async def _lock_waiters(pool: Pool) -> int:
    async with pool.connection() as conn:
        cur = await conn.execute(
            """SELECT count(*) FROM pg_stat_activity
               WHERE wait_event_type = 'Lock' AND query LIKE '%%dead_letters%%'"""
        )
        row = await cur.fetchone()
    return row[0] if row else 0


async def test_a_racing_replay_and_dismissal_cannot_both_win(
    db: Pool, ahttp: httpx.AsyncClient, keys: Keys, sync_db: psycopg.Connection[Any], database_url: str
) -> None:
    letter = add_letter(sync_db)
    async with await psycopg.AsyncConnection.connect(database_url) as holder:
        # Both requests find the letter outstanding only if neither waits for the other's lock.
        await holder.execute("SELECT 1 FROM dead_letters WHERE id = %s FOR UPDATE", (letter,))
        replaying = asyncio.create_task(ahttp.post(f"{DEAD_LETTERS}/{letter}/replay", headers=admin(keys)))
        dismissing = asyncio.create_task(
            ahttp.post(f"{DEAD_LETTERS}/{letter}/dismiss", json={"note": "racing"}, headers=admin(keys))
        )
        while await _lock_waiters(db) < 2 and not (replaying.done() or dismissing.done()):  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        await holder.commit()
        replayed, dismissed = await replaying, await dismissing

    assert sorted([replayed.status_code, dismissed.status_code]) in ([200, 409], [202, 409])
    loser = replayed if replayed.status_code == 409 else dismissed
    assert f"dead letter {letter} was already " in loser.json()["error"]["message"]
    row = sync_db.execute("SELECT replayed_at IS NOT NULL, dismissed_at IS NOT NULL FROM dead_letters").fetchone()
    assert row == (replayed.status_code == 202, dismissed.status_code == 200)
    assert sent(sync_db) == (1 if replayed.status_code == 202 else 0)


@pytest.mark.parametrize(
    "assignment",
    [
        "replayed_at = now(), replay_message_id = 'r', dismissed_at = now(), dismissal_note = 'both'",
        "dismissed_at = now(), dismissal_note = '  '",
        f"dismissed_at = now(), dismissal_note = repeat('x', {MAX_NOTE_LENGTH + 1})",
        "dismissed_at = now()",
        "dismissal_note = 'no time'",
    ],
)
def test_the_database_refuses_an_impossible_resolution(
    db: Pool, sync_db: psycopg.Connection[Any], assignment: str
) -> None:
    letter = add_letter(sync_db)
    with pytest.raises(psycopg.errors.CheckViolation):
        sync_db.execute(f"UPDATE dead_letters SET {assignment} WHERE id = %s", (letter,))


# --- the CLI --------------------------------------------------------------------------------------
def test_the_cli_dismisses_once_and_lists_the_resolution(
    db: Pool, cli_env: None, sync_db: psycopg.Connection[Any], capsys: pytest.CaptureFixture[str]
) -> None:
    letter = add_letter(sync_db, "poison-cli")
    assert cli.main(["dead-letters", "--dismiss", str(letter), "--note", " [red]handled[/red] by hand "]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"dead letter {letter} dismissed at ")
    assert out.rstrip().endswith("with the note '[red]handled[/red] by hand'"), "the note is printed as given"

    assert cli.main(["dead-letters", "--dismiss", str(letter), "--note", "again"]) == 1
    assert capsys.readouterr().err.startswith(f"error: dead letter {letter} was already dismissed at ")
    assert cli.main(["dead-letters", "--dismiss", "999999", "--note", "gone"]) == 1
    assert capsys.readouterr().err == "error: dead letter 999999 does not exist\n"
    assert cli.main(["dead-letters", "--dismiss", str(add_letter(sync_db, "blank")), "--note", "  "]) == 1
    assert capsys.readouterr().err == "error: a note is required: say why the dead letter is dismissed\n"
    # A note typed on a terminal whose encoding is not UTF-8: refused, not a traceback from the driver.
    assert cli.main(["dead-letters", "--dismiss", str(add_letter(sync_db, "latin-1")), "--note", "caf\udce9"]) == 1
    assert capsys.readouterr().err == "error: the note is not valid UTF-8 text\n"

    assert cli.main(["dead-letters"]) == 0
    listing = capsys.readouterr().out
    assert "blank" in listing
    assert "poison-cli" not in listing
    assert cli.main(["dead-letters", "--all"]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if "poison-cli" in line)
    assert "dismissed" in row
    assert "by hand" in row


def test_the_cli_lists_notes_and_errors_as_given_not_as_markup(
    db: Pool, cli_env: None, sync_db: psycopg.Connection[Any], capsys: pytest.CaptureFixture[str]
) -> None:
    letter = add_letter(sync_db, "id[/i]")
    sync_db.execute("UPDATE dead_letters SET description = 'bad [/b] body' WHERE id = %s", (letter,))
    assert cli.main(["dead-letters"]) == 0
    listing = capsys.readouterr().out
    assert "id[/i]" in listing
    assert "[/b]" in listing
    assert cli.main(["dead-letters", "--dismiss", str(letter), "--note", "see [/x]"]) == 0
    capsys.readouterr()

    assert cli.main(["dead-letters", "--all"]) == 0
    assert "see [/x]" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--note", "why"], "opus dead-letters: error: argument --note: only with --dismiss ID"),
        (["--replay", "1", "--note", "why"], "opus dead-letters: error: argument --note: only with --dismiss ID"),
        (
            ["--dismiss", "1"],
            "opus dead-letters: error: argument --dismiss: needs --note TEXT (why the dead letter is dismissed)",
        ),
        (
            ["--replay", "1", "--dismiss", "2", "--note", "why"],
            "opus dead-letters: error: argument --dismiss: not allowed with argument --replay",
        ),
    ],
)
def test_the_cli_refuses_dismiss_and_note_apart(
    cli_env: None, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["dead-letters", *args])
    assert exited.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == message


def test_the_cli_says_what_it_did_not_find_and_refuses_a_queue_the_app_does_not_have(
    db: Pool, cli_env: None, sync_db: psycopg.Connection[Any], capsys: pytest.CaptureFixture[str]
) -> None:
    dismissed = add_letter(sync_db, "handled")
    assert cli.main(["dead-letters", "--dismiss", str(dismissed), "--note", "handled"]) == 0
    capsys.readouterr()
    assert cli.main(["dead-letters", "--queue", "consolidate"]) == 0
    assert capsys.readouterr().out == "no outstanding dead letters on consolidate\n"
    assert cli.main(["dead-letters", "--all"]) == 0
    assert "handled" in capsys.readouterr().out
    # A typo must not read as "nothing to see".
    assert cli.main(["dead-letters", "--queue", "consolidat"]) == 1
    assert capsys.readouterr().err == (
        "error: no outstanding dead letters on 'consolidat', which is not a queue of this app "
        "(work-items, work-done, consolidate)\n"
    )
