"""LibraGen: subject-to-video generation toolkit (curation, pairs, backbone, SFT, DPO, guidance, eval)."""

__version__ = "0.1.0"
