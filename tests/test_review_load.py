"""Loopback load test: 8 concurrent reviewers x 250 decisions -> every decision stored exactly once."""

from __future__ import annotations

from pathlib import Path

import pytest

from libragen.review.loadtest import run_load


@pytest.mark.slow
def test_eight_reviewers_250_decisions_each_lose_and_duplicate_nothing(tmp_path: Path) -> None:
    result = run_load(tmp_path, reviewers=8, decisions=250, retry_every=25, deadline_s=240)
    assert result.errors == [], result.errors[:5]
    assert result.decisions_sent == 2000 and result.acknowledged == 2000
    assert result.retries_sent == 80 and result.duplicate_acks == 80  # retried requests were recognised
    assert result.decision_events_in_db == 2000 and result.distinct_uuids_in_db == 2000
    assert result.lost == 0 and result.duplicated == 0
    assert result.reviewer_item_repeats == 0  # nobody was handed the same clip twice
    assert result.over_assigned_items == 0  # single-review clips went to one reviewer, overlap clips to two
