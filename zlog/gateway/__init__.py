"""The HTTP front door: ingest (``ingest.py``), reads (``read_api.py``), and the app that wires them (``app.py``)."""
