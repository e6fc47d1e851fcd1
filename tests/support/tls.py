"""A private CA with a server and a client certificate, made by the ``openssl`` command.

As ``testsupport.fault_server.self_signed_certificate`` does, the files are made once per
process in a temporary folder (no Python crypto package needed). The CA is what a site
trusts through ``REQUESTS_CA_BUNDLE`` or ``verify=``; the server certificate is for
``127.0.0.1`` and ``localhost``; the client certificate is what a ``requests.Session``
presents with ``cert=`` to a tracker that requires one. The extensions make each certificate
acceptable to OpenSSL's strict X.509 checks.
"""

from __future__ import annotations

import atexit
import shutil
import ssl
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Certificates:
    """Paths of PEM files: a CA, and a server and a client certificate it signed."""

    #: The CA's certificate: the bundle that makes a client trust the server.
    ca: str
    server_cert: str
    server_key: str
    client_cert: str
    client_key: str

    def server_context(self, *, require_client_certificate: bool) -> ssl.SSLContext:
        """A server TLS context with the server certificate; optionally asking a client's."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.server_cert, self.server_key)
        if require_client_certificate:
            context.verify_mode = ssl.CERT_REQUIRED
            context.load_verify_locations(self.ca)
        return context


_CA_EXTENSIONS = """\
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
"""

_SERVER_EXTENSIONS = """\
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1, DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
"""

_CLIENT_EXTENSIONS = """\
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
"""

_made: Certificates | None = None
_lock = threading.Lock()


def certificates() -> Certificates:
    """The process's CA, server and client certificates (made on the first call)."""
    global _made
    with _lock:
        if _made is None:
            folder = Path(tempfile.mkdtemp(prefix="flask-keitaro-pki-"))
            atexit.register(shutil.rmtree, folder, True)
            _made = _make(folder)
        return _made


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)


def _key(path: Path) -> None:
    _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-out", str(path))  # fmt: skip


def _make(folder: Path) -> Certificates:
    ca, ca_key = folder / "ca.pem", folder / "ca-key.pem"
    _key(ca_key)
    _openssl("req", "-new", "-x509", "-key", str(ca_key), "-days", "2",
             "-subj", "/CN=flask-keitaro test CA", "-extensions", "v3",
             "-config", str(_config(folder, "ca", _CA_EXTENSIONS)), "-out", str(ca))  # fmt: skip
    leaves = {}
    for name, subject, extensions in (
        ("server", "/CN=127.0.0.1", _SERVER_EXTENSIONS),
        ("client", "/CN=flask-keitaro test site", _CLIENT_EXTENSIONS),
    ):
        cert, key, request = (folder / f"{name}{end}" for end in (".pem", "-key.pem", ".csr"))
        _key(key)
        _openssl("req", "-new", "-key", str(key), "-subj", subject, "-out", str(request))
        _openssl("x509", "-req", "-in", str(request), "-CA", str(ca), "-CAkey", str(ca_key),
                 "-CAcreateserial", "-days", "2", "-extensions", "v3",
                 "-extfile", str(_config(folder, name, extensions)), "-out", str(cert))  # fmt: skip
        leaves[name] = (str(cert), str(key))
    return Certificates(str(ca), *leaves["server"], *leaves["client"])


def _config(folder: Path, name: str, extensions: str) -> Path:
    """An OpenSSL config file whose ``[v3]`` section holds ``extensions``."""
    path = folder / f"{name}.cnf"
    path.write_text(f"[req]\ndistinguished_name = dn\n[dn]\n[v3]\n{extensions}")
    return path
