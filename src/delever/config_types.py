"""Base types of the pydantic configuration models (scenario, venue rules): strict models, bounded floats.

Config layer: domain packages (engine, market, venues formulas, lending) do not import it.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationError

PositiveFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]
NonNegFloat = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Fraction = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]


class Strict(BaseModel):
    """Base: unknown keys rejected, immutable, no NaN/inf."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


def format_validation(err: ValidationError, where: str) -> str:
    """One line for the first error of ``err``: ``<where>: field '<dotted.key>': <problem> (got <value>)``."""
    e = err.errors()[0]
    loc = ".".join(str(p) for p in e["loc"] if not str(p).startswith("function-")) or "(top level)"
    msg = e["msg"]
    if e["type"] == "extra_forbidden":
        msg = "unknown key"
    got = e.get("input")
    got_s = "" if isinstance(got, dict) or e["type"] == "extra_forbidden" else f" (got {got!r})"
    more = f" [+{len(err.errors()) - 1} more]" if len(err.errors()) > 1 else ""
    if loc == "(top level)" and e["type"] == "value_error":  # a whole-model check names its own fields
        return f"{where}: {msg.removeprefix('Value error, ')}{more}"
    return f"{where}: field '{loc}': {msg}{got_s}{more}"
