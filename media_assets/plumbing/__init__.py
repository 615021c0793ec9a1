"""Dagster plumbing under the assets and the verbs.

Settings, partitions, the per-media loop, event storage, staleness, run guards and the durable
decision logs. Imports only go downward: plumbing never imports assets or service.
"""
