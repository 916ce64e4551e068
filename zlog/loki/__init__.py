"""Loki's query language and API shapes over zlog's records: the LogQL subset (logql, ast), its
pipeline on stored records (pipeline), metric evaluation (metrics) and Loki's response shapes (shapes)."""
