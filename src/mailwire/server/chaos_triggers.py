"""``Chaos`` as JSON: Mailpit's ``ChaosTriggers``, unchanged, and mailwire's additions.

Mailpit's ``GET/PUT /api/v1/chaos`` body is ``{"Sender": T, "Recipient": T,
"Authentication": T}`` with ``T = {"ErrorCode": 400-599, "Probability":
0-100}`` (a percentage; 0 is off); a trigger left out of a PUT is turned
off, and ``{}`` turns all off. That body means the same here, so Mailpit's
clients work unchanged. Added, all optional:

* two more triggers: ``Connect`` (the greeting) and ``Data`` (the message);
* in a trigger: ``Times`` (fire for the first N attempts it matches, then
  never; with it, ``Probability`` defaults to 100), ``Match`` (an address
  pattern, ``*@flaky.test``), ``Text`` and ``EnhancedCode`` (the reply's);
  ``Fired`` (how often it fired) is reported, and ignored in a PUT;
* a list of triggers in place of one, tried in order;
* ``Seed``: the random draws restart from it, so a probability gives the
  same failures on every run.

A GET reports every trigger, one a stage has none of as Mailpit reports it
(``Probability`` 0). ``from_json`` raises ``ValueError`` (the API's 400) for
anything it does not know or that is out of range; nothing here does I/O,
so the web route (``web/chaos.py``) and the client of a running server
(``_testing/chaos.py``) share it.
"""

from __future__ import annotations

from typing import Any

from .chaos import DEFAULT_TEXT, Chaos, Fault

__all__ = ["to_json", "from_json", "trigger", "KEYS"]

# Mailpit's trigger names (the first three) and mailwire's, by stage.
KEYS = {"mail": "Sender", "rcpt": "Recipient", "auth": "Authentication", "connect": "Connect", "data": "Data"}
_STAGES = {key: stage for stage, key in KEYS.items()}
_DEFAULT_CODE = {"mail": 451, "rcpt": 451, "auth": 535, "connect": 421, "data": 451}
_FIELDS = {"ErrorCode", "Probability", "Times", "Match", "Text", "EnhancedCode", "Fired"}


def trigger(fault: Fault, fired: int | None = None) -> dict[str, Any]:
    """One fault as a trigger object."""
    percent = 100.0 if fault.probability is None else fault.probability * 100
    data: dict[str, Any] = {"ErrorCode": fault.code, "Probability": int(percent) if percent.is_integer() else percent}
    if fault.times is not None:
        data["Times"] = fault.times
    if fault.match is not None:
        data["Match"] = fault.match
    if fault.text != DEFAULT_TEXT:
        data["Text"] = fault.text
    if fault.enhanced is not None:
        data["EnhancedCode"] = fault.enhanced
    if fired is not None:
        data["Fired"] = fired
    return data


def to_json(chaos: Chaos) -> dict[str, Any]:
    """What ``GET /api/v1/chaos`` answers."""
    faults, fired = chaos.faults, chaos.fired
    data: dict[str, Any] = {}
    for stage, key in KEYS.items():
        mine = [trigger(f, n) for f, n in zip(faults, fired) if f.stage == stage]
        off = {"ErrorCode": _DEFAULT_CODE[stage], "Probability": 0}
        data[key] = off if not mine else mine[0] if len(mine) == 1 else mine
    data["Seed"] = chaos.seed
    return data


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{what} must be a number, not {value!r}")
    return float(value)


def _string(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{what} must be a string, not {value!r}")
    return value


def _fault(stage: str, key: str, item: Any) -> Fault | None:
    """A trigger object as a fault; None for one that is off (Probability 0)."""
    if not isinstance(item, dict):
        raise ValueError(f"{key} must be an object or a list of objects")
    unknown = set(item) - _FIELDS
    if unknown:
        raise ValueError(f"{key}: unknown field {sorted(unknown)[0]!r} (known: {', '.join(sorted(_FIELDS))})")
    code = item.get("ErrorCode", _DEFAULT_CODE[stage])
    if isinstance(code, bool) or not isinstance(code, int):
        raise ValueError(f"{key}.ErrorCode must be a whole number 400-599, not {code!r}")
    times = item.get("Times")
    if times is not None and (isinstance(times, bool) or not isinstance(times, int) or times < 1):
        raise ValueError(f"{key}.Times must be a whole number of at least 1, not {times!r}")
    percent = _number(item.get("Probability", 100 if times is not None else 0), f"{key}.Probability")
    if not 0 <= percent <= 100:
        raise ValueError(f"{key}.Probability must be 0 to 100, not {item.get('Probability')!r}")
    if percent == 0:
        return None
    match = item.get("Match")
    try:
        return Fault(
            stage, code, times=times, probability=None if percent == 100 else percent / 100,
            match=None if match is None else _string(match, f"{key}.Match"),
            text=_string(item.get("Text", DEFAULT_TEXT), f"{key}.Text"),
            enhanced=None if item.get("EnhancedCode") is None else _string(item["EnhancedCode"], f"{key}.EnhancedCode"),
        )
    except ValueError as err:
        raise ValueError(f"{key}: {err}") from None


def from_json(data: Any) -> tuple[list[Fault], int | None]:
    """A ``PUT /api/v1/chaos`` body as (faults, seed); ValueError if it is not one."""
    if not isinstance(data, dict):
        raise ValueError("expected a JSON object of triggers: Sender, Recipient, Authentication, Connect, Data")
    unknown = set(data) - set(_STAGES) - {"Seed"}
    if unknown:
        raise ValueError(f"unknown trigger {sorted(unknown)[0]!r} (known: {', '.join([*_STAGES, 'Seed'])})")
    seed = data.get("Seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise ValueError(f"Seed must be a whole number, not {seed!r}")
    faults: list[Fault] = []
    for key, stage in _STAGES.items():
        value = data.get(key)
        if value is None:
            continue
        for item in value if isinstance(value, list) else [value]:
            fault = _fault(stage, key, item)
            if fault is not None:
                faults.append(fault)
    return faults, seed
