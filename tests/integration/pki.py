"""A throw-away test PKI, made with the `openssl` CLI at run time (EC P-256
keys, so the whole set takes well under a second). conftest's `pki` fixture
makes one per session.

  ca, other_ca        two unrelated CAs (CN=drpc-test-ca, CN=other-test-ca)
  server              CN=server, SANs IP:127.0.0.1 IP:::1 DNS:localhost (ca)
  server2             the same names, another key (ca): for rotation tests
  client              CN=agent-1, SAN DNS:agent-1 (ca): a client or agent
  client_dns_only     no CN, SAN DNS:agent-2 (ca): identity from the DNS SAN
  expired             the server's names, expired yesterday (ca)
  other_server        the server's names, signed by other_ca
  other_client        CN=agent-1, signed by other_ca
  wrong_host          CN=wrong-host, SAN DNS:wrong.example only (ca)
  soon                the server's names, expires in 5 days (ca): certificate
                      expiry views and alerts

Each certificate is a Cert with .cert and .key (PEM file paths) and .cn;
a CA has .cert (its certificate, the file to trust) and .key.
Cert.server_args() / .client_args(ca) give the drpc-testd / drpc-call
options (tests/peer/README.md).
"""

import os
import subprocess


class Cert:
    def __init__(self, directory, name, cn):
        self.name = name
        self.cn = cn
        self.cert = os.path.join(directory, name + ".pem")
        self.key = os.path.join(directory, name + ".key")

    def server_args(self, client_ca=None):
        """--tls-cert/--tls-key [--tls-client-ca] for a TLS listener."""
        args = ["--tls-cert", self.cert, "--tls-key", self.key]
        if client_ca is not None:
            args += ["--tls-client-ca", client_ca.cert]
        return args

    def client_args(self, ca=None):
        """This certificate as a client's (mTLS), trusting ca if given."""
        args = ["--tls-cert", self.cert, "--tls-key", self.key]
        if ca is not None:
            args += ["--tls-ca", ca.cert]
        return args

    def __repr__(self):
        return "Cert(%s)" % self.name


SERVER_SAN = "IP:127.0.0.1,IP:::1,DNS:localhost"


def _run(*argv, cwd):
    r = subprocess.run(["openssl"] + list(argv), cwd=cwd, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError("openssl %s: %s" % (" ".join(argv), r.stderr.strip()))


def _key_and_csr(directory, c, subject):
    _run("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-keyout", c.key, "-out", c.name + ".csr", "-subj", subject, cwd=directory)


def _ca(directory, name, cn):
    c = Cert(directory, name, cn)
    _run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-keyout", c.key, "-out", c.cert, "-days", "30", "-subj", "/CN=" + cn,
         "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=directory)
    return c


def _leaf(directory, name, ca, cn, san, usage, days=30):
    """A certificate signed by ca; cn None gives an empty-CN subject."""
    c = Cert(directory, name, cn)
    _key_and_csr(directory, c, "/CN=%s" % cn if cn else "/O=drpc-test")
    ext = os.path.join(directory, name + ".ext")
    with open(ext, "w") as f:
        f.write("basicConstraints=CA:FALSE\n"
                "keyUsage=critical,digitalSignature\n"
                "extendedKeyUsage=%s\n"
                "subjectAltName=%s\n" % (usage, san))
    # -days -1: not after = yesterday, so "expired" needs no clock tricks
    _run("x509", "-req", "-in", name + ".csr", "-CA", ca.cert, "-CAkey", ca.key,
         "-CAcreateserial", "-out", c.cert, "-days", str(days), "-extfile", ext,
         cwd=directory)
    return c


class Pki:
    def __init__(self, directory):
        self.dir = directory
        self.ca = _ca(directory, "ca", "drpc-test-ca")
        self.other_ca = _ca(directory, "other_ca", "other-test-ca")
        both = "serverAuth,clientAuth"
        self.server = _leaf(directory, "server", self.ca, "server", SERVER_SAN, both)
        self.server2 = _leaf(directory, "server2", self.ca, "server-2", SERVER_SAN, both)
        self.client = _leaf(directory, "client", self.ca, "agent-1", "DNS:agent-1", both)
        self.client_dns_only = _leaf(directory, "client_dns_only", self.ca, None,
                                     "DNS:agent-2", both)
        self.expired = _leaf(directory, "expired", self.ca, "expired", SERVER_SAN, both,
                             days=-1)
        self.other_server = _leaf(directory, "other_server", self.other_ca, "server",
                                  SERVER_SAN, both)
        self.other_client = _leaf(directory, "other_client", self.other_ca, "agent-1",
                                  "DNS:agent-1", both)
        self.wrong_host = _leaf(directory, "wrong_host", self.ca, "wrong-host",
                                "DNS:wrong.example", both)
        self.soon = _leaf(directory, "soon", self.ca, "soon", SERVER_SAN, both, days=5)


def make(directory):
    """Generates the whole set under directory (which exists) and returns it."""
    return Pki(str(directory))
