"""Every reason has one HTTP answer and one remedy, from one table (trunkkey.advice)."""

from __future__ import annotations

import re
from http import HTTPStatus
from pathlib import Path

import pytest

from trunkkey import Advice, Reason, Remedy, advice_for
from trunkkey.advice import ADVICE


def test_every_reason_has_advice() -> None:
    missing = [reason.value for reason in Reason if reason not in ADVICE]
    assert not missing, f"reasons without an HTTP status and remedy: {missing}"


def test_the_table_names_only_reasons() -> None:
    assert set(ADVICE) <= set(Reason)


@pytest.mark.parametrize("reason", list(Reason), ids=str)
def test_each_status_is_a_real_http_status_of_the_right_class(reason: Reason) -> None:
    advice = advice_for(reason)
    status = HTTPStatus(advice.status)
    if reason.allowed:
        assert status is HTTPStatus.OK
        assert advice.remedy is Remedy.NONE
    else:
        # A denial is never a success, and only allowed needs no remedy.
        assert 400 <= status < 600
        assert advice.remedy is not Remedy.NONE
    assert advice.title
    assert len(advice.title) <= 60


def test_only_transient_faults_are_server_errors_and_they_are_never_remint() -> None:
    for reason, advice in ADVICE.items():
        if HTTPStatus(advice.status) >= 500:
            assert advice.remedy in {Remedy.RETRY, Remedy.ALARM}, reason


@pytest.mark.parametrize(
    ("reason", "status", "remedy"),
    [
        (Reason.ALREADY_USED, 409, Remedy.ALARM),
        (Reason.LEDGER_UNAVAILABLE, 503, Remedy.RETRY),
        (Reason.EXPIRED, 403, Remedy.REMINT),
        (Reason.BAD_SIGNATURE, 403, Remedy.ALARM),
        (Reason.MALFORMED, 400, Remedy.ALARM),
        (Reason.TOO_LARGE, 413, Remedy.ALARM),
        (Reason.DAILY_LIMIT_REACHED, 429, Remedy.RETRY),
        (Reason.NOT_YET_VALID, 403, Remedy.RETRY),
        (Reason.SUPERSEDED, 403, Remedy.REMINT),
    ],
)
def test_the_answers_a_client_relies_on(reason: Reason, status: int, remedy: Remedy) -> None:
    assert advice_for(reason) == Advice(status=status, remedy=remedy, title=ADVICE[reason].title)


def test_advice_accepts_the_reason_code_string_and_refuses_an_unknown_one() -> None:
    assert advice_for(Reason("already_used")) is ADVICE[Reason.ALREADY_USED]
    assert advice_for("already_used") is ADVICE[Reason.ALREADY_USED]  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not_a_reason"):
        advice_for("not_a_reason")  # type: ignore[arg-type]


def test_the_table_cannot_be_changed_at_run_time() -> None:
    with pytest.raises(TypeError):
        ADVICE[Reason.ALREADY_USED] = ADVICE[Reason.ALLOWED]  # type: ignore[index]


def test_the_service_page_lists_every_reason_with_its_status_and_remedy() -> None:
    page = (Path(__file__).resolve().parents[1] / "docs" / "service.md").read_text("utf-8")
    rows = {
        code: (int(status), remedy)
        for code, status, remedy in re.findall(
            r"^\| `([a-z_]+)` \| (\d{3}) \| ([a-z-]+) \|", page, re.MULTILINE
        )
    }
    for reason, advice in ADVICE.items():
        assert rows.get(reason.value) == (advice.status, advice.remedy.value), reason
