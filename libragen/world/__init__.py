"""LibraWorld: a procedural subject-video world whose subjects, motions and defects are known exactly.

Entry points: :func:`libragen.world.plan.plan_world` (draw clip specs),
:func:`libragen.world.render.render_spec` (pixels + masks), :func:`libragen.world.generate.make_world`
(write mp4s and the Parquet manifest), :mod:`libragen.world.identity` (the identity space and split).
"""
