"""Image folders as data: ``folder:PATH``, one sub-folder of images per class.

The layout of torchvision's ``ImageFolder``: the class index of an image is the position of its
sub-folder among the sorted sub-folder names, and images may sit deeper inside it. Any file
whose extension Pillow registers is an image; other files are skipped (and counted). Each image
is converted to ``RGB`` (3 channels, the default) or ``L`` (grey), and, with ``image_size``, its
shorter side is resized to that size (bilinear, as torchvision's ``Resize``) and the centre
square cropped (as ``CenterCrop``). Without ``image_size`` every image must have the same size,
checked from the file headers before anything is decoded. Values are ``pixel / 255`` in [0, 1].

The images are read lazily, batch by batch (:class:`robustness.core.stream.MapStream` with reader
processes), so a folder of any size is streamed; ``load_data`` reads it whole for the audit.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from robustness.core.data import DATA_SCHEMES, DataOptions, Dataset
from robustness.core.errors import DataError
from robustness.core.stream import MapStream


def _image_errors() -> tuple[type[BaseException], ...]:
    """What Pillow raises on a damaged, truncated, unsupported or over-large image."""
    from PIL import Image

    return (OSError, ValueError, SyntaxError, EOFError, MemoryError, Image.DecompressionBombError)


def image_extensions() -> frozenset[str]:
    """The file extensions Pillow can open (lower case, with the dot)."""
    from PIL import Image

    Image.init()
    return frozenset(ext.lower() for ext in Image.registered_extensions())


def scan(root: Path) -> tuple[list[str], list[str], list[int], int]:
    """Class names (sorted sub-folders), image paths relative to ``root`` (posix, sorted within each
    class), their labels, and the number of non-image files skipped."""
    if not root.is_dir():
        raise DataError(
            f"{root} is not a folder" if root.exists() else f"the folder {root} does not exist",
            field="data",
            fix="Give folder:PATH with PATH a folder holding one sub-folder of images per class.",
        )
    classes = sorted(
        entry.name for entry in os.scandir(root) if entry.is_dir() and not entry.name.startswith(".")
    )
    if not classes:
        raise DataError(
            f"{root} has no sub-folders: an image folder holds one sub-folder of images per class",
            field="data",
            fix=f"Put each class's images in {root}/CLASS_NAME/ (the class index is the sorted position of the name).",
        )
    extensions = image_extensions()
    files: list[str] = []
    labels: list[int] = []
    skipped = 0
    for label, name in enumerate(classes):
        found = []
        for folder, subfolders, names in os.walk(root / name, followlinks=True):
            subfolders[:] = sorted(d for d in subfolders if not d.startswith("."))
            for file in names:
                if file.startswith("."):
                    continue
                if os.path.splitext(file)[1].lower() in extensions:
                    found.append(Path(folder, file).relative_to(root).as_posix())
                else:
                    skipped += 1
        if not found:
            raise DataError(
                f"the class folder {root / name} holds no image",
                field="data",
                fix="Add its images (any format Pillow reads), or remove the folder: every sub-folder is a class.",
            )
        found.sort()
        files += found
        labels += [label] * len(found)
    return classes, files, labels, skipped


class ImageFolder(torch.utils.data.Dataset):
    """The images of a folder as a map-style dataset: ``(C x H x W uint8 pixels, label)``; the
    stream turns the pixels into ``pixel / 255`` floats once a batch is handed over."""

    def __init__(
        self, root: Path, files: list[str], labels: list[int], *, image_size: int | None, mode: str
    ) -> None:
        self.root = root
        self.files = files
        self.labels = labels
        self.image_size = image_size
        self.mode = mode

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        pixels = torch.from_numpy(
            decode(self.root / self.files[i], image_size=self.image_size, mode=self.mode)
        )
        pixels = pixels.unsqueeze(0) if pixels.dim() == 2 else pixels.permute(2, 0, 1)
        return pixels.contiguous(), self.labels[i]


def decode(path: Path, *, image_size: int | None, mode: str) -> np.ndarray:
    """The pixels of one image (H x W or H x W x 3, uint8), converted, resized and cropped."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            img = img.convert(mode)
            if image_size is not None:
                img = resize_and_crop(img, image_size)
            return np.array(img, dtype=np.uint8)  # a writable copy, for torch.from_numpy
    except _image_errors() as exc:
        raise DataError(
            f"cannot read the image {path}: {type(exc).__name__}: {exc}",
            field="data",
            fix="Repair or remove the file (any format Pillow reads is an image).",
        ) from None


def resize_and_crop(img: Any, size: int) -> Any:
    """Shorter side to ``size`` (bilinear), then the centre ``size`` x ``size`` square: torchvision's
    ``Resize(size)`` followed by ``CenterCrop(size)``."""
    from PIL import Image

    w, h = img.size
    if (w <= h and w == size) or (h <= w and h == size):
        resized = img
    elif w <= h:
        resized = img.resize((size, int(size * h / w)), Image.BILINEAR)
    else:
        resized = img.resize((int(size * w / h), size), Image.BILINEAR)
    w, h = resized.size
    left, top = int(round((w - size) / 2.0)), int(round((h - size) / 2.0))
    return resized.crop((left, top, left + size, top + size))


def common_size(root: Path, files: list[str]) -> tuple[int, int]:
    """The one size (width, height) of all images, read from their headers; a different one, or an
    unreadable file, is an error naming it."""
    from PIL import Image

    first: tuple[int, int] | None = None
    for name in files:
        try:
            with Image.open(root / name) as img:
                size = img.size
        except _image_errors() as exc:
            raise DataError(
                f"cannot read the image {root / name}: {type(exc).__name__}: {exc}",
                field="data",
                fix="Repair or remove the file (any format Pillow reads is an image).",
            ) from None
        if first is None:
            first = size
        elif size != first:
            raise DataError(
                f"the image {root / name} is {size[0]}x{size[1]} but {root / files[0]} is {first[0]}x{first[1]}; "
                "images of different sizes cannot form one batch",
                field="data.image_size",
                fix="Set --image-size N (config data.image_size) to resize the shorter side to N and crop the "
                "centre square, or resize the images first.",
            )
    assert first is not None  # scan() found at least one image
    return first


def folder_path(spec: str) -> Path:
    rest = spec.partition(":")[2]
    if not rest:
        raise DataError(f"{spec!r} names no folder", field="data", fix="Write folder:PATH.")
    return Path(rest).expanduser()


def open_folder(spec: str, options: DataOptions) -> MapStream:
    """``folder:PATH`` as a stream of its images, read by reader processes batch by batch."""
    root = folder_path(spec)
    classes, files, labels, skipped = scan(root)
    mode = options.image_mode or "RGB"
    meta: dict[str, Any] = {"format": "image folder", "class_names": classes, "image_mode": mode}
    if options.image_size is None:
        width, height = common_size(root, files)
        meta["image_size"] = [height, width]
    else:
        meta["image_size"] = [options.image_size, options.image_size]
    if skipped:
        meta["skipped_files"] = skipped
    source = ImageFolder(root, files, labels, image_size=options.image_size, mode=mode)
    return MapStream(
        spec,
        source,
        workers=options.workers,
        parallel=True,
        pixels=True,
        ids=files,
        num_classes=len(classes),
        meta=meta,
    )


def _scheme() -> Any:
    def load(spec: str) -> Dataset:
        return open_folder(spec, DataOptions()).materialize()

    load.open = open_folder  # type: ignore[attr-defined]
    # what 'robustness validate' checks without decoding the images: the layout is there
    load.check = lambda spec: scan(folder_path(spec))  # type: ignore[attr-defined]
    return load


DATA_SCHEMES.add("folder", _scheme())
