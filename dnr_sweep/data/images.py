"""Decoding one image file of an image-folder data set (Tiny-ImageNet), with a damaged file named.

The folder data sets decode lazily, one file per item, so a corrupt or truncated JPEG surfaces in the middle
of training; :func:`open_rgb` turns the decoder's error (``PIL.UnidentifiedImageError``, "image file is
truncated", ...) into :class:`ImageDecodeError`: the file, the decoder's reason and how to get a good copy.

``DataLoader`` workers send an exception to the main process as its type and traceback text, and rebuild it
as ``type(text)``; :class:`ImageDecodeError` takes that one argument too and keeps only its own message from
it, so the user sees the same one line with ``data.num_workers > 0``.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from dnr_sweep.foundation.errors import InputFileError, UserError


class ImageDecodeError(InputFileError):
    """An image file of a data set that the decoder cannot read."""

    def __init__(self, path: object, problem: str | None = None, *, folder: Path | None = None) -> None:
        if problem is None:  # rebuilt by a DataLoader from a worker's "Caught ... Original Traceback" text
            text, marker = str(path), f"{type(self).__name__}: "
            UserError.__init__(self, text.rsplit(marker, 1)[-1].strip() if marker in text else text)
            self.path = None
            return
        where = folder if folder is not None else Path(str(path)).parent
        super().__init__(
            path,
            f"cannot be decoded as an image ({problem})",
            expected="an intact image file of the data set",
            fix=f"The copy on disk is damaged: delete {where} and fetch it again (`dnr-sweep data fetch DATASET "
            f"--root {where.parent}` checks the archive's MD5)",
        )


def open_rgb(path: Path, *, folder: Path | None = None) -> Image.Image:
    """The image at ``path`` decoded as RGB (some Tiny-ImageNet JPEGs are greyscale).

    Raises:
        ImageDecodeError: the file is not an image the decoder reads (corrupt, truncated, another format);
            ``folder`` is the data set's folder the fix names.
    """
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        if isinstance(exc, FileNotFoundError):
            problem = "the file is missing"
        else:
            problem = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        raise ImageDecodeError(path, problem.replace("\n", " "), folder=folder) from None
