"""selfplay: asymmetric self-play (Alice proposes goals, Bob solves them) with Alice
Behavioural Cloning, on top of :mod:`tabletop_env`.

The loop: :mod:`~selfplay.game` (the game, its rules; a :mod:`~selfplay.teachers` teacher gives
the goals) -> :mod:`~selfplay.collector` (per-agent batches, from the game's
:mod:`~selfplay.events`) -> :mod:`~selfplay.learning` (one learner per agent, ABC as Bob's extra
loss) -> :mod:`~selfplay.training` (the loop, metrics, checkpoints) ->
:mod:`~selfplay.evaluation` (zero-shot holdout tasks). Every default lives in ``selfplay/conf/``.

``python -m selfplay.train`` trains, ``python -m selfplay.evaluate`` evaluates; see README.md.
"""
