"""The assessor LoRA's training records: read, check and split what `understand export-sft --format openai` writes.

A record is one JSON line `{"messages": [system, user (image_url + text), assistant (the answer JSON)]}`.
A bad record is skipped and counted with its reason (`SKIP_KINDS`), never trained on:

- `malformed`: not a JSON object;
- `schema`: not the OpenAI chat layout with one image and one text in the user turn, or an answer that the
  assessor's answer schema (`[assessor] output`, `explanations`) refuses;
- `missing_image`: the image file does not exist (or is not a regular file);
- `outside`: the image resolves outside the records' folder and every `--images` folder (an absolute path,
  `..`, or a symbolic link leading out);
- `bad_image`: the file is not an image PIL can open.

Image references are local paths (absolute, or relative to the records file's folder) or `file://` URLs.
Nothing here loads torch.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from pydantic import ValidationError

from portraitcraft.agents.assessor import answer_schema, full_user_text, request_text, system_text
from portraitcraft.agents.assessor_sft import base_view
from portraitcraft.bounded import read_text
from portraitcraft.config import AssessorConfig
from portraitcraft.data import is_inside
from portraitcraft.errors import DataError

SKIP_KINDS: tuple[str, ...] = ("malformed", "schema", "missing_image", "outside", "bad_image")
RECORD_SUFFIXES: tuple[str, ...] = (".jsonl",)


@dataclass(frozen=True)
class AssessorRecord:
    """One usable training record.

    Attributes:
        where: `file:line` of the record (for messages).
        image: the image's resolved path (inside an allowed folder).
        system: the system text.
        user: the user text (as the endpoint receives it).
        answer: the assistant turn (the answer JSON, validated by the assessor's schema).
    """

    where: str
    image: Path
    system: str
    user: str
    answer: str

    def row(self) -> dict[str, Any]:
        """The dataset row the collator reads (`images` marks it as a vision dataset for TRL)."""
        return {"images": [str(self.image)], "system": self.system, "user": self.user, "answer": self.answer,
                "where": self.where}


@dataclass(frozen=True)
class Skipped:
    """A record that was not used: where it is, which kind of problem (`SKIP_KINDS`), and the problem."""

    where: str
    kind: str
    problem: str

    def __str__(self) -> str:
        return f"{self.where}: {self.problem}"


@dataclass
class RecordSet:
    """What `read_records` found: the usable records, the skipped ones, the files read and the prompt check."""

    records: list[AssessorRecord] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    prompt_mismatch: int = 0
    """Usable records whose system or user text differs from what `understand` sends with this config."""

    def skip_counts(self) -> dict[str, int]:
        """Skipped records per kind (every kind listed, zeros included)."""
        counts = Counter(s.kind for s in self.skipped)
        return {kind: counts.get(kind, 0) for kind in SKIP_KINDS}

    def digest(self) -> str:
        """A short hash of the usable records (what a checkpoint was trained on)."""
        h = hashlib.sha256()
        for r in self.records:
            h.update(json.dumps([str(r.image), r.system, r.user, r.answer]).encode())
        return h.hexdigest()[:16]


class _Skip(Exception):
    def __init__(self, kind: str, problem: str) -> None:
        super().__init__(problem)
        self.kind, self.problem = kind, problem


def record_files(path: str | Path) -> tuple[Path, list[Path]]:
    """The records' folder and the record files: a file itself, or every `*.jsonl` directly in a folder.

    Raises:
        DataError: the path does not exist, or a folder holds no `*.jsonl` file.
    """
    p = Path(path)
    if p.is_dir():
        files = sorted(f for f in p.iterdir() if f.suffix in RECORD_SUFFIXES and f.is_file())
        if not files:
            raise DataError(f"{p}: no *.jsonl records in this folder (write them with `portraitcraft understand "
                            "export-sft ... --format openai --out DIR`)")
        return p, files
    if not p.exists():
        raise DataError(f"{p}: records file does not exist")
    return p.parent, [p]


def expected_prompt(cfg: AssessorConfig) -> tuple[str, str]:
    """(system, user) text the assessor sends for the records' view with this config (see `sft_record`)."""
    prompt, _, _ = request_text(None, base_view(cfg), cfg)
    return system_text(), full_user_text(prompt, answer_schema(cfg.output, (), cfg.explanations), cfg.kind)


def read_records(path: str | Path, cfg: AssessorConfig, *, image_roots: Sequence[str | Path] = ()) -> RecordSet:
    """Read and check the records at `path` (a file, or a folder of `*.jsonl`); bad ones are skipped.

    Args:
        path (str | Path): the records file or the folder `understand export-sft --out` wrote.
        cfg (AssessorConfig): the assessor whose answer schema and prompt the records must match.
        image_roots (sequence of paths, optional): folders images may live in besides the records' folder
            (the `--images` folder the export read).

    Example:
        >>> found = read_records("runs/sft", cfg.assessor, image_roots=["data/images"])  # doctest: +SKIP
        >>> len(found.records), found.skip_counts()["missing_image"]                     # doctest: +SKIP
        (47863, 0)
    """
    folder, files = record_files(path)
    roots = [_resolved_root(r) for r in (folder, *image_roots)]
    schema = answer_schema(cfg.output, (), cfg.explanations)
    system, user = expected_prompt(cfg)
    found = RecordSet(files=files)
    for file in files:
        text = read_text(file, what="records file")
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            where = f"{file.name}:{number}"
            try:
                record = _parse(line, where, file.parent, roots, schema, cfg)
            except _Skip as skip:
                found.skipped.append(Skipped(where, skip.kind, skip.problem))
                continue
            found.records.append(record)
            if (record.system, record.user) != (system, user):
                found.prompt_mismatch += 1
    return found


def _resolved_root(root: str | Path) -> Path:
    try:
        return Path(root).expanduser().resolve(strict=True)
    except (OSError, RuntimeError):
        raise DataError(f"{root}: images folder does not exist") from None


def _parse(line: str, where: str, base: Path, roots: list[Path], schema: Any, cfg: AssessorConfig) -> AssessorRecord:
    try:
        data = json.loads(line)
    except (ValueError, RecursionError):
        raise _Skip("malformed", "not a JSON object (a torn or edited line?)") from None
    if not isinstance(data, dict):
        raise _Skip("malformed", "not a JSON object")
    system, user, image_ref, answer = _messages(data.get("messages"))
    try:
        schema.model_validate_json(answer)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"]) or "(answer)"
        raise _Skip("schema", f"the answer does not match the assessor's answer schema (output={cfg.output}, "
                    f"explanations={cfg.explanations}): {loc}: {first['msg']}") from None
    return AssessorRecord(where, _image(image_ref, base, roots), system, user, answer)


def _messages(messages: Any) -> tuple[str, str, str, str]:
    """(system, user text, image reference, answer) of an OpenAI-layout record, or a `schema` skip."""
    if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
        raise _Skip("schema", "no `messages` list (export with `understand export-sft --format openai`)")
    roles = [m.get("role") for m in messages]
    if roles == ["user", "assistant"]:
        messages = [{"role": "system", "content": ""}, *messages]
    elif roles != ["system", "user", "assistant"]:
        raise _Skip("schema", f"messages have roles {roles}; expected system, user, assistant")
    system, user, assistant = (m.get("content") for m in messages)
    if not isinstance(system, str) or not isinstance(assistant, str):
        raise _Skip("schema", "the system and assistant contents must be text")
    if not isinstance(user, list):
        raise _Skip("schema", "the user turn has no image (its content must be [image_url, text] parts)")
    images = [p for p in user if isinstance(p, dict) and p.get("type") == "image_url"]
    texts = [p for p in user if isinstance(p, dict) and p.get("type") == "text"]
    if len(images) != 1 or len(texts) != 1 or len(user) != 2:
        raise _Skip("schema", f"the user turn has {len(images)} image(s) and {len(texts)} text part(s) in "
                    f"{len(user)} part(s); expected one image and one text")
    url = images[0].get("image_url")
    url = url.get("url") if isinstance(url, dict) else url
    text = texts[0].get("text")
    if not isinstance(url, str) or not url or not isinstance(text, str):
        raise _Skip("schema", "the image part has no url or the text part no text")
    return system, text, url, assistant


def _image(ref: str, base: Path, roots: list[Path]) -> Path:
    """The image's resolved path, checked: local, inside an allowed folder, a regular file PIL can open."""
    scheme = urlparse(ref).scheme.lower()
    if scheme == "file":
        ref = unquote(urlparse(ref).path)
    elif len(scheme) > 1:  # http(s), data, ...; a one-letter "scheme" is a Windows drive
        raise _Skip("schema", f"image {ref[:60]!r}: only local image paths are supported ({scheme}: URL)")
    candidate = Path(ref).expanduser()
    if not candidate.is_absolute():
        candidate = base / candidate
    if "\x00" in ref:
        raise _Skip("schema", "image path contains a NUL byte")
    try:
        real = candidate.resolve(strict=True)
    except FileNotFoundError:
        raise _Skip("missing_image", f"image {candidate} does not exist") from None
    except (OSError, RuntimeError, ValueError) as exc:
        raise _Skip("missing_image", f"image {candidate} cannot be read ({exc})") from None
    if not any(is_inside(real, root) for root in roots):
        shown = ", ".join(str(r) for r in roots)
        raise _Skip("outside", f"image {candidate} is outside the records' folder and --images folders ({shown}); "
                    "pass --images DIR for the folder the export read")
    if not real.is_file():
        raise _Skip("missing_image", f"image {candidate} is not a regular file")
    problem = _image_problem(real)
    if problem:
        raise _Skip("bad_image", f"image {candidate}: {problem}")
    return real


def _image_problem(path: Path) -> str | None:
    """None when PIL recognises the file as an image (its header; pixels are decoded when batched)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            width, height = im.size
    except UnidentifiedImageError:
        return "not a recognisable image"
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        return f"cannot be opened ({exc})"
    return None if width > 0 and height > 0 else "has no pixels"


def split_records(records: Sequence[AssessorRecord], fraction: float, max_held_out: int,
                  seed: int) -> tuple[list[AssessorRecord], list[AssessorRecord]]:
    """(train, held out): a seeded, order-independent choice of `fraction` of the records for eval_loss.

    At least one record is held out when `fraction` > 0 and there are two or more; at most `max_held_out`.

    Example:
        >>> recs = [AssessorRecord(f"r:{i}", Path(f"{i}.jpg"), "", "", "{}") for i in range(10)]
        >>> train, held = split_records(recs, 0.2, 256, seed=0)
        >>> len(train), len(held)
        (8, 2)
    """
    if fraction <= 0 or len(records) < 2:
        return list(records), []
    want = min(max_held_out, len(records) - 1, max(1, round(fraction * len(records))))

    def rank(r: AssessorRecord) -> str:
        return hashlib.sha256(f"{seed}:{r.image}:{r.where}".encode()).hexdigest()

    held = set(id(r) for r in sorted(records, key=rank)[:want])
    return [r for r in records if id(r) not in held], [r for r in records if id(r) in held]


__all__ = [
    "SKIP_KINDS",
    "AssessorRecord",
    "RecordSet",
    "Skipped",
    "expected_prompt",
    "read_records",
    "record_files",
    "split_records",
]
