"""The per-run PKI of the e2e cluster (control_plane.py, node_cluster.py): a CA, a certificate and a
key per component made with openssl (P-256, valid two days), the service-account key pair, and
kubeconfigs that embed them."""

from __future__ import annotations

import base64
import subprocess
from collections.abc import Sequence
from pathlib import Path

from tests.e2e.processes import E2EError

OPENSSL_CONFIG = (
    "[req]\ndistinguished_name = dn\n[dn]\n"
    "[ca]\nbasicConstraints = critical,CA:TRUE\nkeyUsage = critical,keyCertSign,cRLSign\n"
    "subjectKeyIdentifier = hash\n"
    "[server]\nbasicConstraints = critical,CA:FALSE\nkeyUsage = critical,digitalSignature\n"
    "extendedKeyUsage = serverAuth\nauthorityKeyIdentifier = keyid\n"
    "[client]\nbasicConstraints = critical,CA:FALSE\nkeyUsage = critical,digitalSignature\n"
    "extendedKeyUsage = clientAuth\nauthorityKeyIdentifier = keyid\n"
)
# P-256 everywhere: quick to generate on a busy machine, and accepted for TLS and SA tokens.
NEW_KEY = "-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2"


class Pki:
    """A CA in `folder` (made at construction) that issues NAME.crt / NAME.key beside it."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(mode=0o700, parents=True)
        (folder / "openssl.cnf").write_text(OPENSSL_CONFIG)
        ca = "-extensions ca -subj /CN=sv2-e2e-ca -keyout ca.key -out ca.crt"
        self._openssl(f"req -x509 -config openssl.cnf {NEW_KEY} {ca}")
        self._openssl("genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out sa.key")
        self._openssl("pkey -in sa.key -pubout -out sa.pub")

    def path(self, name: str) -> Path:
        """A file of the PKI: ca.crt, sa.key, sa.pub, or NAME.crt / NAME.key of an issued pair."""
        return self.folder / name

    def issue(self, name: str, subject: str, *, server_names: Sequence[str] = ()) -> None:
        """NAME.crt and NAME.key signed by the CA: a server certificate for `server_names` (IPs and
        DNS names) when there are any, else a client certificate. `subject` like /O=group/CN=user."""
        extension = "server" if server_names else "client"
        names = ",".join(f"IP:{n}" if n[0].isdigit() else f"DNS:{n}" for n in server_names)
        extra = f" -addext subjectAltName={names}" if names else ""
        self._openssl(
            f"req -x509 -config openssl.cnf {NEW_KEY} -CA ca.crt -CAkey ca.key -extensions {extension}"
            f" -subj {subject} -keyout {name}.key -out {name}.crt{extra}"
        )

    def kubeconfig(self, user: str, server: str, path: Path) -> Path:
        """A kubeconfig for the issued client pair `user` at `server`, with its data embedded (the
        file stands alone wherever a tool copies it), readable by its owner only."""

        def data(name: str) -> str:
            return base64.b64encode(self.path(name).read_bytes()).decode()

        path.write_text(
            "apiVersion: v1\nkind: Config\ncurrent-context: sv2-e2e\n"
            f"clusters:\n- name: sv2-e2e\n  cluster:\n    server: {server}\n"
            f"    certificate-authority-data: {data('ca.crt')}\n"
            f"users:\n- name: {user}\n  user:\n    client-certificate-data: {data(user + '.crt')}\n"
            f"    client-key-data: {data(user + '.key')}\n"
            f"contexts:\n- name: sv2-e2e\n  context:\n    cluster: sv2-e2e\n    user: {user}\n"
        )
        path.chmod(0o600)
        return path

    def _openssl(self, args: str) -> None:  # words without spaces only: file names in the folder
        result = subprocess.run(["openssl", *args.split()], cwd=self.folder, capture_output=True, text=True)
        if result.returncode != 0:
            raise E2EError(f"openssl {args}: {result.stderr.strip()}")
