"""An S3-compatible bucket prefix as the upload sensor's inbox (MEDIALENS_INBOX=s3://bucket/prefix).

The same semantics as the local folder (sensors/inbox.py, whose InboxSource this implements), with S3's operations:
- an object is a candidate under its key relative to the prefix; `<prefix>/rejected/`,
  `<prefix>/duplicates/`, hidden names (a component starting with a dot), partial-download names
  and folder markers are never looked at. Its look is (size, LastModified, ETag): a re-upload or a
  replacement changes it, so the sensor's stability check (unchanged between two looks and for the
  settle time) applies as it is. An object being uploaded is invisible until its upload completes.
- to be checked, an object is downloaded (GET with If-Match on the listed ETag: exactly the version
  that was listed, or FileChanged) into the store's scratch folder, which is swept when the process
  that wrote it is gone.
- a new media's source record names the object (`inbox_object`: url, ETag, LastModified, size)
  and is written before the download is renamed into `store/incoming/<key><ext>`; only then is the
  object deleted (after a HEAD that it is still that version: a newer upload under the same name
  stays, to be looked at anew). A tick killed before the delete leaves the object listed: the next
  tick finds its record among the taken files and deletes it instead of taking it again.
- a refused or duplicate object is copied (CopySourceIfMatch) to `<prefix>/rejected/<name>` or
  `<prefix>/duplicates/<name>` after its note `<name>.reason.txt` was created there (If-None-Match,
  so two never share a name), then deleted; a kill in between leaves at worst a note without its
  object, or the object in both places, never none.

Credentials are boto3's (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, a profile, an instance role);
the endpoint is the resource's `endpoint_url` (MEDIALENS_S3_ENDPOINT_URL or AWS_ENDPOINT_URL), the
region AWS_DEFAULT_REGION. Every S3 error becomes an OSError (S3Error), which the sensor treats like
an unreadable file: logged, looked at again on a next tick.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from resources import atomic
from resources.inbox import S3_SCHEME
from sensors.inbox import (
    NOTE_SUFFIX,
    RESERVED_DIRS,
    Candidate,
    FileChanged,
    InboxSource,
    Look,
    _numbered,
    is_ignored_name,
)

if TYPE_CHECKING:
    from resources.inbox import InboxResource
    from resources.store import MediaStore

OBJECT_FIELD = "inbox_object"  # the source record's note of the object a file was taken from
_CHANGED = {"PreconditionFailed", "412", "NoSuchKey", "404", "NotFound"}
_TAKEN = {"PreconditionFailed", "412", "ConditionalRequestConflict", "409"}
_MAX_COPY = 5 * 2**30  # one CopyObject; larger objects are copied in parts
_CHUNK = 1 << 20


class S3Error(OSError):
    """An S3 request failed (unreachable endpoint, denied, throttled ...)."""


def parse_s3_url(url: str) -> tuple[str, str]:
    """`s3://bucket/some/prefix/` -> ("bucket", "some/prefix"); the prefix may be empty."""
    if not url.startswith(S3_SCHEME):
        raise ValueError(f"not an s3:// URL: {url!r}")
    bucket, _, prefix = url[len(S3_SCHEME) :].partition("/")
    if not bucket:
        raise ValueError(f"no bucket in {url!r} (expected s3://bucket/prefix)")
    return bucket, prefix.strip("/")


@lru_cache(maxsize=8)
def s3_client(endpoint_url: str | None = None, region: str | None = None) -> Any:
    """A boto3 S3 client (thread-safe, kept per process). Path-style addressing for a custom
    endpoint (MinIO, Ceph, moto ...), whose buckets have no DNS names of their own."""
    import boto3
    from botocore.config import Config

    custom = bool(endpoint_url or os.environ.get("AWS_ENDPOINT_URL") or os.environ.get("AWS_ENDPOINT_URL_S3"))
    config = Config(
        region_name=region,
        connect_timeout=5,
        read_timeout=60,
        retries={"max_attempts": 3, "mode": "standard"},
        s3={"addressing_style": "path"} if custom else None,
    )
    return boto3.session.Session().client("s3", endpoint_url=endpoint_url or None, config=config)


def _code(exc: Exception) -> str:
    response = getattr(exc, "response", None) or {}
    code = str(response.get("Error", {}).get("Code", ""))
    status = str(response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
    return code or status


@contextmanager
def _s3_errors(what: str) -> Iterator[None]:
    """botocore's and urllib3's errors as S3Error (an OSError), naming what was being done."""
    from botocore.exceptions import BotoCoreError, ClientError
    from urllib3.exceptions import HTTPError

    try:
        yield
    except ClientError as exc:
        raise S3Error(f"{what}: {_code(exc)}: {exc}") from exc
    except (BotoCoreError, HTTPError) as exc:
        raise S3Error(f"{what}: {exc}") from exc


def _is(exc: BaseException, codes: set[str]) -> bool:
    cause = exc.__cause__ if isinstance(exc, S3Error) else exc
    return isinstance(cause, Exception) and _code(cause) in codes


class S3Inbox(InboxSource):
    """The inbox as objects under `s3://<bucket>/<prefix>/`; downloads go to `store`'s scratch."""

    def __init__(self, client: Any, bucket: str, prefix: str, store: MediaStore) -> None:
        super().__init__()
        self.client = client
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.store = store
        self.where = f"{S3_SCHEME}{bucket}/{self.prefix + '/' if self.prefix else ''}"
        self._conditional_put = True  # the service honours If-None-Match on PutObject

    @classmethod
    def from_resource(cls, inbox: InboxResource, store: MediaStore) -> S3Inbox:
        bucket, prefix = parse_s3_url(inbox.path)
        return cls(s3_client(inbox.endpoint_url, inbox.region), bucket, prefix, store)

    # -- names ------------------------------------------------------------------------------------
    def key_of(self, rel: str) -> str:
        return f"{self.prefix}/{rel}" if self.prefix else rel

    def url_of(self, key: str) -> str:
        return f"{S3_SCHEME}{self.bucket}/{key}"

    def rel_of(self, key: str) -> str | None:
        """The candidate name of an object key; None for keys that are never looked at."""
        start = f"{self.prefix}/" if self.prefix else ""
        if not key.startswith(start) or key.endswith("/"):
            return None
        rel = key[len(start) :]
        parts = rel.split("/")
        if not rel or (len(parts) > 1 and parts[0] in RESERVED_DIRS):
            return None
        if any(not p or p.startswith(".") for p in parts) or is_ignored_name(parts[-1]):
            return None
        return rel

    # -- listing ----------------------------------------------------------------------------------
    def list_objects(self) -> Iterator[dict[str, Any]]:
        """Every object under the prefix (all pages), but for the reserved and hidden folders at its
        top, which are not listed at all (rejected/ and duplicates/ only grow)."""
        start = f"{self.prefix}/" if self.prefix else ""
        paginator = self.client.get_paginator("list_objects_v2")
        with _s3_errors(f"listing {self.where}"):
            folders: list[str] = []
            for page in paginator.paginate(Bucket=self.bucket, Prefix=start, Delimiter="/"):
                yield from page.get("Contents", [])
                folders += [str(p["Prefix"]) for p in page.get("CommonPrefixes", [])]
            for folder in folders:
                name = folder[len(start) :].rstrip("/")
                if name in RESERVED_DIRS or not name or name.startswith("."):
                    continue
                for page in paginator.paginate(Bucket=self.bucket, Prefix=folder):
                    yield from page.get("Contents", [])

    def candidates(self, taken: Mapping[str, Mapping[str, Any]]) -> list[Candidate]:
        self.finished = []
        done = _taken_objects(taken)
        found: list[Candidate] = []
        for obj in self.list_objects():
            key = str(obj["Key"])
            rel = self.rel_of(key)
            if rel is None:
                continue
            sig: Look = (int(obj["Size"]), int(obj["LastModified"].timestamp() * 1000), str(obj["ETag"]))
            taken_as = done.get((self.url_of(key), *sig))
            if taken_as is not None:  # a tick was killed between taking it and deleting it
                self._finish_take(key, sig, taken_as)
                continue
            found.append(Candidate(Path(rel), rel, sig))
        found.sort(key=lambda c: (c.modified, c.rel))
        return found

    def _finish_take(self, key: str, sig: Look, taken_as: str) -> None:
        try:
            self._delete_if_unchanged(key, str(sig[2]))
        except OSError:  # tried again on the next tick: it is still that taken file's object
            return
        self.finished.append(f"{taken_as} ({self.url_of(key)}): deleted from the inbox")

    # -- reading ----------------------------------------------------------------------------------
    def fetch(self, c: Candidate) -> AbstractContextManager[Path]:
        return self._download(c)

    @contextmanager
    def _download(self, c: Candidate) -> Iterator[Path]:
        key, etag = self.key_of(c.rel), str(c.signature[2])
        tmp = atomic.temp_path(self.store.path, self.store.incoming_dir / "s3-download")
        try:
            try:
                with _s3_errors(f"downloading {self.url_of(key)}"):
                    response = self.client.get_object(Bucket=self.bucket, Key=key, IfMatch=etag)
                    with tmp.open("wb") as fh:
                        for chunk in response["Body"].iter_chunks(_CHUNK):
                            fh.write(chunk)
                        fh.flush()
                        os.fsync(fh.fileno())
            except S3Error as exc:
                if _is(exc, _CHANGED):
                    raise FileChanged(f"{self.url_of(key)} was replaced or removed since it was listed") from exc
                raise
            if tmp.stat().st_size != c.size:
                raise FileChanged(f"{self.url_of(key)}: downloaded {tmp.stat().st_size} bytes, listed {c.size}")
            yield tmp
        finally:
            tmp.unlink(missing_ok=True)

    def look_again(self, c: Candidate) -> Look | None:
        # The download was of exactly the listed version (If-Match); what happens to the object
        # afterwards is checked by the copy (CopySourceIfMatch) or before the delete.
        return c.signature

    # -- taking -----------------------------------------------------------------------------------
    def record_extra(self, c: Candidate) -> dict[str, Any]:
        size, modified_ms, etag = c.signature
        url = self.url_of(self.key_of(c.rel))
        return {OBJECT_FIELD: {"url": url, "etag": etag, "modified_ms": modified_ms, "size": size}}

    def take(self, c: Candidate, fetched: Path, dest: Path, sha256: str) -> None:
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(fetched, dest)  # the scratch folder is on the store's file system
        key = self.key_of(c.rel)
        try:
            self._delete_if_unchanged(key, str(c.signature[2]))
        except OSError as exc:  # taken all the same: a next tick deletes it (or sets it aside as a duplicate)
            self.warnings.append(f"{self.url_of(key)} was taken but could not be deleted: {exc}")

    def _delete_if_unchanged(self, key: str, etag: str) -> bool:
        """Delete the object if it is still the version `etag`; False when it was replaced (a new
        upload under the same name, looked at anew) or is gone."""
        try:
            with _s3_errors(f"looking at {self.url_of(key)}"):
                head = self.client.head_object(Bucket=self.bucket, Key=key)
        except S3Error as exc:
            if _is(exc, _CHANGED):
                return False
            raise
        if head.get("ETag") != etag:
            return False
        with _s3_errors(f"deleting {self.url_of(key)}"):
            self.client.delete_object(Bucket=self.bucket, Key=key)
        return True

    # -- setting aside ----------------------------------------------------------------------------
    def set_aside(self, c: Candidate, folder: str, reason: str) -> str:
        key, etag = self.key_of(c.rel), str(c.signature[2])
        dest = self._reserve(folder, c.name, reason)
        try:
            with _s3_errors(f"copying {self.url_of(key)} to {self.url_of(dest)}"):
                source = {"Bucket": self.bucket, "Key": key}
                if c.size < _MAX_COPY:
                    self.client.copy_object(Bucket=self.bucket, Key=dest, CopySource=source, CopySourceIfMatch=etag)
                else:
                    self.client.copy(source, self.bucket, dest, ExtraArgs={"CopySourceIfMatch": etag})
        except S3Error as exc:
            self._delete_quietly(dest + NOTE_SUFFIX)
            if _is(exc, _CHANGED):
                raise FileChanged(f"{self.url_of(key)} was replaced or removed since it was listed") from exc
            raise
        self._delete_if_unchanged(key, etag)
        return self.url_of(dest)

    def set_aside_taken(self, path: Path, folder: str, reason: str) -> str:
        dest = self._reserve(folder, path.name, reason)
        try:
            with _s3_errors(f"uploading {path} to {self.url_of(dest)}"):
                self.client.upload_file(str(path), self.bucket, dest)
        except S3Error:
            self._delete_quietly(dest + NOTE_SUFFIX)
            raise
        path.unlink()
        return self.url_of(dest)

    def _reserve(self, folder: str, name: str, reason: str) -> str:
        """A free key `<prefix>/<folder>/<name>` (or `<name> (n)`), reserved by creating its note."""
        base = self.key_of(f"{folder}/")
        n = 1
        while True:
            dest = base + (name if n == 1 else _numbered(name, n))
            n += 1
            if not self._create_note(dest + NOTE_SUFFIX, reason.rstrip() + "\n"):
                continue
            if self._exists(dest):  # an object put there by hand, without a note
                self._delete_quietly(dest + NOTE_SUFFIX)
                continue
            return dest

    def _create_note(self, key: str, text: str) -> bool:
        """Create the note unless one exists; False when it does."""
        body = text.encode()
        if self._conditional_put:
            try:
                with _s3_errors(f"writing {self.url_of(key)}"):
                    self.client.put_object(
                        Bucket=self.bucket, Key=key, Body=body, IfNoneMatch="*", ContentType="text/plain; charset=utf-8"
                    )
                return True
            except S3Error as exc:
                if _is(exc, _TAKEN):
                    return False
                if not _is(exc, {"NotImplemented", "501", "InvalidArgument", "InvalidRequest"}):
                    raise
                self._conditional_put = False  # an older service: look first (racy only between two ticks)
        if self._exists(key):
            return False
        with _s3_errors(f"writing {self.url_of(key)}"):
            self.client.put_object(Bucket=self.bucket, Key=key, Body=body, ContentType="text/plain; charset=utf-8")
        return True

    def _exists(self, key: str) -> bool:
        try:
            with _s3_errors(f"looking at {self.url_of(key)}"):
                self.client.head_object(Bucket=self.bucket, Key=key)
        except S3Error as exc:
            if _is(exc, _CHANGED):
                return False
            raise
        return True

    def _delete_quietly(self, key: str) -> None:
        try:
            with _s3_errors(f"deleting {self.url_of(key)}"):
                self.client.delete_object(Bucket=self.bucket, Key=key)
        except S3Error:
            pass  # an orphan note: harmless, it only reserves a name


def _taken_objects(taken: Mapping[str, Mapping[str, Any]]) -> dict[tuple[Any, ...], str]:
    """(url, size, modified_ms, etag) of the object each taken file came from -> its key."""
    out: dict[tuple[Any, ...], str] = {}
    for key, record in taken.items():
        obj = record.get(OBJECT_FIELD)
        if isinstance(obj, dict):
            out[(obj.get("url"), obj.get("size"), obj.get("modified_ms"), obj.get("etag"))] = key
    return out
