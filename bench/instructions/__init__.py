"""Instruction counts: a deterministic tier beside wall time (``samplemind-bench run --instructions``).

Valgrind's callgrind counts the instructions of each CPU-bound benchmark body
(no hardware counters needed). The pieces:

* :mod:`bench.instructions._tools`: find valgrind/setarch, build the client-request shim;
* :mod:`bench.instructions._counter`: count one body from inside the process;
* :mod:`bench.instructions._select`: which benchmarks are counted, and how many calls;
* :mod:`bench.instructions.plugin`: the pytest side (``--instructions=DIR``);
* :mod:`bench.instructions.runner`: the command-line side (a suite process under
  callgrind, counts merged into the suite's results file as ``extra_info["instructions"]``);
* :mod:`bench.stats`: the gate's decision from a measured A/A spread;
* :mod:`bench.instructions.summary`: the command printing instructions beside wall time (the
  figures themselves: :mod:`bench.figures`, shared with the report and the headline);
* :mod:`studies.instructions_study`: the determinism and injected-work studies.
"""
