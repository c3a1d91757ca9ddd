"""Whether a training command continues the run saved in its state file.

Every `vqa train ...` command saves its run (weights, optimizer, step, RNG states and the
settings it was started with) as it goes. Run again, the same command continues that run:
after a kill -9 it ends with the weights an uninterrupted run ends with. The decision:

- `mode="auto"` (the commands' default): no state file: a new run. A state file saved
  with the same settings: continue it. Saved with other settings: refused with one line
  naming the first setting that differs (`DataError`), so that a changed command never
  silently continues, nor silently overwrites, another run.
- `mode=True` (`--resume`): continue it, unchecked (as `--resume` always did): for training
  on to a new length (`steps`, `epochs`); each trainer takes what it always took from the
  command (the question parsers keep the saved settings but `steps` and `threads`).
- `mode=False` (`--restart`): a new run; the state file is overwritten as it goes.

Settings that do not change what is learned (threads, device, time limits, how often
checkpoints are written) may differ. Settings are compared as JSON values (tuples and
lists alike); a setting missing on either side (a state file of an older version) is
not compared.
"""
from __future__ import annotations

import json
from pathlib import Path

from .errors import DataError

# settings that do not change the weights a run ends with (or only its pace)
NOT_COMPARED = frozenset({"threads", "device", "max_minutes", "resume", "log_every", "ckpt_every",
                          "checkpoint_every", "out", "progress", "workers"})
LENGTHS = frozenset({"steps", "epochs"})


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(_flat(v, key + "."))
        else:
            out[key] = v
    return out


def _norm(v):
    return json.loads(json.dumps(v, default=str))


def differences(saved: dict, now: dict, *, ignore=NOT_COMPARED) -> list[tuple[str, object, object]]:
    """(setting, saved value, value now) for each compared setting that differs."""
    a, b = _flat(_norm(saved)), _flat(_norm(now))
    out = []
    for key in b:
        if key in a and key.split(".")[-1] not in ignore and key not in ignore and a[key] != b[key]:
            out.append((key, a[key], b[key]))
    return out


def flag(setting: str, flags: dict | None = None) -> str:
    """The command-line flag of a setting ("model.n_kv_heads" -> flags' or "--n-kv-heads")."""
    if flags and setting in flags:
        return flags[setting]
    return "--" + setting.split(".")[-1].replace("_", "-")


def _show(v) -> str:
    if v is None:
        return "(none)"
    if isinstance(v, list):
        return ",".join(map(str, v)) if v else "(none)"
    return str(v)


def continue_run(mode, saved: dict | None, now: dict, *, file, flags: dict | None = None,
                 required: bool = False) -> bool:
    """True: continue the run whose settings are `saved` (None: there is no state file);
    False: start a new one. `now`: this command's settings. `required`: `--resume` without
    a state file is an error (otherwise a new run starts). Raises DataError naming the file
    and the first differing setting when the saved run is not this command's."""
    if mode is False or mode == "restart":
        return False
    if saved is None:
        if mode is True and required:
            raise DataError("nothing to resume (no state file); leave out --resume to start a new run", file=file)
        return False
    if mode is True:
        return True
    diff = differences(saved, now)
    if diff:
        key, old, new = diff[0]
        more = f" (and {len(diff) - 1} more setting(s))" if len(diff) > 1 else ""
        hint = ("--resume to train it on to the new length, or --restart to start over" if key in LENGTHS
                else "--restart to start over")
        raise DataError(f"holds a run trained with {flag(key, flags)} {_show(old)}, this command has "
                        f"{_show(new)}{more}: give the same settings to continue it, or {hint}",
                        file=file, field=key)
    return True


def load_state(path, loader) -> dict | None:
    """`loader(path)` if the file exists (None otherwise), with an unreadable file (e.g. cut
    short by a full disk) reported as one line."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        state = loader(path)
    except DataError:
        raise
    except Exception as e:  # torch's unpickling errors have no common type
        raise DataError(f"cannot read the saved run ({type(e).__name__}: {str(e)[:200]}); "
                        "add --restart to start over", file=path) from None
    if not isinstance(state, dict):
        raise DataError("not a saved training run; add --restart to start over", file=path)
    return state


def check_size(saved: int | None, now: int, *, file, what: str = "training examples") -> None:
    """A continued run must train on as many examples as it was started with (the files at
    the same paths may have been written anew)."""
    if saved is not None and int(saved) != int(now):
        raise DataError(f"holds a run trained on {int(saved):,} {what}, this command's training data has "
                        f"{int(now):,}: give the same data to continue it, or --restart to start over", file=file)


def not_a_run(file, what: str) -> DataError:
    """The error for a file at the state path that holds no training state (e.g. a shipped model)."""
    return DataError(f"holds a {what} without training state (optimizer, step), not a run to continue; "
                     "add --restart to overwrite it, or choose another --out", file=file)
