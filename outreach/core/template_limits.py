"""What rendering one message may cost: time, steps and size (README, "Templates").

Templates are written by a coordinator, not by an attacker, but a slip (a loop inside a
loop, `'-' * 1000000000`) must cost one partner's message, not the worker or a minute of
`outreach check`. Jinja's sandbox already keeps a template away from Python's internals
(and cannot change a list or a dict here); this environment adds, for each message (its
subject, text and HTML together):

- a time limit and a step limit (loop turns, calls and filters), checked at every step:
  nested `range(100000)` loops stop after 100,000 turns, in a fraction of a second;
- a size limit on every value a template makes and on what it writes: an operation that
  multiplies its input ('x' * n, n ** m, a width in a format, `center`, `indent`,
  `replace`, `join`, ...) is refused before it runs, and every value is weighed when it is
  made, passed to a call or filter, or written.

Nothing here uses a thread or a signal: the checks run inside the template's own code, so
rendering stays usable in the worker's event loop. The hooks are the sandbox's documented
ones (`call`, `call_binop`, `intercepted_binops`, `wrap_str_format`, `finalize`,
`code_generator_class`).
"""

from __future__ import annotations

import contextlib
import functools
import re
from collections.abc import Callable, Collection, Iterable, Iterator
from contextvars import ContextVar, Token
from dataclasses import dataclass
from string import Formatter
from typing import Any

from jinja2 import Environment, nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.nodes import EvalContext
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import Namespace, generate_lorem_ipsum
from jinja2.visitor import NodeTransformer

MAX_RENDER_SECONDS = 2.0
MAX_RENDER_STEPS = 100_000
MAX_RENDER_CHARS = 5_000_000
MAX_INT_BITS = 65_536  # about 20,000 digits; Python prints at most 4,300


@dataclass(frozen=True)
class RenderLimits:
    seconds: float = MAX_RENDER_SECONDS
    steps: int = MAX_RENDER_STEPS
    chars: int = MAX_RENDER_CHARS


class RenderLimitError(Exception):
    """A template went over a limit. `kind`: "time", "steps" or "size"."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class Budget:
    """What one message's rendering has used so far: `with budget:` around the rendering
    starts counting from zero and makes the hooks count against it."""

    __slots__ = ("chars", "deadline", "limits", "steps", "timer", "token")

    def __init__(self, limits: RenderLimits, timer: Callable[[], float]) -> None:
        """`timer`: seconds from any start (time.monotonic, from the caller)."""
        self.limits = limits
        self.timer = timer
        self.deadline = 0.0
        self.steps = 0
        self.chars = 0
        self.token: Token[Budget | None] | None = None

    def __enter__(self) -> Budget:
        self.deadline = self.timer() + self.limits.seconds
        self.steps = self.chars = 0
        self.token = _BUDGET.set(self)
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.token is not None:
            _BUDGET.reset(self.token)

    def step(self) -> None:
        self.steps += 1
        if self.steps > self.limits.steps:
            raise RenderLimitError(
                "steps", f"more than {self.limits.steps:,} steps (loop turns, calls, filters)"
            )
        if self.timer() > self.deadline:
            raise RenderLimitError("time", f"rendering took over {self.limits.seconds:g} s")

    def output(self, chars: int) -> None:
        self.chars += chars
        if self.chars > self.limits.chars:
            raise RenderLimitError(
                "size", f"the message would be longer than {self.limits.chars:,} characters"
            )


_BUDGET: ContextVar[Budget | None] = ContextVar("outreach_render_budget", default=None)


def _step() -> None:
    spent = _BUDGET.get()
    if spent is not None:
        spent.step()


def _limit() -> int:
    spent = _BUDGET.get()
    return spent.limits.chars if spent is not None else MAX_RENDER_CHARS


def _too_large(what: str, size: int, limit: int) -> RenderLimitError:
    return RenderLimitError("size", f"{what} would make {size:,} characters (at most {limit:,})")


# ----------------------------------------------------------------------------- weighing

_DICT_VIEWS: tuple[type[Collection[Any]], ...] = (
    type({}.keys()),
    type({}.values()),
    type({}.items()),
)
_CONTAINERS: tuple[type[Collection[Any]], ...] = (list, tuple, set, frozenset, *_DICT_VIEWS)


def weigh(value: Any, limit: int) -> int:
    """About how many characters `value` takes as text (what str() would make of it, items
    of a list counted each time they appear); RenderLimitError past `limit`. Stops as soon
    as the limit is passed, so a value built to be huge costs no more than the limit."""
    if type(value) is str:
        if len(value) > limit:
            raise _too_large("a value", len(value), limit)
        return len(value)
    total = 0
    pending = [value]
    while pending:
        item = pending.pop()
        total += 1
        if isinstance(item, (str, bytes, bytearray)):
            total += len(item)
        elif isinstance(item, int):
            total += item.bit_length() // 3
        elif isinstance(item, dict):
            total += len(item)
            if total <= limit:
                pending.extend(item.keys())
                pending.extend(item.values())
        elif isinstance(item, _CONTAINERS):
            total += len(item)
            if total <= limit:
                pending.extend(item)
        elif isinstance(item, Namespace):  # repr() shows every attribute
            pending.append(object.__getattribute__(item, "_Namespace__attrs"))
        if total > limit:
            raise RenderLimitError("size", f"a value would be larger than {limit:,} characters")
    return total


def _checked(value: Any) -> Any:
    weigh(value, _limit())
    return value


def _size(value: Any) -> int:
    return len(value) if isinstance(value, (str, bytes, bytearray, list, tuple)) else 1


def _number(value: Any, default: int = 0) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


# ----------------------------------------------------------------------------- multipliers
# Each takes the arguments as the callable gets them and raises before a result larger than
# the limit is made. Everything else grows its input by a small factor at most, and is
# weighed after the call.

_PRINTF = re.compile(r"%(?:\([^)]*\))?[#0\- +]*(\*|\d+)?(?:\.(\*|\d+))?")


def check_printf(fmt: Any, args: Any) -> None:
    """`fmt % args` or `fmt|format(...)`: no width or precision past the limit."""
    if not isinstance(fmt, (str, bytes)):
        return
    text = fmt if isinstance(fmt, str) else fmt.decode("latin-1")
    limit = _limit()
    values = args if isinstance(args, tuple) else (args,)
    for width, precision in _PRINTF.findall(text):
        for number in (width, precision):
            if number == "*":
                number = str(max((_number(v) for v in values), default=0))
            if number and int(number) > limit:
                raise _too_large(f"a width of {int(number):,}", int(number), limit)


def check_format(fmt: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """`fmt.format(...)`: no width or precision past the limit, also from a nested field."""
    limit = _limit()
    try:
        fields = list(Formatter().parse(fmt))
    except ValueError:
        return  # str.format raises its own error
    for _literal, _name, spec, _conversion in fields:
        if not spec:
            continue
        numbers = [int(n) for n in re.findall(r"\d+", spec)]
        if "{" in spec:  # a nested field: any number given could be the width
            numbers += [_number(v) for v in (*args, *kwargs.values())]
            numbers += [_number(v) for m in args if isinstance(m, dict) for v in m.values()]
        for number in numbers:
            if number > limit:
                raise _too_large(f"a width of {number:,}", number, limit)


def _width(receiver: Any, width: Any, what: str) -> None:
    size = max(_size(receiver), _number(width))
    if size > _limit():
        raise _too_large(what, size, _limit())


def _expandtabs(receiver: Any, tabsize: Any = 8) -> None:
    tabs = receiver.count("\t" if isinstance(receiver, str) else b"\t")
    size = len(receiver) + tabs * _number(tabsize, 8)
    if size > _limit():
        raise _too_large("expandtabs", size, _limit())


def _replace(receiver: Any, old: Any, new: Any, count: Any = -1) -> None:
    if not isinstance(old, type(receiver)) or not isinstance(new, type(receiver)):
        return
    found = receiver.count(old) if old else len(receiver) + 1
    if _number(count, -1) >= 0:
        found = min(found, _number(count))
    size = len(receiver) + found * max(0, len(new) - len(old))
    if size > _limit():
        raise _too_large("replace", size, _limit())


def _joined(separator: Any, items: list[Any]) -> None:
    limit = _limit()
    size = _size(separator) * max(0, len(items) - 1)
    for item in items:
        size += weigh(item, limit)
        if size > limit:
            break
    if size > limit:
        raise _too_large("join", size, limit)


def _translate(receiver: Any, table: Any) -> None:
    values: Any = table.values() if isinstance(table, dict) else table
    if isinstance(values, _CONTAINERS):
        longest = max((_size(v) for v in values), default=1)
        if len(receiver) * longest > _limit():
            raise _too_large("translate", len(receiver) * longest, _limit())


def _text_method(name: str, receiver: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    if name in ("center", "ljust", "rjust", "zfill"):
        _width(receiver, args[0] if args else kwargs.get("width"), name)
    elif name == "expandtabs":
        _expandtabs(receiver, *args, **kwargs)
    elif name == "replace":
        _replace(receiver, *args, **kwargs)
    elif name == "translate" and args:
        _translate(receiver, args[0])


def _lines(text: Any) -> int:
    return str(text).count("\n") + 1


def _filter_center(value: Any, width: Any = 80) -> None:
    _width(str(value), width, "center")


def _filter_indent(value: Any, width: Any = 4, *args: Any, **kwargs: Any) -> None:
    step = len(width) if isinstance(width, str) else _number(width)
    size = len(str(value)) + _lines(value) * step
    if size > _limit():
        raise _too_large("indent", size, _limit())


def _filter_wordwrap(
    value: Any,
    width: Any = 79,
    break_long: Any = True,
    wrapstring: Any = None,
    *args: Any,
    **kwargs: Any,
) -> None:
    text = str(value)
    breaks = len(text) // max(1, _number(width, 79)) + _lines(text)
    size = len(text) + breaks * _size(wrapstring if wrapstring is not None else "\n")
    if size > _limit():
        raise _too_large("wordwrap", size, _limit())


def _filter_replace(value: Any, old: Any, new: Any, count: Any = None) -> None:
    _replace(str(value), str(old), str(new), -1 if count is None else count)


def _filter_format(value: Any, *args: Any, **kwargs: Any) -> None:
    check_printf(str(value), kwargs or args)


def _filter_count(value: Any, count: Any, fill_with: Any = None) -> None:
    """`batch` and `slice`: a count of lists (or of items in each) no larger than a loop's
    turns, and the filler repeated no larger than the limit."""
    count = _number(count)
    if count > MAX_RENDER_STEPS:
        raise RenderLimitError("steps", f"{count:,} is more than {MAX_RENDER_STEPS:,} items")
    size = count * (weigh(fill_with, _limit()) if fill_with is not None else 1)
    if size > _limit():
        raise _too_large("the filler", size, _limit())


def _filter_tojson(value: Any, indent: Any = None) -> None:
    step = len(indent) if isinstance(indent, str) else _number(indent)
    size = weigh(value, _limit()) * (1 + step)
    if size > _limit():
        raise _too_large("tojson", size, _limit())


def _filter_sum(iterable: Any, attribute: Any = None, start: Any = 0) -> None:
    if not isinstance(start, (int, float)):  # adding lists one to another takes n² time
        raise RenderLimitError("size", "sum adds numbers only in a template")


# filters whose result can be much larger than their input: checked before they run
_FILTER_CHECKS: dict[str, Callable[..., None]] = {
    "center": _filter_center,
    "indent": _filter_indent,
    "wordwrap": _filter_wordwrap,
    "replace": _filter_replace,
    "format": _filter_format,
    "batch": _filter_count,
    "slice": _filter_count,
    "tojson": _filter_tojson,
    "sum": _filter_sum,
}


def _skip_context(args: tuple[Any, ...]) -> tuple[Any, ...]:
    """The arguments less the context Jinja passes some filters first."""
    return args[1:] if args and isinstance(args[0], (Context, EvalContext, Environment)) else args


def _guard_filter(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    check = _FILTER_CHECKS.get(name)

    @functools.wraps(func)  # keeps jinja_pass_arg: Jinja still passes its context first
    def guarded(*args: Any, **kwargs: Any) -> Any:
        _step()
        limit = _limit()
        data = _skip_context(args)
        if name == "join" and data:  # the items, once, to weigh them before joining
            items = list(data[0])
            _joined(data[1] if len(data) > 1 else kwargs.get("d", ""), items)
            data = (items, *data[1:])
            args = (*args[: len(args) - len(data)], *data)
        for value in (*data, *kwargs.values()):
            weigh(value, limit)
        if check is not None:
            with contextlib.suppress(TypeError):  # wrong arguments: the filter says so
                check(*data, **kwargs)
        return _checked(func(*args, **kwargs))

    return guarded


# ----------------------------------------------------------------------------- compiling


class _Guards(NodeTransformer):
    """Every loop's iterable goes through `guard_loop`; every list, tuple or dict literal and
    every `~` (and each of its parts) through `checked`: both are calls, so the sandbox's
    `call` counts and weighs them."""

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)
        text = sum(
            len(child.data)
            for output in node.body
            if isinstance(output, nodes.Output)
            for child in output.nodes
            if isinstance(child, nodes.TemplateData)
        )
        assert isinstance(node.iter, nodes.Expr)
        node.iter = _call("guard_loop", node.iter, nodes.Const(text))
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        node.nodes = [_call("checked", part) for part in node.nodes if isinstance(part, nodes.Expr)]
        return _call("checked", node)

    def visit_List(self, node: nodes.List) -> nodes.Node:
        return self._literal(node, node.items)

    def visit_Tuple(self, node: nodes.Tuple) -> nodes.Node:
        if node.ctx != "load":
            return self.generic_visit(node)
        return self._literal(node, node.items)

    def visit_Dict(self, node: nodes.Dict) -> nodes.Node:
        return self._literal(node, [part for pair in node.items for part in (pair.key, pair.value)])

    def _literal(self, node: nodes.Expr, parts: Iterable[nodes.Node]) -> nodes.Node:
        self.generic_visit(node)
        if all(isinstance(part, nodes.Const) for part in parts):
            return node  # as large as the template's own text at most
        return _call("checked", node)


def _call(name: str, *args: nodes.Expr) -> nodes.Call:
    call = nodes.Call(nodes.EnvironmentAttribute(name), list(args), [], None, None)
    call.set_lineno(args[0].lineno or 1)
    return call


class _GuardedCodeGenerator(CodeGenerator):
    def visit_Template(self, node: nodes.Template, frame: Frame | None = None) -> None:
        _Guards().visit(node)
        environment = self.environment
        for found in node.find_all(nodes.Call):
            found.set_environment(environment)
        super().visit_Template(node, frame)


# ----------------------------------------------------------------------------- environment


def _count_output(value: Any) -> Any:
    """`finalize`: every `{{ value }}` is weighed and counted before it is made text."""
    spent = _BUDGET.get()
    if spent is not None:  # Budget.output, inlined: this runs for every value a message shows
        spent.chars += len(value) if type(value) is str else weigh(value, spent.limits.chars)
        if spent.chars > spent.limits.chars:
            spent.output(0)  # raises
    return value


def _guard_loop(iterable: Any, text: int) -> Any:
    spent = _BUDGET.get()
    return iterable if spent is None else _turns(iterable, spent, text)


def _turns(iterable: Iterable[Any], spent: Budget, text: int) -> Iterator[Any]:
    """One step per turn, and the loop body's own text counted as written."""
    for item in iterable:
        spent.step()
        if text:
            spent.output(text)
        yield item


class BoundedEnvironment(ImmutableSandboxedEnvironment):
    """The sandbox with the limits above; render inside `with Budget(...)` to enforce time and
    steps (without one, only the size checks apply, e.g. while a template compiles)."""

    intercepted_binops = frozenset({"*", "**", "%", "+"})
    code_generator_class = _GuardedCodeGenerator

    def __init__(self, **options: Any) -> None:
        super().__init__(finalize=_count_output, **options)
        self.filters = {name: _guard_filter(name, f) for name, f in self.filters.items()}
        self.guard_loop = _guard_loop
        self.checked = _checked

    def call(self, context: Context, obj: Any, /, *args: Any, **kwargs: Any) -> Any:
        _step()
        limit = _limit()
        for value in (*args, *kwargs.values()):
            weigh(value, limit)
        receiver = getattr(obj, "__self__", None)
        name = getattr(obj, "__name__", "")
        if isinstance(receiver, (str, bytes, bytearray)):
            if name == "join" and args:
                items = list(args[0])
                _joined(receiver, items)
                args = (items, *args[1:])
            else:
                _text_method(name, receiver, args, kwargs)
        elif isinstance(receiver, int) and name == "to_bytes":
            length = _number(args[0] if args else kwargs.get("length", 1))
            if length > limit:
                raise _too_large("to_bytes", length, limit)
        elif obj is generate_lorem_ipsum:
            words = _number(args[0] if args else kwargs.get("n", 5), 5)
            words *= _number(args[3] if len(args) > 3 else kwargs.get("max", 100), 100)
            if words * 8 > limit:
                raise _too_large("lipsum", words * 8, limit)
        return _checked(super().call(context, obj, *args, **kwargs))

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        limit = _limit()
        if operator == "*":
            sequence, times = (left, right) if _number(right, -1) >= 0 else (right, left)
            count = _number(times, -1)
            if count > 0 and isinstance(sequence, (str, bytes, list, tuple)):
                size = weigh(sequence, limit) * count
                if size > limit:
                    raise _too_large(f"repeating a value {count:,} times", size, limit)
            elif _number(left).bit_length() + _number(right).bit_length() > MAX_INT_BITS:
                raise RenderLimitError("size", "a number would be too large")
        elif operator == "**":
            base, exponent = _number(left), _number(right)
            if exponent > 0 and abs(base) > 1 and exponent * base.bit_length() > MAX_INT_BITS:
                raise RenderLimitError("size", f"{base} ** {exponent:,} would be too large")
        elif operator == "%":
            check_printf(left, right)
        return _checked(super().call_binop(context, operator, left, right))

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None
        fmt: str = value.__self__

        @functools.wraps(wrapped)
        def checked_format(*args: Any, **kwargs: Any) -> str:
            check_format(fmt, args, kwargs)
            result: str = wrapped(*args, **kwargs)
            return result

        return checked_format
