"""The HTTP front door.

``app.py`` wires the process; ``ingest.py`` is ``POST /v1/logs``; ``spool.py`` the ingest WAL's
spool and replay; ``ratelimit.py`` per-client limits; ``read_api.py`` the read endpoints,
``tail.py`` the live tail (SSE) and ``ui.py`` the log viewer; ``context.py`` what they share.
"""
