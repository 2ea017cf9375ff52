"""The parts of :class:`~samplemind_core.ResponseCache` (``samplemind_core.cache`` is the facade).

``envelope``: the stored value format; ``l1``: the in-process LRU; ``keys``:
generations and key layout; ``deadlines``: per-operation deadlines and
connection slots. None of them touches Redis: the facade's ``_io_*`` methods
are the only I/O.
"""
