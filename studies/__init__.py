"""Studies: experiments that calibrate the tools, outside the installed packages.

Run from the checkout's root (``python -m studies.NAME``) or through nox (``nox -s study -- NAME
ARGS``; ``gate_study`` and ``gate_e2e`` have sessions of their own). Their figures and the
commands that made them are in ``docs/measurements/`` and ``docs/decisions/``.

* :mod:`studies.gate_study`: the gate's A/A false-alarm rate and power on this machine.
* :mod:`studies.gate_e2e`: the same through real ``gate --baseline-ref`` runs.
* :mod:`studies.instructions_study`: instruction counts: A/A spreads (``aa``, writes
  ``bench/instructions/aa_spreads.json``), injected work (``inject``), the gate (``gate``).
* :mod:`studies.history_detectors`: which change-point library finds performance steps best.
* :mod:`studies.history_noise`: noise and change points, commit vs measurement order.
* :mod:`studies.hits_vs_raw`: cache hits through ``AIManager`` vs raw ``redis.asyncio`` GETs.
* :mod:`studies.emulator_throughput`: the emulator's rough throughput.
* :mod:`studies.import_graph`: the import graph between ``bench/`` subpackages.
* :mod:`studies.xdist_schedule`: pytest-xdist's schedulers simulated on a run's durations.
* :mod:`studies._inject`: the one code-injection helper (work put into one function of a
  throw-away checkout).
"""
