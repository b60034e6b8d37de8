"""The search space in Hydra's override grammar, read as the official Optuna sweeper reads it.
A fixed value beats a distribution for the same key; ours: a choice between lists or dicts goes back
to the job as that list, and a sampled string is quoted only where Hydra needs it."""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Glob, IntervalSweep, Override, RangeSweep, Transformer
from hydra.errors import HydraException
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

GRAMMAR = "choice(...), range(...), interval(...) or tag(log, interval(...))"


@dataclass
class Space:
    """Distributions (in suggest order), fixed overrides by key, and each list/dict choice's text."""

    distributions: dict[str, BaseDistribution] = field(default_factory=dict)
    fixed: dict[str, str] = field(default_factory=dict)
    texts: dict[str, dict[Any, str]] = field(default_factory=dict)
    grid: dict[str, list[Any]] = field(default_factory=dict)  # each key's values in a grid

    def fixed_values(self) -> dict[str, str]:
        """The fixed overrides' values as text (what the official plugin keeps in user attrs)."""
        return {key: line.partition("=")[2] for key, line in self.fixed.items()}

    def override(self, key: str, value: Any) -> str:
        text = self.texts.get(key, {}).get(value)
        return f"{key}={text}" if text is not None else as_override(key, value)


def parse_space(arguments: Sequence[str], configured: Mapping[str, Any] | None = None) -> Space:
    """params, then the command line's overrides, over the deprecated search_space's distributions."""
    space = Space(distributions={key: _configured(key, spec) for key, spec in (configured or {}).items()})
    try:
        overrides = OverridesParser.create().parse_overrides(list(arguments))
    except HydraException as err:
        raise SettingError(f"{err}: the Optuna sweeper takes {GRAMMAR}") from None
    for override in overrides:
        key = override.get_key_element()
        if override.is_sweep_override():
            space.distributions[key] = _distribution(override, space.texts.setdefault(key, {}))
            values = _grid_values(override, space.distributions[key])
            space.grid.pop(key, None)
            if values is not None:
                space.grid[key] = values
        else:
            space.fixed[key] = override.input_line
    for key in space.fixed:  # (a fixed value wins wherever the distribution came from)
        space.distributions.pop(key, None)
    space.texts = {key: texts for key, texts in space.texts.items() if texts and key in space.distributions}
    return space


def _configured(key: str, spec: Mapping[str, Any]) -> BaseDistribution:
    """One of search_space's {type, low, high, step, log, choices}, as the official plugin reads it."""
    kind = str(spec.get("type", "")).rsplit(".", 1)[-1].lower()
    try:
        if kind == "categorical":
            return CategoricalDistribution(list(spec["choices"]))
        if kind in ("int", "float"):
            cast = int if kind == "int" else float
            step = spec.get("step")
            return (IntDistribution if kind == "int" else FloatDistribution)(
                cast(spec["low"]), cast(spec["high"]), log=bool(spec.get("log", False)),
                step=cast(step) if step is not None else (1 if kind == "int" else None))
    except (KeyError, TypeError, ValueError) as err:
        raise SettingError(f"hydra.sweeper.search_space.{key}: {err}") from None
    raise SettingError(f"hydra.sweeper.search_space.{key}.type={spec.get('type')}: give int, "
                       "float or categorical (or use hydra.sweeper.params)")


def _distribution(override: Override, texts: dict[Any, str]) -> BaseDistribution:
    value = override.value()
    if isinstance(value, Glob):
        raise SettingError(f"{override.input_line}: the Optuna sweeper takes {GRAMMAR}, not a glob")
    try:
        if override.is_choice_sweep() or (isinstance(value, RangeSweep) and value.shuffle):
            return CategoricalDistribution(_choices(override, texts))
        if isinstance(value, RangeSweep):
            if any(isinstance(v, float) for v in (value.start, value.stop, value.step)):
                return FloatDistribution(value.start, value.stop, step=value.step)
            return IntDistribution(int(value.start), int(value.stop), step=int(value.step))
        if isinstance(value, IntervalSweep):
            log = "log" in value.tags
            if isinstance(value.start, int) and isinstance(value.end, int):
                return IntDistribution(value.start, value.end, log=log)
            return FloatDistribution(value.start, value.end, log=log)
    except (ValueError, HydraException) as err:  # (Optuna's: e.g. low > high)
        raise SettingError(f"{override.input_line}: {err}") from None
    raise SettingError(f"{override.input_line}: the Optuna sweeper takes {GRAMMAR}")


def _grid_values(override: Override, distribution: BaseDistribution) -> list[Any] | None:
    """Grid values as the official plugin lists them (a range's stop left out); ours: int intervals."""
    if isinstance(distribution, CategoricalDistribution):
        return list(distribution.choices)
    if isinstance(override.value(), RangeSweep):
        low, high, step = distribution.low, distribution.high, distribution.step
        return [low + i * step for i in range(int((high - low) // step))]
    if isinstance(distribution, IntDistribution):
        return list(range(distribution.low, distribution.high + 1))
    return None


def _choices(override: Override, texts: dict[Any, str]) -> list[Any]:
    """Choices as Optuna holds them (a list or dict as its text), noting the text Hydra takes back."""
    choices = []
    for raw in override.sweep_iterator(transformer=Transformer.identity):
        choice = Transformer.encode(raw)
        if not isinstance(raw, str | int | float | bool):  # (None too: `null`)
            texts[choice] = choice
        choices.append(choice)
    return choices


def as_override(key: str, value: object) -> str:
    """`key=value` Hydra parses back to the same value: a float in full, a string quoted unless plain."""
    if isinstance(value, float):
        return f"{key}={value!r}"
    if isinstance(value, str) and not (PLAIN_WORD.fullmatch(value) and value.lower() not in
                                       ("true", "false", "null", "nan", "inf")):
        return f"{key}='{_quoted(value)}'"
    return f"{key}={value}"


def _quoted(text: str) -> str:
    """`text` in Hydra's single quotes: quotes escaped, backslashes before a quote or the end doubled."""
    return QUOTE_OR_END.sub(lambda m: m.group(1) * 2 + ("\\'" if m.group(2) else ""), text)


PLAIN_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_\-./]*")
QUOTE_OR_END = re.compile(r"(\\*)('|$)")

EXIT_STATUS = 2


class SettingError(ValueError):
    """A sweeper setting that cannot work; its message names the key and a value that would."""


def refuse(message: str) -> NoReturn:
    print(f"error: {message}", file=sys.stderr, flush=True)
    raise SystemExit(EXIT_STATUS)
