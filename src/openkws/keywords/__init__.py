"""Enrolled keywords: the registry, its durable store and change feed, confusables and sensitivity."""

MAX_TENANT_CHARS = 64  # tenant names, in every table that has them (store and change log)
