"""The software-defined assets: one module per asset family, the analysis job and the asset checks.

The analysis itself (frames in, records out) lives in `media_assets/analysis/` without Dagster.
"""
