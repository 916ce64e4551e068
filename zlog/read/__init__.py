"""The read path, pure: the filter spec and line predicate (``query``), HTTP parameters (``params``), cursors and the k-way page
merge across partitions (``paging``).

Invariants:
- No I/O: workers evaluate filters on stored lines; gateways merge pages.
"""
