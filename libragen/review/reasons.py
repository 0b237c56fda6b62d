"""The decision vocabulary: review modes, clip reject reason codes (keys 1-9, 0 = other) and choices."""

from __future__ import annotations

MODES: tuple[str, ...] = ("clip", "pair", "gsb")

#: Clip reject reasons in keyboard order: key 1 is the first, key 9 the ninth, key 0 is "other" (needs a note).
CLIP_REASONS: tuple[tuple[str, str], ...] = (
    ("cut", "cut / shot change"),
    ("static", "static / no motion"),
    ("blur", "blur"),
    ("text_watermark", "text / watermark"),
    ("letterbox", "letterbox / borders"),
    ("subject_small_occluded", "subject too small / occluded"),
    ("identity_mismatch", "identity mismatch"),
    ("copy_paste_risk", "copy-paste risk"),
    ("several_subjects", "several candidate subjects"),
    ("other", "other (note)"),
)
REASON_CODES: tuple[str, ...] = tuple(code for code, _ in CLIP_REASONS)

CLIP_DECISIONS: tuple[str, ...] = ("accept", "reject")
#: Pair and GSB modes: which side is better, or the same.
SIDE_DECISIONS: tuple[str, ...] = ("left", "same", "right")

NOTE_MAX = 500

#: Which score a curation reason thresholds (mirrors ``libragen.curate.probes.CHECKS`` when this was written);
#: the review page highlights these scores for the clip's ``near_reasons``. A score whose name contains the
#: reason's name is highlighted too, so new probes work without an entry here.
NEAR_SCORE_HINTS: dict[str, tuple[str, ...]] = {
    "too_short": ("num_frames",),
    "low_resolution": ("short_side",),
    "bad_fps": ("fps",),
    "static": ("motion",),
    "flicker": ("flicker",),
    "blur": ("edge_strength_vs_floor", "edge_strength", "sharpness"),
    "low_bitrate": ("intra_bits_vs_floor", "intra_bits_per_pixel"),
    "dark_or_bright": ("mean_luma",),
    "letterbox": ("letterbox",),
    "text_overlay": ("text_fraction",),
    "subject_too_small": ("subject_fraction",),
    "occluded": ("visible_fraction",),
}


def near_scores(near_reasons: list[str], score_names: list[str]) -> list[str]:
    """The score names behind a clip's near-miss reasons (for highlighting)."""
    out = []
    for name in score_names:
        for reason in near_reasons:
            if name in NEAR_SCORE_HINTS.get(reason, ()) or reason in name:
                out.append(name)
                break
    return out


def decisions_for(mode: str) -> tuple[str, ...]:
    """Valid decisions of a mode."""
    if mode == "clip":
        return CLIP_DECISIONS
    if mode in ("pair", "gsb"):
        return SIDE_DECISIONS
    raise ValueError(f"unknown mode {mode!r}; expected one of {MODES}")


def validate_decision(mode: str, decision: str, reasons: list[str], note: str | None) -> None:
    """Raise ValueError with a one-line reason when a decision is malformed."""
    if decision not in decisions_for(mode):
        raise ValueError(f"decision must be one of {decisions_for(mode)} in {mode} mode, got {decision!r}")
    if note is not None and len(note) > NOTE_MAX:
        raise ValueError(f"note longer than {NOTE_MAX} characters")
    if len(set(reasons)) != len(reasons):
        raise ValueError("repeated reason code")
    if mode != "clip" or decision == "accept":
        if reasons:
            raise ValueError(f"reasons only go with a reject (got {reasons})")
        return
    unknown = [r for r in reasons if r not in REASON_CODES]
    if unknown:
        raise ValueError(f"unknown reason code(s) {unknown}; expected {REASON_CODES}")
    if not reasons:
        raise ValueError("a reject needs at least one reason code")
    if "other" in reasons and not (note or "").strip():
        raise ValueError("reason 'other' needs a note")
