"""``docs/config.md``, generated from the config dataclasses and the registries, so the reference
cannot drift from the code: every key with its type, default and meaning (the comment beside the
field), the options of each network, dataset, loss and weighting, and the ablation file's keys.

    python -m stereodistill.experiments.config_reference > docs/config.md

A test regenerates the page and fails when the file in the repository differs.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import typing
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from stereodistill.config import _type_name, keyword_parameters

_COMMENT = re.compile(r"^\s+(\w+)\s*:[^#]*#\s*(.+)$")


def field_comments(cls: type) -> dict[str, str]:
    """Field name → the comment on its line in the class's source (the field's one-line meaning)."""
    return {m.group(1): m.group(2).strip() for m in map(_COMMENT.match, inspect.getsource(cls).splitlines()) if m}


def _summary(cls: type | None) -> str:
    """The first paragraph of a class's own docstring, on one line ("" without one)."""
    doc = inspect.cleandoc(cls.__dict__.get("__doc__") or "") if cls is not None else ""
    if not doc or doc.startswith(f"{cls.__name__}("):  # dataclasses make one up from the signature
        return ""
    return " ".join(doc.split("\n\n")[0].split())


def _default(field: dataclasses.Field) -> str:
    if field.default is not dataclasses.MISSING:
        value = field.default
    elif field.default_factory is not dataclasses.MISSING:
        value = field.default_factory()
    else:
        return "required"
    if isinstance(value, tuple):
        value = list(value)
    return f"`{value!r}`".replace("'", "") if value is not None else "`null`"


def _nested(tp: Any) -> type | None:
    """The dataclass a field holds (itself, in a list, or optional), if any."""
    for arg in (tp, *typing.get_args(tp)):
        if dataclasses.is_dataclass(arg):
            return arg
        for inner in typing.get_args(arg):
            if dataclasses.is_dataclass(inner):
                return inner
    return None


def field_rows(cls: type, prefix: str = "") -> Iterator[list[str]]:
    """One row per key of ``cls`` and of the dataclasses it holds: key, type, default, meaning."""
    hints = typing.get_type_hints(cls)
    comments = field_comments(cls)
    for field in dataclasses.fields(cls):
        if not field.init or field.metadata.get("internal"):
            continue
        key = f"{prefix}{field.name}"
        tp = hints[field.name]
        nested = _nested(tp)
        meaning = comments.get(field.name) or _summary(nested)
        if not meaning:
            raise ValueError(f"{cls.__name__}.{field.name}: no comment on its line to say what it means")
        yield [f"`{key}`", _type_name(tp), "(below)" if nested else _default(field), meaning]
        if nested is not None:
            inner = {list: "[].", dict: ".NAME."}.get(typing.get_origin(tp), ".")
            yield from field_rows(nested, f"{key}{inner}")


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]


def _parameters(target: Callable, skip: Sequence[str] = ()) -> str:
    """``name=default`` of the keyword parameters a config may set (:func:`keyword_parameters`, the
    same the config check accepts)."""
    found = keyword_parameters(target, skip)
    if found is None:
        return "any"
    parts = []
    for name, param in found[0].items():
        default = "" if param.default is inspect.Parameter.empty else f"={param.default!r}"
        parts.append(f"`{name}{default}`")
    return ", ".join(parts) or "none"


def render() -> str:
    """The whole page."""
    from stereodistill.data.datasets import DATASETS
    from stereodistill.data.motorcycle import NAME as MOTORCYCLE
    from stereodistill.distill.adapters import ADAPTERS
    from stereodistill.distill.losses import LOSSES
    from stereodistill.distill.masks import MASKS
    from stereodistill.distill.weights import SCHEDULES, WEIGHTINGS
    from stereodistill.experiments.ablation import AblationConfig
    from stereodistill.experiments.adapt import AdaptConfig
    from stereodistill.models.fine_refine import MAX_RADIUS
    from stereodistill.models.zoo import list_models, model_class
    from stereodistill.train.config import RunConfig, reader_of

    out = [
        "# Config reference",
        "",
        "Generated from the code by `python -m stereodistill.experiments.config_reference > docs/config.md`; a test "
        "fails when this page is stale. Every key below is checked before any work starts: an unknown key or "
        "option is an error naming the nearest valid one, a value of the wrong type an error naming the key. "
        "Overrides on the command line (`KEY=VALUE`, dotted) and in ablation files reach a distillation term "
        "by its name: `distill.terms.NAME.KEY`.",
        "",
        "## Run config (`stereodistill train|distill CONFIG`)",
        "",
        *_table(["key", "type", "default", "meaning"], list(field_rows(RunConfig))),
        "",
        "## `model.options`, per network",
        "",
        "Constructor options of each architecture (`max_disp` is `model.max_disp`; `None`: the member's "
        "preset); a teacher imported from a release checkpoint takes the same as `teacher.options`. An "
        "option a network does not take, or a value of another type than listed, is an error naming it.",
        "",
        f"Every trainable network also takes `fine` (an integer 0–{MAX_RADIUS}, 0 by default: none), which ends it "
        "in a full-resolution cost refinement of that radius in px (`models/fine_refine.py`): census and grey-level "
        "matching costs at the whole pixels around its estimate, scored by a small 2-D network; and `fine_block` "
        "(0 by default: none; else an odd window of 3–15 px, with `fine`), which has that stage also search around "
        "a full-resolution block match over the whole range (`models/block_match.py`); and `fine_polish` (0 by "
        "default: none; else a radius in px, with `fine_block`), which at inference places the output on the block "
        "match's costs within that radius, between whole pixels by a parabola; and `fine_extremes` (0 by default: "
        "none; else an odd window of 3–15 px, with `fine`), which has the stage also search around the largest and "
        "the smallest estimate within that window, where a depth edge's other surface lies.",
        "",
        *_table(["arch", "options"], [[f"`{a}`", _parameters(model_class(a), ("max_disp",))] for a in list_models()]),
        "",
        "## Dataset `options`",
        "",
        *_table(
            ["dataset", "options"],
            [[f"`{name}`", _parameters(*reader_of(name))] for name in ("synthetic", MOTORCYCLE, *DATASETS.names())],
        ),
        "",
        "## Distillation terms: losses, adapters, masks",
        "",
        "`loss` names one of these; its keyword parameters go in the term's `params`.",
        "",
        *_table(
            ["loss", "params"],
            [[f"`{n}`", _parameters(LOSSES.get(n), _tensors(LOSSES.get(n)))] for n in LOSSES.names()],
        ),
        "",
        f"`adapter`: one of {', '.join(f'`{n}`' for n in ADAPTERS)}, or a list of them applied in order. "
        f"`mask`: one of {', '.join(f'`{n}`' for n in MASKS)} (`mask_threshold` sets its threshold).",
        "",
        "## Weights and weighting",
        "",
        "A term's `weight` (and `supervised.weight`) is a number or a schedule `{type: NAME, ...}`:",
        "",
        *_table(
            ["type", "keys"],
            [[f"`{n}`", _parameters(cls, ("shape",))] for n, cls in SCHEDULES.items()],
        ),
        "",
        "`distill.weighting` combines the terms: `{type: NAME, ...}`:",
        "",
        *_table(["type", "options"], [[f"`{n}`", _parameters(cls, ("names",))] for n, cls in WEIGHTINGS.items()]),
        "",
        "## Ablation files (`stereodistill ablate FILE`)",
        "",
        *_table(["key", "type", "default", "meaning"], list(field_rows(AblationConfig))),
        "",
        "## Adapt files (`stereodistill adapt ... --config FILE`)",
        "",
        "A flag given on the command line wins over the file; `run` is merged into the student's run config "
        "(the keys of the run config above).",
        "",
        *_table(["key", "type", "default", "meaning"], list(field_rows(AdaptConfig))),
        "",
    ]
    return "\n".join(out)


def _tensors(loss: Callable) -> tuple[str, ...]:
    """A loss's tensor parameters (student, teacher or target, mask): not options."""
    return tuple(list(inspect.signature(loss).parameters)[:3])


if __name__ == "__main__":
    print(render(), end="")
