"""Output paths checked before any work: one line naming the path, nothing created.

`--out` folders (evaluate, compare), image files (inspect) and workdirs are checked up front,
so that a bad path fails in a second with `error: ...` instead of after generation or
training. Nothing is created here: writability is probed with a temporary file in the
nearest folder that exists, which is removed at once.
"""

from __future__ import annotations

import os
from pathlib import Path

from advfusion_cli.errors import UserError


def _nearest_existing(path: Path) -> Path:
    absolute = Path(os.path.abspath(path))
    return next(p for p in (absolute, *absolute.parents) if p.exists())


def _probe(folder: Path) -> str | None:
    """None when a file can be created in `folder`, else the reason."""
    probe = folder / f".advfusion-write-test-{os.getpid()}"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        return err.strerror or str(err)
    return None


def _writable_reason(path: Path) -> str | None:
    """Why a folder at `path` could not be created and written to, or None."""
    existing = _nearest_existing(path)
    if not existing.is_dir():
        return f"'{existing}' is a file, not a folder"
    return _probe(existing)


def folder_option(text: Path | str, option: str) -> Path:
    """An output folder option as typed, refused when empty (Path('') would silently mean
    '.'); no file system access, so commands can convert it as they parse their options."""
    if not str(text).strip():
        raise UserError(f"{option} needs a folder name (got ''); use '.' for this folder.")
    return Path(text).expanduser()


def check_output_folder(path: Path | str, option: str) -> Path:
    """A folder the command will write into (created if missing): refuse '' (an empty
    argument, not '.'), files, paths under files and folders that cannot be created or
    written."""
    folder = folder_option(path, option)
    if folder.exists() and not folder.is_dir():
        raise UserError(f"{option} '{folder}' is an existing file; give a folder.")
    reason = _writable_reason(folder)
    if reason is not None:
        raise UserError(f"{option} '{folder}' is not writable: {reason}.")
    return folder


def check_workdir(path: Path | str) -> Path:
    """The same one line `train-adapters` gives for a workdir that cannot be written."""
    workdir = Path(path).expanduser()
    if workdir.exists() and not workdir.is_dir():
        raise UserError(f"Workdir '{workdir}' is not writable: Not a directory.")
    reason = _writable_reason(workdir)
    if reason is not None:
        raise UserError(f"Workdir '{workdir}' is not writable: {reason}.")
    return workdir


def image_formats() -> list[str]:
    """File extensions matplotlib can save (png, pdf, svg, jpg, ...)."""
    from matplotlib.figure import Figure

    return sorted(Figure().canvas.get_supported_filetypes())


def check_image_file(path: Path | str, option: str, *, overwrite: bool = False) -> Path:
    """An image file to write: no extension gets .png; the extension must be one matplotlib
    saves; an existing folder is refused, an existing file too unless `overwrite`."""
    text = str(path)
    if not text.strip() or text.strip() == ".":
        raise UserError(f"{option} needs an image file name (got '{path}').")
    image = Path(path).expanduser()
    if image.is_dir():
        raise UserError(
            f"{option} '{image}' is a folder; give an image file (e.g. "
            f"{image / 'fusion-attention.png'})."
        )
    if not image.suffix:
        image = image.with_name(image.name + ".png")
    formats = image_formats()
    extension = image.suffix[1:].lower()
    if extension not in formats:
        raise UserError(
            f"{option} '{image}': format '{extension}' is not supported; use one of "
            f"{', '.join(formats)}."
        )
    if image.is_dir():
        raise UserError(f"{option} '{image}' is a folder; give an image file.")
    if image.exists() and not overwrite:
        raise UserError(
            f"{option} '{image}' already exists; pass --overwrite to replace it or pick "
            "another path."
        )
    reason = _writable_reason(image.parent)
    if reason is not None:
        raise UserError(f"{option} '{image}': its folder is not writable: {reason}.")
    return image
