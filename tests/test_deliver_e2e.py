"""The slow delivery runs, kept in one place: 10,000 messages through the loopback SMTP server, and
``dmops deliver`` killed with SIGKILL at random moments against a slow server, then run again (SPEC §11)."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.mailserver import PASSWORD, USER, MailServer
from tests.planning import run_cli as run
from tests.planning import write
from tests.test_deliver_smtp import AT, transports
from tests.test_send import WS

CAMPAIGN = """\
id: promo
name: Promo
channel: email
sender: {from: "Shop <news@shop.example.com>"}
unsubscribe_url: "https://shop.example.com/u/{{ unsubscribe_token }}"
send_at: "2026-12-01 10:00"
variants:
  - id: a
    subject: "Hi {{ first_name }}"
    text: "Hello {{ first_name }}. Bye: {{ unsubscribe_url }}"
"""


def people(n: int) -> str:
    rows = ["contact_id,first_name,email,phone,email_opt_in,sms_opt_in,tier"]
    rows += [f"{i:05d},N{i},u{i}@example.com,,yes,no,gold" for i in range(n)]
    return "\n".join(rows) + "\n"


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.setenv("DMOPS_SMTP_USER", USER)
    monkeypatch.setenv("DMOPS_SMTP_PASSWORD", PASSWORD)
    return dict(os.environ)


def _workspace(folder: Path, server: MailServer, n: int, **extra: str) -> Path:
    root = write(
        folder,
        {
            "dmops.yaml": WS + transports(server.port, **extra),
            "contacts.csv": people(n),
            "campaigns/promo.yaml": CAMPAIGN,
        },
    )
    assert run(root, "send", "promo", "--at", "2026-11-30T12:00")[0] == 0
    return root


def _outbox(root: Path) -> dict[str, dict]:
    return {
        m["message_id"]: m
        for f in (root / "outbox").rglob("messages.jsonl")
        for m in map(json.loads, f.read_text().splitlines())
    }


def test_ten_thousand_messages_are_each_received_once_intact(tmp_path: Path, env: dict[str, str]) -> None:
    (tmp_path / "ws").mkdir()
    with MailServer(tmp_path / "ws") as server:
        root = _workspace(tmp_path / "ws", server, 10_000, max_connections="4")
        messages = _outbox(root)
        assert len(messages) == 10_000
        started = time.perf_counter()
        code, output = run(root, "deliver", "--at", AT, "--format", "json")
        took = time.perf_counter() - started
        assert code == 0, output
        assert json.loads(output)["transports"][0]["states"] == {"accepted": 10_000}
        received = list(server.received)
    ids = Counter()
    for r in received:
        head = r.data.split(b"\r\n\r\n", 1)[0].decode()
        fields = dict(line.split(": ", 1) for line in head.replace("\r\n ", " ").split("\r\n") if ": " in line)
        message_id = fields["X-Dmops-Message-Id"]
        ids[message_id] += 1
        sent = messages[message_id]
        assert r.sender == f"bounces+{message_id}@bounces.shop.example.com"
        assert r.recipient == sent["to"]
        assert fields["Message-ID"] == f"<{message_id}@shop.example.com>"
        assert fields["List-Unsubscribe"] == sent["headers"]["List-Unsubscribe"]
        assert fields["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert set(ids) == set(messages) and set(ids.values()) == {1}
    print(f"10,000 messages in {took:.1f} s ({10_000 / took:,.0f}/s)")


def _journal_lines(root: Path) -> list[tuple[str, dict]]:
    return [
        (p.name, json.loads(line))
        for p in sorted((root / ".dmops" / "deliveries").glob("run-*.jsonl"))
        for line in p.read_text().splitlines()
    ]


def test_kill_9_at_random_moments_loses_nothing_and_repeats_only_in_doubt_messages(
    tmp_path: Path, env: dict[str, str]
) -> None:
    seed = int(os.environ.get("DMOPS_KILL_SEED", time.time_ns() % 10_000))
    rng = random.Random(seed)
    (tmp_path / "ws").mkdir()
    # A slow server (10 ms before each reply to DATA). Each run is killed once its journal holds a random
    # number of lines (a moment inside the delivery, whatever the machine's speed), so every kill lands
    # while messages are in flight, and 8 runs cannot hand over all 2,000 messages.
    with MailServer(tmp_path / "ws", delay=0.01) as server:
        root = _workspace(tmp_path / "ws", server, 2000, max_connections="4")
        messages = _outbox(root)
        command = [sys.executable, "-m", "dmops", "-w", str(root), "deliver", "--at", AT]
        journals = root / ".dmops" / "deliveries"
        kills = 0
        while kills < 8:
            before = set(journals.glob("run-*.jsonl")) if journals.is_dir() else set()
            target = rng.randint(5, 300)
            process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            deadline = time.monotonic() + 60
            while process.poll() is None and time.monotonic() < deadline:
                new = [p for p in journals.glob("run-*.jsonl") if p not in before] if journals.is_dir() else []
                if new and new[0].read_bytes().count(b"\n") >= target:
                    break
                time.sleep(0.005)
            if process.poll() is not None:
                break  # it finished before this kill: everything is handed over
            os.kill(process.pid, signal.SIGKILL)
            process.wait()
            kills += 1
        finished = subprocess.run(command, env=env, capture_output=True, text=True)
        assert finished.returncode == 0, finished.stdout + finished.stderr
        lines = _journal_lines(root)
        ever_in_doubt = {line["message_id"] for _, line in lines if line["state"] == "in_doubt"}
        resent = subprocess.run([*command, "--in-doubt", "resend"], env=env, capture_output=True, text=True)
        assert resent.returncode == 0, resent.stdout + resent.stderr
        received = Counter(r.message["X-Dmops-Message-Id"] for r in server.received)
    lines = _journal_lines(root)
    note = f"(seed {seed}, {kills} kills)"
    assert kills == 8, note  # every run was killed, none finished
    assert set(received) == set(messages), note  # every due message was received at least once
    twice = {m for m, n in received.items() if n > 1}
    assert twice <= ever_in_doubt, note  # duplicates only among messages recorded in doubt
    recovered = Counter(name for name, line in lines if line.get("detail") == "interrupted in flight")
    assert len(recovered) >= 3, note  # several kills landed while messages were in flight
    assert max(recovered.values()) <= 4, note  # at most max_connections in doubt per kill
    in_flight = {line["message_id"] for _, line in lines if line["state"] == "in_flight"}
    assert set(received) <= in_flight, note  # nothing reached the server before it was recorded in flight
    final: dict[str, str] = {}
    for _, line in lines:
        final[line["message_id"]] = line["state"]
    assert set(final.values()) == {"accepted"} and set(final) == set(messages), note  # states and server agree
