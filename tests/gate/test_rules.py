"""The gate's rules (:mod:`bench.gate.rules`): timers."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import gate


def test_rule_timer_parsing_and_suite_timer(tmp_path: Path) -> None:
    rules = tmp_path / "r.toml"
    rules.write_text(
        '[[rule]]\nname = "test_x*"\ngroup = "cache/*"\nmetric = "time"\ntimer = "cpu"\n'
        '[[rule]]\ngroup = "fingerprint/*"\nmetric = "time"\nallowed = "5%"\ntimer = "cpu"\n'
        '[[rule]]\nmetric = "time"\nallowed = "10%"\n'
    )
    cfg = gate.load_config(rules)
    assert cfg.suite_timer("fingerprint") == "cpu"
    assert (
        cfg.suite_timer("cache") == "wall"
    )  # a benchmark-specific rule cannot set a suite's clock
    assert cfg.suite_timer("router") == "wall"
    assert "timer=cpu" in cfg.rules[1].describe()
    for bad in ('metric = "hit_rate"\ntimer = "cpu"\n', 'metric = "time"\ntimer = "tsc"\n'):
        rules.write_text("[[rule]]\n" + bad)
        with pytest.raises(gate.GateInputError, match="timer"):
            gate.load_config(rules)
