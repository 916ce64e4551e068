"""The syslog intake: ``parse`` is the pure part (RFC 5424/3164 to records, TCP framing),
``listener`` the process (``zlog syslog``) that reads TCP and UDP and stores through the producer.

Invariants:
- Off unless ``syslog.tcp`` or ``syslog.udp`` is set; every message is counted as parsed, stored
  or dropped (with a reason) per listener, so a loss syslog cannot report is still visible.
"""
