"""One exit-code policy for the command line and the app (usbwriter.errors)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from usbwriter.errors import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_MISMATCH,
    EXIT_OK,
    EXIT_REFUSED,
    BadImage,
    Cancelled,
    Refused,
    outcome_exit_code,
)


@dataclass
class _Verify:
    verified: bool


@dataclass
class _Receipt:
    verify: _Verify | None


@dataclass
class _Drive:
    exit_code: int


@dataclass
class _Probe:
    genuine: bool


@pytest.mark.parametrize(
    ("outcome", "code"),
    [
        (BadImage("x.iso: truncated"), EXIT_FAILED),  # a failed write
        (Cancelled("cancelled"), EXIT_INTERRUPTED),
        (Refused("/dev/sda: the system disk"), EXIT_REFUSED),
        (KeyboardInterrupt(), EXIT_INTERRUPTED),
        (_Receipt(_Verify(False)), EXIT_MISMATCH),  # read back and differs
        (_Receipt(_Verify(True)), EXIT_OK),
        (_Receipt(None), EXIT_OK),  # --no-verify: not read back
        (_Verify(False), EXIT_MISMATCH),  # the verify command's own result
        ([_Drive(0), _Drive(3), _Drive(1)], EXIT_MISMATCH),  # several: the highest
        ([], EXIT_OK),
        (_Probe(False), EXIT_MISMATCH),  # a drive that is not what it says
        (_Probe(True), EXIT_OK),
    ],
)
def test_one_policy(outcome: object, code: int) -> None:
    assert outcome_exit_code(outcome) == code


def test_the_real_receipts_follow_it() -> None:
    """The receipts of the core, as they are: a write's and a backup's."""
    from usbwriter.jobs.backup import BackupReceipt
    from usbwriter.receipt import Receipt

    assert hasattr(Receipt, "__dataclass_fields__") and "verify" in Receipt.__dataclass_fields__
    assert "verify" in BackupReceipt.__dataclass_fields__
