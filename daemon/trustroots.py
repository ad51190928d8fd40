"""Trust roots read from PEM or DER files: the certificates of the certification authorities
whose signatures vanthu believes (`[results] trust_roots` for the agency's own results,
`[security] document_trust_roots` for incoming documents).

Light on purpose (asn1crypto only, no pyHanko): the configuration reads every root file when it
loads, so a missing or broken one is a one-line error at start, not a surprise at the first
signed PDF. The roots travel as DER bytes, which pickle, to the worker processes that validate
signatures.
"""

from __future__ import annotations

from asn1crypto import pem, x509  # type: ignore[import-untyped]

from daemon.errors import ConfigError, Problem

MAX_ROOT_FILE_BYTES = 1024 * 1024  # a CA bundle is a few kilobytes; a larger file is a mistake


def certificates(path: str) -> tuple[bytes, ...]:
    """The DER bytes of every certificate in the PEM or DER file at `path` (a PEM file may hold
    several); ValueError or OSError with a short reason when it holds none."""
    with open(path, "rb") as f:
        data = f.read(MAX_ROOT_FILE_BYTES + 1)
    if len(data) > MAX_ROOT_FILE_BYTES:
        raise ValueError(f"larger than {MAX_ROOT_FILE_BYTES} bytes: not a certificate file")
    if pem.detect(data):
        ders = [der for kind, _, der in pem.unarmor(data, multiple=True)
                if kind == "CERTIFICATE"]
    else:
        ders = [data]
    if not ders:
        raise ValueError("no CERTIFICATE block in the PEM file")
    for der in ders:
        try:
            x509.Certificate.load(der).native  # noqa: B018 (parses every field now)
        except Exception as err:  # asn1crypto raises several types on bad bytes
            raise ValueError(f"not an X.509 certificate ({type(err).__name__})") from err
    return tuple(ders)


def problem(path: str) -> str | None:
    """Why `path` cannot serve as a trust root, in one line, or None."""
    try:
        certificates(path)
    except OSError as err:
        return f"cannot read {path}: {err.strerror or err}"
    except ValueError as err:
        return f"{path}: {err}"
    return None


def read(paths: tuple[str, ...]) -> tuple[bytes, ...]:
    """The DER bytes of every certificate of the files `paths`; an unreadable file is a
    configuration error naming it."""
    ders: list[bytes] = []
    for path in paths:
        try:
            ders.extend(certificates(path))
        except (OSError, ValueError) as err:
            raise ConfigError([Problem(path, None, f"cannot load trust root: {err}")]) from err
    return tuple(ders)
