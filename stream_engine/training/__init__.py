"""Training, distillation and export of stemstream's separators (torch is imported only here).

Entry points: ``stemstream train`` / ``stemstream export`` (see ``commands.py``),
or ``python -m stream_engine.training train|export``.
"""
