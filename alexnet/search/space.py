"""The search space in Hydra's override grammar, as the official Optuna sweeper reads it:
`choice(a,b)` is categorical, `range(start,stop[,step])` its values (stop excluded), `interval(lo,
hi)` uniform (`tag(log, interval(...))` log-uniform), integers when both ends are; any other value
is fixed for every trial."""

from __future__ import annotations

import re
from collections.abc import Sequence

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import IntervalSweep, Override, RangeSweep, Transformer
from hydra.errors import HydraException
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)


def parse_space(arguments: Sequence[str]) -> tuple[dict[str, BaseDistribution], list[str]]:
    """(the distributions by key, the fixed overrides) of `arguments` (hydra.sweeper.params as
    `key=value`, then the command line's overrides)."""
    space: dict[str, BaseDistribution] = {}
    fixed: list[str] = []
    chosen: dict[str, BaseDistribution | str] = {}  # a key given twice: the later wins
    try:
        for override in OverridesParser.create().parse_overrides(list(arguments)):
            key = override.get_key_element()
            chosen.pop(key, None)
            chosen[key] = distribution(override) if override.is_sweep_override() else \
                override.input_line
    except HydraException as err:  # e.g. glob(...), which needs the config's groups
        raise ValueError(f"{err}: the Optuna sweeper takes choice(...), range(...), interval(...) "
                         "or tag(log, interval(...))") from err
    for key, value in chosen.items():
        if isinstance(value, str):
            fixed.append(value)
        else:
            space[key] = value
    return space, fixed


def distribution(override: Override) -> BaseDistribution:
    value = override.value()
    if override.is_choice_sweep() or (isinstance(value, RangeSweep) and value.shuffle):
        return CategoricalDistribution(list(override.sweep_iterator(transformer=Transformer.encode)))
    if isinstance(value, RangeSweep):
        if any(isinstance(v, float) for v in (value.start, value.stop, value.step)):
            values = list(override.sweep_iterator(transformer=Transformer.encode))
            return CategoricalDistribution(values)  # (a float range's values, as listed)
        last = value.start + value.step * ((value.stop - value.start - 1) // value.step)
        return IntDistribution(int(value.start), int(last), step=int(value.step))
    if isinstance(value, IntervalSweep):
        log = "log" in value.tags
        if isinstance(value.start, int) and isinstance(value.end, int):
            return IntDistribution(value.start, value.end, log=log)
        return FloatDistribution(float(value.start), float(value.end), log=log)
    raise ValueError(f"{override.input_line}: the Optuna sweeper takes choice(...), range(...), "
                     "interval(...) or tag(log, interval(...)), not a glob or a list")


def as_override(key: str, value: object) -> str:
    """`key=value` for a sampled value, in the grammar Hydra parses back to the same value: a
    float in full, a string quoted unless it is a plain word Hydra would read as that string."""
    if isinstance(value, float):
        return f"{key}={value!r}"
    if isinstance(value, str) and not (PLAIN_WORD.fullmatch(value) and value.lower() not in
                                       ("true", "false", "null", "nan", "inf")):
        return f"{key}='" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    return f"{key}={value}"


PLAIN_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_\-./]*")
