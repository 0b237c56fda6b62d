"""Manual review stage (issue #6): a web app where people accept or reject curated clips, judge DPO pairs
and give GSB side-by-side judgements.

Modules: ``config`` (YAML settings), ``reasons`` (decision vocabulary), ``store`` (SQLite: users, sessions,
append-only events, derived labels), ``importer`` (curated manifest, gold answers, DPO pairs, GSB sets),
``assign`` (who reviews what), ``stats`` (Cohen's kappa, gold accuracy, GSB), ``export`` (the human-approved
manifest), ``media`` (safe file serving and reference crops), ``app`` (FastAPI), ``cli`` (``libragen review``),
``demo`` (a curated manifest built from a LibraWorld set, for tests and demos).
"""
