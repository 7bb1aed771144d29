"""The audit anchor: the event log's heads, signed with a server key into a file of checkpoints.

The hash chain (:mod:`command.events`) shows an event changed in place, but not a log cut short,
nor a log whose events were changed and every hash after them recomputed. The head table shows
the first (the head stays at the real end); a signed checkpoint outside the database shows the
second, and a head rolled back with the events: whoever rewrites the table cannot rewrite what
was signed, and cannot sign anew without the key. An auditor who keeps an export of the
checkpoints and the public key can check the database off the server (``docs/audit.md``).

Files (paths from the settings; defaults beside the SQLite database, or under ``var/``; see
:func:`anchor_files`):

- the key: an Ed25519 private key, PEM (PKCS#8), mode 600, created on first use;
- the checkpoints: JSON lines ``{"v", "site", "seq", "hash", "at", "key_id", "signature"}``,
  only ever appended to; the signature is over :data:`DOMAIN` and the line's other fields as
  canonical JSON (sorted keys, no spaces, UTF-8);
- the keyring beside them (``NAME.keys.jsonl``): every public key that has signed, by key id,
  so that lines signed before a key rotation still verify.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from command import events as event_log
from command.events import ChainBreak, ChainWalk, Head
from command.settings import Settings
from gis.errors import RallypointError
from gis.storage.db import Database
from plans.clock import Clock

log = logging.getLogger(__name__)

#: Signed before the payload, so that a checkpoint signature means nothing anywhere else.
DOMAIN = b"rallypoint audit checkpoint v1\n"
VERSION = 1
_HEX64 = re.compile(r"[0-9a-f]{64}")
_FIELDS = ("site", "seq", "hash", "at", "key_id")


class AuditKeyError(RallypointError):
    """The key, keyring or checkpoint file cannot be used as it is."""

    status_code = 500
    slug = "audit-key"
    title = "Audit key or checkpoints unusable"


# -- files ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AnchorFiles:
    key: Path
    checkpoints: Path

    @property
    def keyring(self) -> Path:
        return keyring_path(self.checkpoints)


def keyring_path(checkpoints: Path) -> Path:
    """The public keys that signed ``checkpoints``: ``rallypoint-checkpoints.keys.jsonl``
    beside ``rallypoint-checkpoints.jsonl`` (an export keeps the pair together)."""
    return checkpoints.with_name(f"{checkpoints.stem}.keys.jsonl")


def anchor_files(settings: Settings) -> AnchorFiles | None:
    """The key and checkpoint files: the settings' own, or beside the SQLite database (``var/``
    for PostGIS), where the server's other state lives. The default checkpoint file is named
    after the database (``var/rallypoint-checkpoints.jsonl`` for ``var/rallypoint.db``): one
    file holds one database's heads, so two databases never sign into the same file. None for
    an in-memory database, unless the settings name both files: it has nothing to anchor."""
    url = make_url(settings.database_url)
    name = url.database or ""
    var: Path | None = Path("var")
    if url.get_backend_name() == "sqlite":
        in_memory = name in ("", ":memory:") or name.startswith("file::memory:")
        var, name = (None, "") if in_memory else (Path(name).parent, Path(name).stem)
    stem = re.sub(r"[^A-Za-z0-9_.-]", "_", name) or "rallypoint"
    key = settings.audit_key or (var / "audit-key.pem" if var else None)
    checkpoints = settings.audit_checkpoints or (var / f"{stem}-checkpoints.jsonl" if var else None)
    if key is None or checkpoints is None:
        return None
    return AnchorFiles(key=key, checkpoints=checkpoints)


def required_files(settings: Settings) -> AnchorFiles:
    """:func:`anchor_files`, for commands that cannot go on without them."""
    files = anchor_files(settings)
    if files is None:
        raise AuditKeyError(
            "an in-memory database has no default audit files: set RALLYPOINT_AUDIT_KEY and "
            "RALLYPOINT_AUDIT_CHECKPOINTS"
        )
    return files


# -- keys -----------------------------------------------------------------------------------------


def key_id(public: Ed25519PublicKey) -> str:
    """A short name of a public key: the first 16 hex digits of SHA-256 of its raw bytes."""
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def public_pem(public: Ed25519PublicKey) -> str:
    return public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def parse_public_pem(text: bytes, *, source: str) -> Ed25519PublicKey:
    try:
        public = serialization.load_pem_public_key(text)
    except ValueError as exc:
        raise AuditKeyError(f"{source} is not a PEM public key: {exc}") from None
    if not isinstance(public, Ed25519PublicKey):
        raise AuditKeyError(f"{source} is not an Ed25519 public key")
    return public


def _private_pem(private: Ed25519PrivateKey) -> bytes:
    return private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _write_private(path: Path, private: Ed25519PrivateKey, *, replace: bool) -> bool:
    """Write the key at ``path`` with mode 600 from the first byte; False when ``replace`` is
    off and another process has created the key meanwhile (theirs is used)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".audit-key-")  # mode 600
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(_private_pem(private))
            out.flush()
            os.fsync(out.fileno())
        if replace:
            os.replace(tmp, path)
            return True
        try:
            os.link(tmp, path)  # atomic, and fails where the key exists already
        except FileExistsError:
            return False
        return True
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _read_private(path: Path) -> Ed25519PrivateKey:
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        log.warning("audit key %s had mode %o; set to 600", path, mode)
        path.chmod(0o600)
    try:
        private = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError) as exc:
        raise AuditKeyError(f"{path} is not an unencrypted PEM private key: {exc}") from None
    if not isinstance(private, Ed25519PrivateKey):
        raise AuditKeyError(f"{path} is not an Ed25519 private key")
    return private


def load_key(files: AnchorFiles, *, now: datetime) -> Ed25519PrivateKey:
    """The signing key, created on first use; its public key is in the keyring."""
    if not files.key.exists():
        created = Ed25519PrivateKey.generate()
        if _write_private(files.key, created, replace=False):
            log.info("created audit key %s (%s)", files.key, key_id(created.public_key()))
    private = _read_private(files.key)
    keys, _ = read_keyring(files.keyring)
    if key_id(private.public_key()) not in keys:
        _add_to_keyring(files.keyring, private.public_key(), now)
    return private


def rotate_key(files: AnchorFiles, *, now: datetime) -> str:
    """Replace the signing key with a new one; the old public key stays in the keyring, so the
    lines it signed still verify. The old private key is gone (overwritten)."""
    if files.key.exists():
        load_key(files, now=now)  # the outgoing key's public half is kept first
    private = Ed25519PrivateKey.generate()
    _write_private(files.key, private, replace=True)
    _add_to_keyring(files.keyring, private.public_key(), now)
    return key_id(private.public_key())


def _add_to_keyring(path: Path, public: Ed25519PublicKey, now: datetime) -> None:
    entry = {
        "key_id": key_id(public),
        "created_at": now.isoformat(),
        "public_key": public_pem(public),
    }
    _append_lines(path, [json.dumps(entry, sort_keys=True)])


def read_keyring(path: Path) -> tuple[dict[str, Ed25519PublicKey], list[ChainBreak]]:
    """The public keys by key id, and the lines of the keyring that are not a key (named)."""
    keys: dict[str, Ed25519PublicKey] = {}
    problems: list[ChainBreak] = []
    if not path.exists():
        return keys, problems
    for number, text in enumerate(path.read_bytes().splitlines(), start=1):
        if not text.strip():
            continue
        where = f"keyring {path.name} line {number}"
        try:
            entry = json.loads(text)
            public = parse_public_pem(str(entry["public_key"]).encode(), source=where)
        except (ValueError, KeyError, TypeError, AuditKeyError) as exc:
            problems.append(ChainBreak("", 0, f"not a key ({exc})", where))
            continue
        if entry.get("key_id") != key_id(public):
            problems.append(ChainBreak("", 0, "its key id is not its key's", where))
            continue
        keys[key_id(public)] = public
    return keys, problems


# -- checkpoints ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Checkpoint:
    """A site's head at a time, signed; ``line`` is its line number in the file it came from."""

    site: str
    seq: int
    hash: str
    at: str
    key_id: str
    signature: str
    line: int = 0

    def payload(self) -> bytes:
        return payload(self.site, self.seq, self.hash, self.at, self.key_id)

    def as_line(self) -> str:
        body = {name: getattr(self, name) for name in (*_FIELDS, "signature")}
        return json.dumps({"v": VERSION, **body}, sort_keys=True, separators=(",", ":"))


def payload(site: str, seq: int, digest: str, at: str, signer: str) -> bytes:
    body = {"v": VERSION, "site": site, "seq": seq, "hash": digest, "at": at, "key_id": signer}
    return DOMAIN + json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def sign(private: Ed25519PrivateKey, head: Head, at: datetime) -> Checkpoint:
    assert head.seq is not None and head.hash is not None
    signer = key_id(private.public_key())
    when = at.isoformat()
    signature = private.sign(payload(head.site_id, head.seq, head.hash, when, signer)).hex()
    return Checkpoint(head.site_id, head.seq, head.hash, when, signer, signature)


def _parse_line(text: bytes, number: int) -> Checkpoint:
    try:
        entry = json.loads(text)
    except ValueError:
        raise ValueError("is not JSON") from None
    if not isinstance(entry, dict):
        raise ValueError("is not a JSON object")
    if entry.get("v") != VERSION:
        raise ValueError(f"has version {entry.get('v')!r}, not {VERSION}")
    for name in ("site", "hash", "at", "key_id", "signature"):
        if not isinstance(entry.get(name), str):
            raise ValueError(f"has no text {name}")
    seq = entry.get("seq")
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 1:
        raise ValueError(f"has seq {seq!r}")
    if not _HEX64.fullmatch(entry["hash"]):
        raise ValueError("has a hash that is not 64 hex digits")
    return Checkpoint(
        entry["site"], seq, entry["hash"], entry["at"], entry["key_id"], entry["signature"], number
    )


def _verified(checkpoint: Checkpoint, keys: Mapping[str, Ed25519PublicKey]) -> str | None:
    """Why the line's signature does not hold, or None when it does."""
    public = keys.get(checkpoint.key_id)
    if public is None:
        return f"signed by key {checkpoint.key_id}, which is not among the public keys"
    try:
        public.verify(bytes.fromhex(checkpoint.signature), checkpoint.payload())
    except (InvalidSignature, ValueError):
        return "its signature does not verify: the line was changed after it was signed"
    return None


@dataclass
class CheckpointFile:
    """A checkpoint file read: the lines that hold (signature checked where keys were given)
    and a break for each line that does not."""

    checkpoints: list[Checkpoint] = field(default_factory=list)
    breaks: list[ChainBreak] = field(default_factory=list)


def read_checkpoints(
    path: Path,
    keys: Mapping[str, Ed25519PublicKey] | None,
    site_id: str | None = None,
) -> CheckpointFile:
    """The checkpoints of ``path`` (one site's, or all). With ``keys``, a line whose signature
    does not hold is a break, not a checkpoint; without, signatures are not checked (the
    server's own bookkeeping of what it signed last)."""
    found = CheckpointFile()
    if not path.exists():
        return found
    for number, text in enumerate(path.read_bytes().splitlines(), start=1):
        if not text.strip():
            continue
        where = f"checkpoint line {number}"
        try:
            checkpoint = _parse_line(text, number)
        except ValueError as exc:
            found.breaks.append(ChainBreak("", 0, f"the line {exc}", f"{where} is unreadable"))
            continue
        if site_id is not None and checkpoint.site != site_id:
            continue
        problem = _verified(checkpoint, keys) if keys is not None else None
        if problem is not None:
            found.breaks.append(ChainBreak(checkpoint.site, checkpoint.seq, problem, where))
            continue
        found.checkpoints.append(checkpoint)
    return found


def _append_lines(path: Path, lines: Sequence[str]) -> None:
    """Append whole lines, each in one write to a file opened for appending (never rewritten),
    and make them durable before returning."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        for line in lines:
            os.write(fd, (line + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def export_checkpoints(files: AnchorFiles, out: Path) -> int:
    """Copy the checkpoints to ``out`` and the keyring beside it (``OUT-STEM.keys.jsonl``):
    the pair an auditor needs to verify off the server. The number of lines copied."""
    if not files.checkpoints.exists():
        raise AuditKeyError(f"no checkpoints yet at {files.checkpoints}")
    if out.resolve() == files.checkpoints.resolve():
        raise AuditKeyError("the export would overwrite the checkpoints themselves")
    out.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(files.checkpoints, out)
    if files.keyring.exists():
        shutil.copyfile(files.keyring, keyring_path(out))
    return sum(1 for line in out.read_bytes().splitlines() if line.strip())


class Checkpointer:
    """Signs each site's head when it has moved since the last checkpoint: called every second
    by the server's ticker, it writes at most every ``every_s`` seconds of the injected clock."""

    def __init__(self, db: Database, files: AnchorFiles, clock: Clock, every_s: float) -> None:
        self.db = db
        self.files = files
        self.clock = clock
        self.every = timedelta(seconds=every_s)
        self._signed: dict[str, tuple[int, str]] | None = None  # site -> last (seq, hash)
        self._next: datetime | None = None

    def tick(self) -> list[Checkpoint]:
        now = self.clock.now()
        if self._next is not None and now < self._next:
            return []
        self._next = now + self.every
        return self.checkpoint()

    def checkpoint(self, *, force: bool = False) -> list[Checkpoint]:
        """Sign every head that moved (every head, with ``force``) now."""
        if self._signed is None:
            self._signed = {
                c.site: (c.seq, c.hash)
                for c in read_checkpoints(self.files.checkpoints, None).checkpoints
            }
        with self.db.read() as session:
            site_heads = event_log.heads(session)
        moved = [
            head
            for head in site_heads.values()
            if head.seq is not None
            and head.hash is not None
            and (force or self._signed.get(head.site_id) != (head.seq, head.hash))
        ]
        if not moved:
            return []
        now = self.clock.now()
        private = load_key(self.files, now=now)  # read each time: a rotation applies at once
        signed = [sign(private, head, now) for head in sorted(moved, key=lambda h: h.site_id)]
        for checkpoint in signed:
            _warn_if_back(self._signed.get(checkpoint.site), checkpoint)
        _append_lines(self.files.checkpoints, [c.as_line() for c in signed])
        self._signed.update({c.site: (c.seq, c.hash) for c in signed})
        return signed


def _warn_if_back(before: tuple[int, str] | None, now: Checkpoint) -> None:
    """A head behind what was signed, or the same event with another hash, was written by
    something other than the log's appends."""
    if before is None:
        return
    if now.seq < before[0] or (now.seq == before[0] and now.hash != before[1]):
        log.warning(
            "the head of site %s went from event %d to %d since the last checkpoint: the log "
            "was changed outside the server; run 'rallypoint audit verify'",
            now.site,
            before[0],
            now.seq,
        )


# -- verify ---------------------------------------------------------------------------------------


@dataclass
class AuditReport:
    count: int = 0
    breaks: list[ChainBreak] = field(default_factory=list)
    checkpoints: int = 0
    #: Facts that are not breaks, e.g. a site with no checkpoint yet.
    notes: list[str] = field(default_factory=list)

    @property
    def intact(self) -> bool:
        return not self.breaks


def verify_anchor(
    session: Session,
    checkpoints: Path,
    *,
    keys: Mapping[str, Ed25519PublicKey] | None = None,
    site_id: str | None = None,
) -> AuditReport:
    """Check the log whole: the chain, its end against each site's head, and both against the
    signed checkpoints. ``keys`` (default: the keyring beside ``checkpoints``) decide which
    signatures count."""
    report = AuditReport()
    if keys is None:
        keys, keyring_problems = read_keyring(keyring_path(checkpoints))
        report.breaks.extend(keyring_problems)
    signed = read_checkpoints(checkpoints, keys, site_id)
    report.breaks.extend(signed.breaks)
    report.checkpoints = len(signed.checkpoints)
    by_site: dict[str, list[Checkpoint]] = {}
    for checkpoint in signed.checkpoints:
        by_site.setdefault(checkpoint.site, []).append(checkpoint)
    walk = ChainWalk({site: {c.seq for c in cps} for site, cps in by_site.items()})
    walk.run(session, site_id)
    site_heads = event_log.heads(session, site_id)
    report.count = walk.count
    report.breaks[:0] = walk.breaks + event_log.head_breaks(walk, site_heads)
    if not checkpoints.exists():
        report.notes.append(f"no checkpoint file at {checkpoints}: the heads are not anchored")
    for site in sorted(set(walk.ends) | set(site_heads) | set(by_site)):
        if site not in by_site:
            if checkpoints.exists():
                report.notes.append(f"{site}: no signed checkpoint yet")
            continue
        report.breaks.extend(_anchor_breaks(site, by_site[site], walk, site_heads.get(site)))
    return report


def _anchor_breaks(
    site: str, signed: list[Checkpoint], walk: ChainWalk, head: Head | None
) -> list[ChainBreak]:
    """A site's log and head against its checkpoints. Every checkpoint whose event is in the
    log must name that event's hash (the first that does not is reported, with how many after
    it do not either); the head must not be behind the furthest checkpoint, nor differ from it
    at the same event."""
    found = []
    end = walk.ends.get(site, event_log.ChainEnd())
    wrong = []
    for checkpoint in signed:
        if checkpoint.seq > end.seq:
            continue  # past the log's end: the furthest checkpoint's check below names it
        stored = walk.watched.get((site, checkpoint.seq))
        if stored != checkpoint.hash:
            wrong.append((checkpoint, stored))
    if wrong:
        checkpoint, stored = wrong[0]
        has = f"the log has {stored}" if stored else "the log has no such event"
        more = f"; {len(wrong) - 1} later checkpoints do not match either" if len(wrong) > 1 else ""
        found.append(
            ChainBreak(
                site,
                checkpoint.seq,
                f"checkpoint line {checkpoint.line} signed hash {checkpoint.hash}, {has}{more}",
                f"event {checkpoint.seq} is not as signed",
            )
        )
    furthest = max(signed, key=lambda c: (c.seq, c.line))
    where = f"checkpoint line {furthest.line} signed event {furthest.seq}"
    if head is None or head.seq is None:
        # No head to compare (named by the head check where the site has events): the log's
        # end must reach the furthest checkpoint at least.
        if end.seq < furthest.seq:
            ends = f"the log ends at {end.seq}" if end.count else "the log has no event"
            found.append(
                ChainBreak(
                    site,
                    end.seq + 1,
                    f"{where}, {ends}, and the site has no head",
                    f"{event_log.span(end.seq + 1, furthest.seq)} missing",
                )
            )
    elif head.seq < furthest.seq:
        found.append(
            ChainBreak(
                site,
                furthest.seq,
                f"{where} with hash {furthest.hash}, the head says {head.seq}: "
                f"{event_log.span(head.seq + 1, furthest.seq)} missing, the head rolled back "
                "with them",
                "head is behind its checkpoint",
            )
        )
    elif head.seq == furthest.seq and head.hash != furthest.hash:
        found.append(
            ChainBreak(
                site,
                furthest.seq,
                f"{where} with hash {furthest.hash}, the head has {head.hash}",
                "head is not as signed",
            )
        )
    return found


def load_public_keys(paths: Sequence[Path]) -> dict[str, Ed25519PublicKey]:
    """Public keys from PEM files (an auditor's own copies), by key id."""
    keys = {}
    for path in paths:
        try:
            text = path.read_bytes()
        except OSError as exc:
            raise AuditKeyError(f"cannot read {path}: {exc.strerror}") from None
        public = parse_public_pem(text, source=str(path))
        keys[key_id(public)] = public
    return keys
