"""Pairs stage (issue #7): in-pair and cross-pair training samples from approved clips.

``libragen pairs build --from approved.parquet --out pairs/ [--mode in|cross|both] [--max-refs 4]``

Modules, in data-flow order:

* :mod:`~libragen.pairs.source` — read the approved manifest (identity ground truth dropped).
* :mod:`~libragen.pairs.subjects` — subject detection/segmentation interface (LibraWorld masks;
  GroundingDINO + SAM from local weights for real footage).
* :mod:`~libragen.pairs.views` — usable views, in-pair frame choice, crops, augmentation.
* :mod:`~libragen.pairs.glyph_embed`, :mod:`~libragen.pairs.embedders` — identity embedders (a
  weight-free LibraWorld reader; exported models by path; anything by name or object).
* :mod:`~libragen.pairs.retrieval` — identity vectors and verified cross-clip candidates.
* :mod:`~libragen.pairs.risk` — copy-paste risk of a reference against the target.
* :mod:`~libragen.pairs.captions` — Ref-tag parsing and renumbering.
* :mod:`~libragen.pairs.build`, :mod:`~libragen.pairs.samples` — the build and its output files.
* :mod:`~libragen.pairs.dataset` — PyTorch dataset / loader with a cached text encoder.
* :mod:`~libragen.pairs.cli` — the ``pairs`` Typer app.
"""
