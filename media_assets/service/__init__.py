"""The verbs users call: analyse, show, search, people, review, forget, stats, reanalyse, health, backup.

One function per verb, called by both the CLI (`media_assets/cli.py`) and the results UI
(`media_assets/ui/`), so the two cannot drift. Service imports assets and plumbing, never the other way.
"""
