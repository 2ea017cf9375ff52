"""The parts of :class:`~samplemind_core.Router`: route table, model catalog, circuit breaker.

``routes`` compiles the declarative table; ``catalog`` is the router's view of
the pricing catalog (:mod:`samplemind_core._pricing`) with ``Settings``
overrides; ``breaker`` keeps one provider's health. ``samplemind_core.router``
puts them together and re-exports the public names.
"""
