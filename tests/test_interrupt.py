"""Errors and Ctrl-C end every command the same way: one function prints them and picks the exit code."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pytest
from typer.testing import CliRunner

from dmops.cli import Options, app, exit_code_for
from dmops.errors import IOFailure
from tests.planning import write
from tests.test_send import EMAIL, WS, contacts


def test_the_clock_is_the_one_the_context_gives(tmp_path: Path) -> None:
    root = write(tmp_path, {"dmops.yaml": WS, "contacts.csv": contacts(3), "campaigns/promo.yaml": EMAIL})
    fixed = datetime(2027, 3, 4, 5, 6, 7, tzinfo=UTC)
    result = CliRunner().invoke(
        app, ["-w", str(root), "plan", "promo", "--format", "json"], obj=Options(now=lambda: fixed)
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["at"] == "2027-03-04T05:06:07Z"


def test_an_interruption_inside_a_dmops_error_is_still_an_interruption(capsys) -> None:
    try:
        try:
            raise duckdb.InterruptException("INTERRUPT Error: Interrupted!")
        except duckdb.Error:
            raise IOFailure("cannot read the ledger (InterruptException)") from None
    except IOFailure as wrapped:
        code = exit_code_for(wrapped, Options(interrupted="nothing was written"))
    assert code == 130
    assert capsys.readouterr().err == "interrupted: nothing was written\n"
    assert exit_code_for(IOFailure("disk full"), None) == 74


def test_after_commit_a_ctrl_c_is_ignored_only_in_the_dmops_process() -> None:
    """interrupts.committed() changes nothing for a library caller; in the dmops process it drops Ctrl-C."""
    import os
    import signal

    from dmops import interrupts

    before = signal.getsignal(signal.SIGINT)
    try:
        interrupts.committed()
        assert signal.getsignal(signal.SIGINT) is before  # install() did not run: the caller's handler stays
        interrupts.install()
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN  # the first interrupts, later ones are ignored
        interrupts.install()
        interrupts.committed()
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        os.kill(os.getpid(), signal.SIGINT)  # ignored: no KeyboardInterrupt
        time.sleep(0.05)
    finally:
        signal.signal(signal.SIGINT, before)


def test_a_ctrl_c_inside_the_import_machinery_is_delivered_in_the_next_code() -> None:
    """An exception raised in an import-lock callback would be printed as "ignored": the interrupt waits instead."""
    import signal
    import sys

    from dmops import interrupts

    before = signal.getsignal(signal.SIGINT)
    in_import = compile("handler(signal.SIGINT, sys._getframe())", "<frozen importlib._bootstrap>", "exec")
    try:
        interrupts.install()
        handler = signal.getsignal(signal.SIGINT)
        assert callable(handler)
        exec(in_import, {"handler": handler, "signal": signal, "sys": sys})  # returns: nothing raised there
        assert signal.getsignal(signal.SIGINT) is handler  # still armed for the redelivered interrupt
        with pytest.raises(KeyboardInterrupt):
            time.sleep(2)  # the redelivered Ctrl-C interrupts the next code that runs
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, before)
