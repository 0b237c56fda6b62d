"""Copy-paste risk of a reference: how closely its view reappears in the target clip's frames.

Both scores are :func:`libragen.eval.copypaste.copy_paste_score` (best masked NCC anywhere in any
target frame), on two versions of the reference:

* ``copy_paste_risk`` — the reference's *source view*: the crop window around the subject in the
  source frame **with its background**, matched at native scale only. It is high when the target
  shows the subject in the same pose, size and surroundings as the reference (an in-pair view
  taken from the target clip itself scores ~1; a view from another clip scores what its pose and
  background happen to share with the target). This is the per-sample number in the manifest.
* ``prepared_copy_paste`` (optional, slower) — the prepared reference the model actually sees
  (augmented, on white), matched at the subject's box height over 0.9-1.1x: how much of the
  subject's exact pixels survive the augmentation.
"""

from __future__ import annotations

import numpy as np

from libragen.eval.copypaste import copy_paste_score

PREPARED_SCALES: tuple[float, ...] = (0.9, 1.0, 1.1)


def source_view_risk(background_crop: np.ndarray, target_frames: np.ndarray) -> float:
    """``copy_paste_risk``: the background-keeping source crop against the target, native scale."""
    return copy_paste_score(background_crop, target_frames, scales=(1.0,))


def prepared_risk(reference: np.ndarray, target_frames: np.ndarray, box_height: float) -> float:
    """``prepared_copy_paste``: the prepared reference at the subject's height (+-10 %)."""
    return copy_paste_score(reference, target_frames, scales=PREPARED_SCALES, reference_height=box_height)
