"""A parameter model (:mod:`kdlib.params`) as the notebook's parameters cell and as CLI options:
the same fields, defaults and documentation, so that the three never drift apart (a unit test
compares them)."""

from __future__ import annotations

import argparse
import json
import types
import typing
from pathlib import Path
from typing import Any, Callable, TypeVar, Union

from pydantic import BaseModel

from .params import item_type

P = TypeVar("P", bound=BaseModel)


def _kind(annotation: Any) -> str:
    """The plain type a notebook shows and the CLI reads: str, int, float, bool, list or dict."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    origin = typing.get_origin(annotation)
    if origin in (Union, types.UnionType) and len(args) == 1:
        return _kind(args[0])
    if origin in (list, tuple) or annotation in (list, tuple):
        return "list"
    if origin is dict or annotation is dict:
        return "dict"
    if annotation in (int, float, bool):
        return annotation.__name__
    return "str"


def _literal(value: Any) -> str:
    if isinstance(value, (str, list, tuple, dict)):
        return json.dumps(list(value) if isinstance(value, tuple) else value, ensure_ascii=False)
    return repr(str(value) if isinstance(value, Path) else value)


def parameters_cell(model: type[BaseModel]) -> str:
    """The notebook's parameters cell (tagged ``parameters``): ``name: type = default  # doc``, one
    line per field in declaration order, as ``papermill --help-notebook`` lists them."""
    return "\n".join(f"{name}: {_kind(field.annotation)} = {_literal(field.default)}  # {field.description}"
                     for name, field in model.model_fields.items())


def _extra(field: Any) -> dict[str, Any]:
    return field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}


class _Items(argparse.Action):
    """A list option: repeatable, each value may hold several separated by commas; the
    first use replaces the default."""

    def __init__(self, *args: Any, convert: Callable[[str], Any] = str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.convert = convert

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        current = getattr(namespace, self.dest)
        items = list(current) if current is not self.default and current is not None else []
        try:
            items += [self.convert(v) for v in str(values).split(",") if v]
        except (ValueError, argparse.ArgumentTypeError) as error:
            parser.error(f"{option_string} {values!r}: {error}")
        setattr(namespace, self.dest, items)


class _Entries(_Items):
    """A mapping option: ``KEY=VALUE``, repeatable."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        key, sep, value = str(values).partition("=")
        if not sep:
            parser.error(f"{option_string} {values!r}: expected KEY=VALUE")
        current = getattr(namespace, self.dest)
        entries = dict(current) if current is not self.default and current is not None else {}
        try:
            entries[key] = self.convert(value)
        except (ValueError, argparse.ArgumentTypeError) as error:
            parser.error(f"{option_string} {values!r}: {error}")
        setattr(namespace, self.dest, entries)


def _reader(kind: str) -> Callable[[str], Any]:
    """How the CLI reads one value of a field of this kind (``none`` is None for a number)."""
    if kind not in ("int", "float"):
        return str
    number = int if kind == "int" else float

    def read(text: str) -> Any:
        if text.lower() == "none":
            return None
        try:
            return number(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {'an integer' if kind == 'int' else 'a number'}") from None
    read.__name__ = kind
    return read


def add_options(parser: argparse.ArgumentParser, model: type[BaseModel]) -> None:
    """One option per field of ``model`` (``--run-id`` for ``run_id``), its default the model's
    and its help the field's documentation; the parsed namespace gives the model its fields
    (:func:`from_options`), which then checks them as it checks the notebook's."""
    for name, field in model.model_fields.items():
        extra = _extra(field)
        if is_notebook_only(model, name):
            continue
        flags = [f"--{name.replace('_', '-')}", *extra.get("cli", ())]
        kind, default, doc = _kind(field.annotation), field.default, field.description or ""
        options: dict[str, Any] = {"dest": name, "default": default}
        if name == "run_id":
            options.update(required=True, default=None)
        if kind == "bool":
            options["action"] = argparse.BooleanOptionalAction
        elif kind == "list":
            options.update(action=_Items, metavar="A[,B]", default=list(default) if default is not None else None,
                           convert=_reader(_kind(item_type(field.annotation))))
            doc += " (repeatable, or comma-separated)"
        elif kind == "dict":
            options.update(action=_Entries, metavar="KEY=VALUE", default=dict(default or {}),
                           convert=_reader(_kind(item_type(field.annotation))))
            doc += " (repeatable)"
        elif kind in ("int", "float"):
            options["type"] = _reader(kind)
        if name != "run_id":
            doc += f" (default: {_literal(default)})"
        parser.add_argument(*flags, help=doc.replace("%", "%%"), **options)


def from_options(model: type[P], args: argparse.Namespace) -> P:
    """The model made from the options :func:`add_options` added."""
    return model(**{name: getattr(args, name) for name in model.model_fields if hasattr(args, name)})


def is_notebook_only(model: type[BaseModel], name: str) -> bool:
    """A parameter of the notebook that is no CLI option (an analysis choice)."""
    return bool(_extra(model.model_fields[name]).get("notebook_only"))


def defaults(model: type[BaseModel]) -> dict[str, Any]:
    """Every field's default, as the notebook and the CLI give it."""
    return {name: field.default for name, field in model.model_fields.items()}
