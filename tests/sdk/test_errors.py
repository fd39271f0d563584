"""The error-code table: complete, consistent with the contract, and used by the exceptions."""

from __future__ import annotations

import pytest

from procvision_algorithm_sdk import (
    FatalError,
    GPUOutOfMemoryError,
    ProgramError,
    RecoverableError,
    errors,
)

CONTRACT_CODES = {
    "1001": "invalid_pid",
    "1002": "image_load_failed",
    "1003": "model_not_found",
    "1004": "gpu_oom",
    "1005": "timeout",
    "1006": "invalid_params",
    "1007": "coordinate_invalid",
    "1008": "invalid_result",
    "1009": "algorithm_exception",
    "1010": "protocol_error",
    "9999": "unknown_error",
    "2001": "invalid_zip",
    "2002": "manifest_missing",
    "2003": "incompatible_python",
    "2004": "wheels_missing",
    "2005": "install_failed",
    "2006": "activation_conflict",
    "2007": "unsafe_uninstall",
}


def test_table_matches_the_contract() -> None:
    assert {code: info.name for code, info in errors.ERROR_CODES.items()} == CONTRACT_CODES
    for code, info in errors.ERROR_CODES.items():
        assert info.code == code and isinstance(code, str)


def test_only_timeouts_are_retryable_codes() -> None:
    assert [c for c in errors.ERROR_CODES if errors.is_retryable(c)] == ["1005"]
    assert not errors.is_retryable(None)
    assert not errors.is_retryable("4242")


def test_error_name_of_unknown_code() -> None:
    assert errors.error_name("1003") == "model_not_found"
    assert errors.error_name("4242") == "unknown_error"
    assert errors.error_name(None) == "unknown_error"


@pytest.mark.parametrize(
    ("cls", "code", "retryable"),
    [
        (RecoverableError, "1009", True),
        (FatalError, "1009", False),
        (GPUOutOfMemoryError, "1004", False),
        (ProgramError, "1009", False),
        (errors.ImageLoadError, "1002", False),
        (errors.ProtocolError, "1010", False),
    ],
)
def test_exceptions_carry_codes(
    cls: type[errors.ProcVisionError], code: str, retryable: bool
) -> None:
    exc = cls("boom")
    assert isinstance(exc, Exception)
    assert str(exc) == "boom"
    assert exc.error_code == code
    assert exc.retryable is retryable
    assert cls("x", error_code="1003").error_code == "1003"
    assert cls().message == ""


def test_every_exception_of_ours_derives_from_procvision_error() -> None:
    from procvision_algorithm_sdk.errors import ProcVisionError
    from procvision_devtools._common import CliError
    from procvision_runner import RunnerError
    from procvision_runner.store.lock import StoreError
    from procvision_runner.worker import WorkerStartError

    cli = CliError("2002", "manifest.json not found")
    assert isinstance(cli, ProcVisionError)
    assert (cli.error_code, cli.code, cli.message) == ("2002", "2002", "manifest.json not found")
    start = WorkerStartError("no hello")
    assert isinstance(start, ProcVisionError)
    assert (start.error_code, start.message) == ("1005", "no hello")
    assert issubclass(RunnerError, ProcVisionError) and issubclass(StoreError, ProcVisionError)
