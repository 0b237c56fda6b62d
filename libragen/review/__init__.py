"""Manual review stage (issue #6): web app for human accept/reject, agreement and GSB. Not built yet."""
