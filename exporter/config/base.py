"""What every config model shares: strictness, errors that blame a key, ``*_file`` secrets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationInfo
from pydantic_core import PydanticCustomError

# A validator that wants to blame a key other than the one pydantic is validating raises this
# error type; ``path`` is relative to the model being validated ("" means the model itself).
PATH_ERROR = "config_path"


def error_at(path: str, message: str) -> PydanticCustomError:
    """An error that ``loading`` reports at ``path`` (relative to the model validating)."""
    return PydanticCustomError(PATH_ERROR, "{message}", {"path": path, "message": message})


class StrictModel(BaseModel):
    """The base of every config model: frozen, and strict about keys and numbers."""

    # Unknown keys are misspellings; infinities and NaN are never meant as durations or rates.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


def no_repeats(values: list[str]) -> list[str]:
    """A list validator: every value at most once."""
    if len(set(values)) != len(values):
        raise ValueError("must not list the same value twice")
    return values


def secret_from_file(
    data: Any, field: str, info: ValidationInfo, *, keep_path: bool = False
) -> Any:
    """Replace ``<field>_file`` by ``<field>``: the file's content minus one trailing newline.

    With ``keep_path`` (for a model that declares ``<field>_file``, to watch the file), keep
    ``<field>_file`` too, as the file's resolved path.
    """
    file_key = f"{field}_file"
    if not isinstance(data, dict) or file_key not in data:
        return data
    if field in data:
        raise error_at(file_key, f"cannot be used together with {field}; give only one")
    name = data[file_key]
    if not isinstance(name, str) or not name:
        raise error_at(file_key, "must be the path of a file")
    path = Path(name)
    base_dir = info.context.get("base_dir") if isinstance(info.context, dict) else None
    if isinstance(base_dir, Path) and not path.is_absolute():
        path = base_dir / path
    try:
        content = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise error_at(file_key, f"cannot read {path}: not UTF-8 text") from None
    except OSError as exc:
        raise error_at(file_key, f"cannot read {path}: {exc.strerror or 'read error'}") from None
    except ValueError:  # e.g. a NUL character in the file name
        raise error_at(file_key, "is not a valid file name") from None
    if content.endswith("\r\n"):
        content = content[:-2]
    elif content.endswith("\n"):
        content = content[:-1]
    remaining = {key: value for key, value in data.items() if key != file_key}
    remaining[field] = content
    if keep_path:
        remaining[file_key] = str(path)
    return remaining
