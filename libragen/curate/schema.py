"""The curated manifest (``curated.parquet``): what curation writes and review/pairs read.

One row per clean clip candidate (a shot after splitting, or an unreadable input file):

* ``clip_id`` — unique, stable across reruns (source id + shot index);
* ``path`` — the clip's mp4, relative to the manifest's folder (None for unreadable inputs, and for rejected
  shots of a source with cuts: only kept shots are re-encoded into files);
* ``source_path`` — the input file it came from; ``start_frame``/``end_frame`` of the shot in the source;
* ``content_hash`` — SHA-256 of the clip file (review decisions are tied to it; None when ``path`` is);
* ``keep`` — the automatic verdict; ``reasons`` — reject reasons (empty when kept);
  ``near_reasons`` — thresholds the clip passed by less than 10 % (what nearly rejected it);
* ``scores`` — every probe's number, name -> value; ``quality_score`` ranks clips for ``--keep N``;
* ``width``, ``height``, ``fps``, ``num_frames``; ``caption`` and ``subjects`` (LibraWorld ground truth
  passed through when the input was a LibraWorld manifest, else None);
* ``phash`` — hex perceptual hash used for pool-wide near-duplicate search;
* ``config_hash`` and ``code_version`` — what produced the row.
"""

from __future__ import annotations

import pyarrow as pa

from libragen.world.manifest import SUBJECT_TYPE

CURATED_SCHEMA = pa.schema(
    [
        ("clip_id", pa.string()),
        ("path", pa.string()),
        ("source_path", pa.string()),
        ("start_frame", pa.int32()),
        ("end_frame", pa.int32()),
        ("content_hash", pa.string()),
        ("keep", pa.bool_()),
        ("reasons", pa.list_(pa.string())),
        ("near_reasons", pa.list_(pa.string())),
        ("scores", pa.map_(pa.string(), pa.float64())),
        ("quality_score", pa.float64()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("fps", pa.float32()),
        ("num_frames", pa.int32()),
        ("caption", pa.string()),
        ("subjects", pa.list_(SUBJECT_TYPE)),
        ("phash", pa.string()),
        ("config_hash", pa.string()),
        ("code_version", pa.string()),
    ]
)

CURATED_NAME = "curated.parquet"

#: Reject reasons curation can give (``reasons`` column). Unreadable inputs are told apart by what the
#: bytes are: ``empty_file`` (0 bytes), ``not_video`` (no known container signature), ``corrupt_video``
#: (a container header that does not decode, e.g. a truncated mp4), ``no_video_stream`` (audio only).
#: The order is the priority: the first reason a clip has is its primary reason. Subject size and visibility
#: come before ``blur``: a frame without a (visible) subject lacks the crisp outlines blur is judged by, so the
#: subject explains the softness (three 640x360 LibraWorld clips; with a detector rather than ground-truth
#: masks, a blurred clip whose subject was missed is still rejected, under the subject reason).
REJECT_REASONS: tuple[str, ...] = (
    "empty_file",
    "not_video",
    "corrupt_video",
    "no_video_stream",
    "too_large",
    "too_short",
    "low_resolution",
    "bad_fps",
    "letterbox",
    "text_overlay",
    "low_bitrate",
    "subject_too_small",
    "occluded",
    "blur",
    "no_subject",
    "static",
    "flicker",
    "dark_or_bright",
    "inconsistent",
    "low_text_alignment",
    "low_aesthetic",
    "low_model_score",
    "near_duplicate",
    "not_in_top_n",
)
