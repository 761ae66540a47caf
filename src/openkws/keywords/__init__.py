"""Enrolled keywords: the registry, its durable store and change feed, confusables and sensitivity."""
