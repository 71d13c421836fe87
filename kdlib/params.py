"""Parameters declared once: each experiment's (and the SSH inventory's) fields, defaults,
checks and documentation live in one pydantic model, and everything else is made from it.

A model here is the notebook's parameters cell, the CLI's options (:mod:`kdlib.options` makes
both from it) and the library's constructor. Making
an instance validates every field; the problems are raised together as one
:class:`~kdlib.errors.ParametersError`, one line per problem naming the field's path
(``scale_pods[1]``, ``timeouts['Dr/K8s+']``, ``workers[2].port``), before anything is
provisioned. An instance is therefore always valid.

Checks that compare fields run as field validators on the fields declared before them
(``info.data``), so they are reported with the others; the few that need every field run
after the field checks pass.
"""

from __future__ import annotations

import math
import types
import typing
from pathlib import Path
from typing import Any, Callable, Mapping, TypeVar, Union

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from . import store
from .errors import ParametersError

P = TypeVar("P", bound="Params")


# -- checks: each returns why a value is refused, or None; :func:`check` makes it a validator ----------

def check(why_not: Callable[[Any], str | None]) -> BeforeValidator:
    """A validator that runs before pydantic's own (so ``'5'`` is never read as 5, nor ``'yes'`` as True)."""
    def validate(value: Any) -> Any:
        reason = why_not(value)
        if reason:
            raise ValueError(reason)
        return value
    return BeforeValidator(validate)


def run_id(value: Any) -> str | None:
    """One rule for every experiment's run id (:func:`kdlib.store.run_id_problem`: it names directories)."""
    return store.run_id_problem(value)


#: A run id: one rule for every experiment (letters, digits, '.', '_', '-', starting with a letter
#: or digit, at most 100 characters; a number is told how to pass it as text).
RunId = typing.Annotated[str, check(run_id)]


def whole(low: int, high: int | None = None, *, beyond: str = "", none: str | None = None) -> BeforeValidator:
    """A whole number (not a bool) in ``[low, high]``; None when ``none`` says what None means."""
    def why_not(value: Any) -> str | None:
        if value is None and none is not None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            return f"{value!r} must be a whole number ≥ {low}" + (f" (or None: {none})" if none else "")
        if high is not None and value > high:
            return f"{value} is more than {high}{beyond}"
        return None
    return check(why_not)


def number(low: float, *, above: bool = False, high: float | None = None, what: str = "number",
           none: str | None = None) -> BeforeValidator:
    """A finite number (not a bool) ≥ ``low`` (> with ``above``) and ≤ ``high``."""
    bound = f"in [{low:g}, {high:g}]" if high is not None else f"{'>' if above else '≥'} {low:g}"

    def why_not(value: Any) -> str | None:
        if value is None and none is not None:
            return None
        if (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
                or value < low or (above and value == low) or (high is not None and value > high)):
            return f"{value!r} must be a finite {what} {bound}" + (f" (or None: {none})" if none else "")
        return None
    return check(why_not)


def flag(value: Any) -> str | None:
    return None if isinstance(value, bool) else f"{value!r} must be True or False"


def one_of(known: Mapping[str, Any] | tuple[str, ...], what: str) -> BeforeValidator:
    return check(lambda value: None if isinstance(value, str) and value in known
                 else f"unknown {what} {value!r} (known: {', '.join(known)})")


def names(known: Mapping[str, Any] | tuple[str, ...], *, one_is_a_list: bool) -> BeforeValidator:
    """A non-empty list of names; each name is then checked on its own (``one_of``). With
    ``one_is_a_list`` one name stands for a list of one (``-p benches scale-pods``); without,
    a string is refused (it would be split into its characters)."""
    def validate(value: Any) -> Any:
        if isinstance(value, str) and one_is_a_list:
            value = [value]
        if isinstance(value, str) or not isinstance(value, (list, tuple)):
            example = [value] if isinstance(value, str) else [next(iter(known))]
            raise ValueError(f"give a list, e.g. {example!r}, not {type(value).__name__} {value!r}")
        if not value:
            raise ValueError("empty; name at least one of " + ", ".join(known))
        return tuple(value)
    return BeforeValidator(validate)


def one_or_more(value: Any) -> Any:
    """One value where a list is expected counts as a list of one (``-p scale_pods 50``)."""
    return (value,) if isinstance(value, (str, int, float)) and not isinstance(value, bool) else value


def directory(value: Any) -> Path | None:
    """A directory that exists (``~`` expanded), or None (also for ""); use as ``BeforeValidator(directory)``."""
    if value is None or value == "":
        return None
    if not isinstance(value, (str, Path)):
        raise ValueError(f"must be the path of a directory, not {value!r}")
    found = Path(value).expanduser()
    if not found.is_dir():
        raise ValueError(f"{found} is not a directory")
    return found


def param(default: Any, doc: str, *, cli: tuple[str, ...] = (), notebook_only: bool = False) -> Any:
    """A field's default and its one line of documentation (the notebook's comment, the CLI's help).
    ``cli``: further spellings of its option; ``notebook_only``: not an option (e.g. an analysis choice)."""
    extra: dict[str, Any] = {"cli": list(cli)}
    if notebook_only:
        extra["notebook_only"] = True
    return Field(default, description=doc, json_schema_extra=extra)


class Params(BaseModel):
    """A set of parameters, validated as a whole when made; ``WHAT`` names it in errors."""

    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)
    WHAT: typing.ClassVar[str] = "parameters"

    def __init__(self, /, **given: Any) -> None:
        try:
            super().__init__(**given)
        except ValidationError as error:
            raise ParametersError(self.WHAT, problems(error, type(self))) from None

    @classmethod
    def from_notebook(cls: type[P], namespace: Mapping[str, Any]) -> P:
        """The parameters a notebook holds (its ``globals()``: the parameters cell as papermill left it)."""
        return cls(**{name: namespace[name] for name in cls.model_fields if name in namespace})

    def replaced(self: P, **changes: Any) -> P:
        """A copy with ``changes``, validated again."""
        return type(self)(**{**dict(self), **changes})


# -- problems as lines naming the field's path ---------------------------------------------------

def item_type(annotation: Any) -> Any:
    """The type a path step goes into: ``X`` of ``X | None``, ``list[X]``, ``tuple[X, ...]``, ``dict[str, X]``."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    origin = typing.get_origin(annotation)
    if origin in (Union, types.UnionType) and len(args) == 1:
        return item_type(args[0])
    if origin in (list, tuple, dict) and args:
        return item_type(args[-1] if origin is dict else args[0])
    if origin is typing.Annotated:
        return item_type(args[0])
    return annotation


def _is_mapping(annotation: Any) -> bool:
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    origin = typing.get_origin(annotation)
    if origin in (Union, types.UnionType) and len(args) == 1:
        return _is_mapping(args[0])
    return origin is dict or annotation is dict


def _walk(loc: tuple[Any, ...], model: type[BaseModel] | None) -> tuple[str, type[BaseModel] | None]:
    """The path ``loc`` names (``('workers', 2, 'port')`` as ``workers[2].port``, a mapping's key as
    ``timeouts['Dr/K8s+']``) and the model its last step is a field of (None: not a model's)."""
    text, key_next, owner = "", False, model
    for step in loc:
        if isinstance(step, int):
            text += f"[{step}]"
        elif key_next:
            text += f"[{step!r}]"
            key_next, owner = False, None
        else:
            text += f".{step}" if text else str(step)
            owner = model
            field = model.model_fields.get(step) if model is not None else None
            key_next = field is not None and _is_mapping(field.annotation)
            inner = item_type(field.annotation) if field is not None else None
            model = inner if isinstance(inner, type) and issubclass(inner, BaseModel) else None
    return text, owner if loc else None


def _message(error: Any, model: type[BaseModel] | None) -> str:
    if error["type"] in ("value_error", "assertion_error"):
        return str(error["ctx"]["error"])
    if error["type"] == "extra_forbidden":
        _, owner = _walk(tuple(error["loc"]), model)
        name = error["loc"][-1]
        hint = getattr(owner, "UNKNOWN_FIELD_HINTS", {}).get(name)
        known = f"; known: {', '.join(owner.model_fields)}" if owner is not None else ""
        return "unknown field" + (f" ({hint})" if hint else "") + known
    if error["type"] == "missing":
        return "required"
    return f"{error['msg'][0].lower()}{error['msg'][1:]}, not {error.get('input')!r}"


def problems(error: ValidationError, model: type[BaseModel] | None = None) -> list[str]:
    """One line per problem, "<field path>: <why>" (a multi-line why gives a line each). A check
    of a whole model names the field it is about by starting a line with "<field>: "."""
    found = []
    for item in error.errors():
        loc = tuple(item["loc"])
        where, _ = _walk(loc, model)
        inside = _walk((*loc, ""), model)[1] if model is not None else None  # the model at loc, if one
        for line in _message(item, model).splitlines() or [""]:
            name, sep, rest = line.partition(": ")
            if sep and inside is not None and name in inside.model_fields:
                line = f"{where}.{name}: {rest}" if where else f"{name}: {rest}"
            elif where:
                line = f"{where}: {line}"
            found.append(line)
    return found


def problems_of(model: type[Params], **given: Any) -> list[str]:
    """The problems of ``model(**given)``; empty when it is valid."""
    try:
        model(**given)
    except ParametersError as error:
        return error.problems
    return []
