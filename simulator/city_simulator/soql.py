"""The subset of SoQL (Socrata Query Language) the simulator understands.

``$where``: comparisons ``column op literal`` (op one of = != <> < <= > >=) and
``column IS [NOT] NULL``, combined with AND / OR and parentheses. ``$order``: columns with ASC or
DESC. ``$select``: ``*``, ``:*`` (system fields), column names, or ``count(*)`` alone.

Values keep their SODA wire form (strings); literals are normalised once to the same canonical
form so that comparing timestamps as strings is comparing them as timestamps. Errors mirror the
bodies a real SODA 2.1 server returns, including the 1-based position of the offending token
within the parameter's text.
"""

from __future__ import annotations

import datetime as dt
import operator
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

Schema = Mapping[str, str]  # field name -> SODA datatype
Row = Mapping[str, str]

COUNT_FIELD = "count"  # the name SODA gives an un-aliased count(*)


class SoqlError(Exception):
    """A query the server refuses with HTTP 400, carrying the Socrata error code."""

    def __init__(self, error_code: str, detail: str, position: int, **data: str) -> None:
        super().__init__(f"{error_code}; {detail}")
        self.error_code = error_code
        self.detail = detail
        self.position = position
        self.data = data

    def body(self, dataset_id: str) -> dict:
        return {
            "message": f"Query coordinator error: {self.error_code}; {self.detail}",
            "errorCode": self.error_code,
            "data": {
                **self.data,
                "dataset": dataset_id,
                "position": {"row": 1, "column": self.position},
            },
        }


def _no_such_column(column: str, position: int) -> SoqlError:
    return SoqlError(
        "query.soql.no-such-column", f"No such column: {column}", position, column=column
    )


def _malformed(detail: str, position: int) -> SoqlError:
    return SoqlError("query.soql.malformed", detail, position)


def _type_mismatch(column: str, datatype: str, literal: str, position: int) -> SoqlError:
    return SoqlError(
        "query.soql.type-mismatch",
        f"Cannot compare {datatype} column {column} with {literal}",
        position,
        column=column,
        type=datatype,
    )


# --- tokens -------------------------------------------------------------------------------------

_TOKEN = re.compile(
    r"""(?:
        (?P<string>'(?:[^']|'')*'|"(?:[^"]|"")*")
      | (?P<number>-?\d+(?:\.\d+)?)
      | (?P<op><=|>=|!=|<>|=|<|>)
      | (?P<punct>[(),*])
      | (?P<name>:?@?[A-Za-z_][A-Za-z0-9_]*|:\*|`[^`]+`)
    )""",
    re.VERBOSE,
)


@dataclass(frozen=True)
class _Token:
    kind: str  # string | number | op | punct | name | end
    text: str
    position: int  # 1-based column in the parameter text

    def is_word(self, *words: str) -> bool:
        return self.kind == "name" and self.text.upper() in words

    @property
    def value(self) -> str:
        if self.kind == "string":
            quote = self.text[0]
            return self.text[1:-1].replace(quote * 2, quote)
        if self.kind == "name" and self.text.startswith("`"):
            return self.text[1:-1]
        return self.text


def _tokenize(text: str) -> list[_Token]:
    tokens, pos = [], 0
    while True:
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos == len(text):
            tokens.append(_Token("end", "", pos + 1))
            return tokens
        match = _TOKEN.match(text, pos)
        if match is None:
            raise _malformed(f"Unexpected character {text[pos]!r}", pos + 1)
        kind = match.lastgroup
        tokens.append(_Token(kind, match.group(kind), match.start(kind) + 1))
        pos = match.end()


class _Cursor:
    def __init__(self, text: str) -> None:
        self.tokens = _tokenize(text)
        self.index = 0

    @property
    def peek(self) -> _Token:
        return self.tokens[self.index]

    def take(self) -> _Token:
        token = self.tokens[self.index]
        self.index += 1
        return token

    def expect(self, kind: str, text: str | None = None) -> _Token:
        token = self.take()
        if token.kind != kind or (text is not None and token.text != text):
            wanted = text or kind
            raise _malformed(f"Expected {wanted} but got {token.text or 'end of input'!r}",
                             token.position)  # fmt: skip
        return token


_KEYWORDS = frozenset({"AND", "OR", "NOT", "IS", "NULL", "ASC", "DESC", "AS"})


def _column(cursor: _Cursor, schema: Schema) -> tuple[str, int]:
    token = cursor.take()
    if token.kind != "name" or token.is_word(*_KEYWORDS) or token.text == ":*":
        raise _malformed(f"Expected a column name but got {token.text or 'end of input'!r}",
                         token.position)  # fmt: skip
    if token.value not in schema:
        raise _no_such_column(token.value, token.position)
    return token.value, token.position


# --- literals -----------------------------------------------------------------------------------


def _timestamp(literal: str, datatype: str) -> dt.datetime | None:
    """Parse a timestamp literal; fixed timestamps become naive UTC. None if unparseable."""
    try:
        parsed = dt.datetime.fromisoformat(literal)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return parsed  # a zone-less literal against a fixed column is read as UTC, like SODA
    if datatype == "floating_timestamp":
        return None  # a zoned literal cannot name a floating (zone-less) instant
    return parsed.astimezone(dt.UTC).replace(tzinfo=None)


def format_timestamp(value: dt.datetime, datatype: str) -> str:
    """The canonical SODA wire text of a timestamp value."""
    text = value.isoformat(timespec="milliseconds")
    return text + "Z" if datatype == "fixed_timestamp" else text


def parse_timestamp(text: str) -> dt.datetime:
    """A wire timestamp (floating or fixed with Z) as a naive datetime."""
    return dt.datetime.fromisoformat(text.removesuffix("Z"))


def _literal(token: _Token, column: str, datatype: str) -> str | float:
    """A literal token in the comparable form of its column's type."""
    if token.kind not in ("string", "number"):
        raise _malformed(f"Expected a literal but got {token.text or 'end of input'!r}",
                         token.position)  # fmt: skip
    return _coerce(token.value, token.kind == "number", column, datatype, token.position)


def _coerce(value: str, unquoted: bool, column: str, datatype: str, position: int) -> str | float:
    if datatype == "number":
        try:
            return float(value)
        except ValueError:
            raise _type_mismatch(column, datatype, value, position) from None
    if unquoted:
        raise _type_mismatch(column, datatype, value, position)
    if datatype.endswith("_timestamp"):
        parsed = _timestamp(value, datatype)
        if parsed is None:
            raise _type_mismatch(column, datatype, value, position)
        return format_timestamp(parsed, datatype)
    return value


# --- $where -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Comparison:
    column: str
    op: str  # one of = != < <= > >=
    value: str | float
    numeric: bool


@dataclass(frozen=True)
class IsNull:
    column: str
    negated: bool


@dataclass(frozen=True)
class BoolOp:
    op: str  # AND | OR
    parts: tuple[Expr, ...]


Expr = Comparison | IsNull | BoolOp


def comparison(column: str, op: str, literal: str, schema: Schema) -> Comparison:
    """A comparison built outside the parser, e.g. from a ``?column=value`` filter."""
    if column not in schema:
        raise _no_such_column(column, 1)
    value = _coerce(literal, False, column, schema[column], 1)
    return Comparison(column, op, value, schema[column] == "number")


def parse_where(text: str, schema: Schema) -> Expr:
    cursor = _Cursor(text)
    expr = _or(cursor, schema)
    if cursor.peek.kind != "end":
        raise _malformed(f"Unexpected {cursor.peek.text!r}", cursor.peek.position)
    return expr


def _or(cursor: _Cursor, schema: Schema) -> Expr:
    parts = [_and(cursor, schema)]
    while cursor.peek.is_word("OR"):
        cursor.take()
        parts.append(_and(cursor, schema))
    return parts[0] if len(parts) == 1 else BoolOp("OR", tuple(parts))


def _and(cursor: _Cursor, schema: Schema) -> Expr:
    parts = [_primary(cursor, schema)]
    while cursor.peek.is_word("AND"):
        cursor.take()
        parts.append(_primary(cursor, schema))
    return parts[0] if len(parts) == 1 else BoolOp("AND", tuple(parts))


def _primary(cursor: _Cursor, schema: Schema) -> Expr:
    if cursor.peek.text == "(":
        cursor.take()
        expr = _or(cursor, schema)
        cursor.expect("punct", ")")
        return expr
    column, _ = _column(cursor, schema)
    if cursor.peek.is_word("IS"):
        cursor.take()
        negated = cursor.peek.is_word("NOT")
        if negated:
            cursor.take()
        if not cursor.take().is_word("NULL"):
            raise _malformed("Expected NULL after IS", cursor.tokens[cursor.index - 1].position)
        return IsNull(column, negated)
    op = cursor.expect("op").text
    datatype = schema[column]
    value = _literal(cursor.take(), column, datatype)
    return Comparison(column, "!=" if op == "<>" else op, value, datatype == "number")


_OPERATORS: dict[str, Callable[[object, object], bool]] = {
    "=": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


def compile_predicate(expr: Expr) -> Callable[[Row], bool]:
    """A row filter with SQL null semantics: comparisons against a missing value are false."""
    if isinstance(expr, BoolOp):
        parts = [compile_predicate(p) for p in expr.parts]
        if expr.op == "AND":
            return lambda row: all(p(row) for p in parts)
        return lambda row: any(p(row) for p in parts)
    column = expr.column
    if isinstance(expr, IsNull):
        if expr.negated:
            return lambda row: column in row
        return lambda row: column not in row
    compare, value = _OPERATORS[expr.op], expr.value
    if expr.numeric:
        return lambda row: column in row and compare(float(row[column]), value)
    return lambda row: column in row and compare(row[column], value)


_ONE_MS = dt.timedelta(milliseconds=1)


def timestamp_bounds(
    expr: Expr | None, column: str
) -> tuple[dt.datetime | None, dt.datetime | None]:
    """Inclusive (low, high) bounds that every row matching ``expr`` has on a timestamp column.

    Lets a server skip generating data the filter would discard; None means unbounded.
    """
    if isinstance(expr, Comparison) and expr.column == column:
        value = parse_timestamp(str(expr.value))
        return {
            "=": (value, value),
            ">": (value + _ONE_MS, None),  # wire timestamps have millisecond resolution
            ">=": (value, None),
            "<": (None, value - _ONE_MS),
            "<=": (None, value),
        }.get(expr.op, (None, None))
    if isinstance(expr, BoolOp):
        bounds = [timestamp_bounds(p, column) for p in expr.parts]
        lows, highs = [b[0] for b in bounds], [b[1] for b in bounds]
        if expr.op == "AND":
            return _pick_bound(max, lows), _pick_bound(min, highs)
        # For OR every branch must be bounded for the union to be.
        low = None if None in lows else min(lows)
        high = None if None in highs else max(highs)
        return low, high
    return None, None


def _pick_bound(choose: Callable, values: list) -> dt.datetime | None:
    known = [v for v in values if v is not None]
    return choose(known) if known else None


# --- $order -------------------------------------------------------------------------------------


def parse_order(text: str, schema: Schema) -> list[tuple[str, bool]]:
    """``$order`` as [(column, descending)]."""
    cursor = _Cursor(text)
    keys = []
    while True:
        column, _ = _column(cursor, schema)
        descending = cursor.peek.is_word("DESC")
        if descending or cursor.peek.is_word("ASC"):
            cursor.take()
        keys.append((column, descending))
        token = cursor.take()
        if token.kind == "end":
            return keys
        if token.text != ",":
            raise _malformed(f"Expected , or end of $order but got {token.text!r}", token.position)


def sort_rows(rows: list[Row], order: Iterable[tuple[str, bool]], schema: Schema) -> None:
    """Sort in place like PostgreSQL: nulls last ascending, first descending."""
    for column, descending in reversed(list(order)):  # stable sorts, least significant key first
        rows.sort(key=_sort_key(column, schema[column] == "number"), reverse=descending)


def _sort_key(column: str, numeric: bool) -> Callable[[Row], tuple]:
    if numeric:
        return lambda row: (column not in row, float(row[column]) if column in row else 0.0)
    return lambda row: (column not in row, row.get(column, ""))


# --- $select ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Selection:
    fields: tuple[str, ...]  # output columns, in order
    count: bool = False  # a count(*) query: one row holding the number of matches


def parse_select(text: str, columns: Schema, system_columns: Schema) -> Selection:
    """``$select``: ``*`` is the dataset columns, ``:*`` the system fields."""
    cursor = _Cursor(text)
    if cursor.peek.is_word("COUNT"):
        cursor.take()
        for expected in ("(", "*", ")"):
            cursor.expect("punct", expected)
        alias = COUNT_FIELD
        if cursor.peek.is_word("AS"):
            cursor.take()
            alias = cursor.expect("name").value
        cursor.expect("end")
        return Selection((alias,), count=True)
    schema = {**system_columns, **columns}
    fields: list[str] = []
    while True:
        token = cursor.peek
        if token.text == "*":
            cursor.take()
            fields.extend(columns)
        elif token.text == ":*":
            cursor.take()
            fields.extend(system_columns)
        else:
            fields.append(_column(cursor, schema)[0])
        token = cursor.take()
        if token.kind == "end":
            return Selection(tuple(dict.fromkeys(fields)))
        if token.text != ",":
            raise _malformed(f"Expected , or end of $select but got {token.text!r}",
                             token.position)  # fmt: skip
