"""Settings of the review app (YAML, validated by pydantic): data roots, overlap, gold rate, sessions."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from libragen.core.config import StrictModel


class ReviewConfig(StrictModel):
    """Everything the review server needs besides the database path."""

    data_roots: tuple[Path, ...] = Field(
        (),
        description="folders videos may be served from; empty means the folders the imported files came from",
    )
    overlap: float = Field(0.10, ge=0.0, le=1.0, description="share of clips shown to two reviewers (agreement)")
    gold_every: int = Field(
        20, ge=0, description="one gold clip (known answer) every N clips a reviewer gets; 0 turns gold off"
    )
    lookahead: int = Field(3, ge=1, le=50, description="undecided clips kept assigned to a reviewer (preloading)")
    lease_minutes: float = Field(
        120.0, gt=0, description="an undecided assignment older than this no longer blocks others from the clip"
    )
    include_auto_rejected: bool = Field(
        False, description="also queue clips the automatic curation rejected (keep == false)"
    )
    ref_size: int = Field(128, ge=32, le=512, description="side of the reference crops shown beside the video")
    session_hours: float = Field(12.0, gt=0, description="how long a browser login lasts")
    secure_cookies: bool = Field(False, description="mark the session cookie Secure (set when served over HTTPS)")
    history: int = Field(200, ge=0, le=5000, description="decided clips a reviewer can page back through (K)")
    salt: str = Field("libragen-review", description="seeds the clip order and the overlap draw")
