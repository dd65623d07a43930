"""selfplay: asymmetric self-play (Alice proposes goals, Bob solves them) with Alice
Behavioural Cloning, on top of :mod:`tabletop_env`.

``python -m selfplay.train`` trains; see README.md.
"""
