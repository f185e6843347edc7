"""--tls_cert, --tls_key and --tls_client_ca against the real binary: TLS, mTLS and rotation.

Runs as its own CTest test, e2e_tls (tests/e2e/CMakeLists.txt), which sets HOURGLASS_E2E_TLS=1;
the serial `e2e` suite skips this file. By hand:
HOURGLASS_E2E_TLS=1 /usr/bin/python3 -m pytest tests/e2e/test_tls.py

The certificates are made at test time with the openssl command, in a temporary directory: two
CAs ("ca" trusted by the server and the clients, "other" trusted by nobody), server certificates
for the name hourglass.test (and 127.0.0.1), client certificates of both CAs and an expired one.
"""

import json
import os
import socket
import ssl
import subprocess
import tempfile
import threading
import time

import pytest

import support
from support import (
    BINARY,
    RPC_TIMEOUT_S,
    StatusCode,
    consumer_grpc,
    expect_error,
    grpc,
    health_pb2,
    health_pb2_grpc,
    reflection_pb2,
    reflection_pb2_grpc,
    scheduler_grpc,
    scheduler_pb2,
    unique,
    wait_until,
)

pytestmark = pytest.mark.skipif(
    os.environ.get("HOURGLASS_E2E_TLS") != "1",
    reason="runs as its own CTest test e2e_tls (set HOURGLASS_E2E_TLS=1 to run it by hand)",
)

SERVER_NAME = "hourglass.test"
SERVING = health_pb2.HealthCheckResponse.SERVING
# A refused handshake fails the call at once (UNAVAILABLE); the deadline only bounds a hang.
REFUSED_TIMEOUT_S = 10


# --- certificates -------------------------------------------------------------------------


def openssl(*args):
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)


class Pki:
    """CAs and certificates made with the openssl command in `directory`."""

    def __init__(self, directory):
        self.dir = directory
        self.serial = 100

    def path(self, name):
        return os.path.join(self.dir, name)

    def ca(self, name):
        key, cert = self.path(f"{name}.key"), self.path(f"{name}.crt")
        openssl(
            "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", key, "-out", cert, "-days", "2", "-subj", f"/CN={name}",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        )  # fmt: skip
        return cert

    def issue(self, ca, name, usage, days=1, dns=(SERVER_NAME,), ips=("127.0.0.1",)):
        """A key and a certificate signed by CA `ca`: (cert path, key path, serial)."""
        self.serial += 1
        key, csr, cert = (self.path(f"{name}.{ext}") for ext in ("key", "csr", "crt"))
        openssl(
            "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", key, "-out", csr, "-subj", f"/CN={name}",
        )  # fmt: skip
        extensions = self.path(f"{name}.ext")
        alt_names = [f"DNS:{d}" for d in dns] + [f"IP:{ip}" for ip in ips]
        with open(extensions, "w") as f:
            f.write("basicConstraints=CA:FALSE\n")
            f.write(f"extendedKeyUsage={usage}\n")
            if usage == "serverAuth":
                f.write(f"subjectAltName={','.join(alt_names)}\n")
        openssl(
            "x509", "-req", "-in", csr, "-CA", self.path(f"{ca}.crt"), "-CAkey",
            self.path(f"{ca}.key"), "-set_serial", str(self.serial), "-days", str(days),
            "-extfile", extensions, "-out", cert,
        )  # fmt: skip
        return cert, key, self.serial


def read(path):
    with open(path, "rb") as f:
        return f.read()


def copy(source, destination):
    """Replaces `destination` atomically (write a new file, rename it over the old one)."""
    temporary = destination + ".new"
    with open(temporary, "wb") as f:
        f.write(read(source))
    os.replace(temporary, destination)


@pytest.fixture(scope="module")
def pki():
    directory = tempfile.mkdtemp(prefix="hourglass-tls-")
    pki = Pki(directory)
    pki.ca("ca")
    pki.ca("other")
    pki.server = pki.issue("ca", "server", "serverAuth")
    pki.server2 = pki.issue("ca", "server2", "serverAuth")
    pki.server3 = pki.issue("ca", "server3", "serverAuth")
    pki.other_server = pki.issue("other", "other-server", "serverAuth")
    pki.client = pki.issue("ca", "client", "clientAuth")
    pki.other_client = pki.issue("other", "other-client", "clientAuth")
    pki.expired_client = pki.issue("ca", "expired-client", "clientAuth", days=-1)
    yield pki
    subprocess.run(["rm", "-rf", directory], check=False)


# --- clients ------------------------------------------------------------------------------


def secure_channel(server, ca, client=None, server_name=None):
    """A TLS channel to `server` trusting CA file `ca`, with client (cert, key, _) if given."""
    credentials = grpc.ssl_channel_credentials(
        root_certificates=read(ca),
        private_key=read(client[1]) if client else None,
        certificate_chain=read(client[0]) if client else None,
    )
    options = [("grpc.ssl_target_name_override", server_name)] if server_name else []
    return grpc.secure_channel(server.grpc_address, credentials, options=options)


def health(channel, timeout=RPC_TIMEOUT_S):
    request = health_pb2.HealthCheckRequest(service="")
    return health_pb2_grpc.HealthStub(channel).Check(request, timeout=timeout).status


def schedule(channel, token=None):
    request = scheduler_pb2.ScheduleRequest(queue=unique("q"), payload=b"p")
    request.delay.FromSeconds(60)
    metadata = (("authorization", f"Bearer {token}"),) if token else ()
    stub = scheduler_grpc.SchedulerServiceStub(channel)
    return stub.Schedule(request, timeout=RPC_TIMEOUT_S, metadata=metadata)


def expect_refused(channel):
    """The handshake fails: a call ends UNAVAILABLE, and the server never saw it."""
    with channel:
        expect_error(StatusCode.UNAVAILABLE, health, channel, timeout=REFUSED_TIMEOUT_S)


def served_certificate(server, ca, client=None, server_name=SERVER_NAME):
    """The certificate a new TLS connection gets, checked against CA file `ca`, as a dict."""
    context = ssl.create_default_context(cafile=ca)
    context.set_alpn_protocols(["h2"])
    if client:
        context.load_cert_chain(client[0], client[1])
    with socket.create_connection(("127.0.0.1", server.grpc_port), timeout=10) as sock:
        with context.wrap_socket(sock, server_hostname=server_name) as connection:
            return connection.getpeercert()


def served_serial(server, ca, client=None):
    return int(served_certificate(server, ca, client)["serialNumber"], 16)


def tls_flags(cert, key, client_ca=None, reload_interval="1s"):
    flags = [f"--tls_cert={cert}", f"--tls_key={key}", f"--tls_reload_interval={reload_interval}"]
    if client_ca:
        flags.append(f"--tls_client_ca={client_ca}")
    return flags


@pytest.fixture
def tls_server(start_server, pki):
    """A server with TLS (no client certificates) on the first server certificate."""
    cert, key, _ = pki.server
    return start_server(*tls_flags(cert, key))


@pytest.fixture
def mtls_server(start_server, pki):
    cert, key, _ = pki.server
    return start_server(*tls_flags(cert, key, client_ca=pki.path("ca.crt")))


# --- TLS ----------------------------------------------------------------------------------


def test_tls_server_serves_health_reflection_and_the_api(tls_server, pki):
    with secure_channel(tls_server, pki.path("ca.crt")) as channel:
        assert health(channel) == SERVING
        assert schedule(channel).task_id
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        responses = stub.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]),
            timeout=RPC_TIMEOUT_S,
        )
        services = {s.name for r in responses for s in r.list_services_response.service}
        assert "hourglass.v1.SchedulerService" in services
    started = tls_server.started_event
    assert started["tls"] == "server"
    enabled = tls_server.event("tls_enabled")
    assert enabled["subject"] == "CN=server"
    assert enabled["issuer"] == "CN=ca"
    assert int(enabled["serial"], 16) == pki.server[2]
    assert enabled["client_certificates_required"] is False
    # The key is never logged.
    key_lines = read(pki.server[1]).decode().strip().splitlines()[1:-1]
    log = "\n".join(tls_server.logs())
    assert not any(line in log for line in key_lines)


def test_plaintext_client_is_refused(tls_server):
    expect_refused(grpc.insecure_channel(tls_server.grpc_address))


def test_client_trusting_another_ca_is_refused(tls_server, pki):
    expect_refused(secure_channel(tls_server, pki.path("other.crt")))


def test_refused_handshakes_are_logged_as_json_lines(mtls_server, pki):
    expect_refused(secure_channel(mtls_server, pki.path("ca.crt"), client=pki.other_client))
    expect_refused(grpc.insecure_channel(mtls_server.grpc_address))

    def handshake_logged():
        return [
            e
            for e in mtls_server.log_events()
            if e.get("event") == "grpc_log" and "certificate verify failed" in e["message"]
        ]

    event = wait_until(handshake_logged, timeout_s=10, what="the refused handshake's log line")[0]
    assert event["level"] == "warning"
    for line in mtls_server.logs():  # stderr stays one JSON object per line
        assert json.loads(line)["event"], line


def test_server_name_mismatch_is_refused(tls_server, pki):
    # The certificate is for hourglass.test and 127.0.0.1; the client expects another name.
    expect_refused(secure_channel(tls_server, pki.path("ca.crt"), server_name="other.test"))
    with secure_channel(tls_server, pki.path("ca.crt"), server_name=SERVER_NAME) as channel:
        assert health(channel) == SERVING


def test_tls_and_tokens_together(start_server, pki, tmp_path):
    token = "tls-token-" + os.urandom(16).hex()
    tokens = tmp_path / "tokens"
    tokens.write_text(f"{token} * schedule,consume,admin\n")
    os.chmod(tokens, 0o600)
    cert, key, _ = pki.server
    server = start_server(*tls_flags(cert, key), f"--auth_tokens_file={tokens}")
    with secure_channel(server, pki.path("ca.crt")) as channel:
        expect_error(StatusCode.UNAUTHENTICATED, schedule, channel)
        assert schedule(channel, token=token).task_id
        assert health(channel) == SERVING  # health needs no token


def test_expiry_gauge_is_the_served_certificates_not_after(tls_server, pki):
    not_after = ssl.cert_time_to_seconds(served_certificate(tls_server, pki.path("ca.crt"))["notAfter"])
    samples = support.parse_metrics(support.scrape(tls_server))
    values = {name: value for name, labels, value in samples if not labels}
    assert values["hourglass_tls_certificate_expiry_timestamp_seconds"] == not_after
    reloads = {
        labels["result"]: value
        for name, labels, value in samples
        if name == "hourglass_tls_reloads_total"
    }
    assert reloads == {"ok": 0, "failed": 0}


def test_metrics_port_stays_plain_http(tls_server):
    assert "hourglass_build_info" in support.scrape(tls_server)


# --- mTLS ---------------------------------------------------------------------------------


def test_mtls_accepts_a_client_certificate_of_the_ca(mtls_server, pki):
    with secure_channel(mtls_server, pki.path("ca.crt"), client=pki.client) as channel:
        assert health(channel) == SERVING
        assert schedule(channel).task_id
    assert mtls_server.started_event["tls"] == "mutual"
    assert mtls_server.event("tls_enabled")["client_certificates_required"] is True


def test_mtls_refuses_a_client_without_certificate(mtls_server, pki):
    expect_refused(secure_channel(mtls_server, pki.path("ca.crt")))


def test_mtls_refuses_a_certificate_of_another_ca(mtls_server, pki):
    expect_refused(secure_channel(mtls_server, pki.path("ca.crt"), client=pki.other_client))


def test_mtls_refuses_an_expired_client_certificate(mtls_server, pki):
    expect_refused(secure_channel(mtls_server, pki.path("ca.crt"), client=pki.expired_client))


def test_mtls_refuses_a_server_certificate_used_as_client_certificate(mtls_server, pki):
    # Signed by the right CA, but for serverAuth only: not a client's certificate.
    expect_refused(secure_channel(mtls_server, pki.path("ca.crt"), client=pki.server2))


# --- rotation -----------------------------------------------------------------------------


def wait_for_serial(server, pki, serial, client=None):
    wait_until(
        lambda: served_serial(server, pki.path("ca.crt"), client) == serial,
        timeout_s=10,
        interval_s=0.1,
        what=f"the server to serve serial {serial}",
    )


class Prober:
    """Opens a new TLS connection (and makes a call) again and again in a thread; records every
    failure, so that a test can check that a rotation never refused a client."""

    def __init__(self, server, pki, client=None):
        self.server, self.pki, self.client = server, pki, client
        self.failures = []
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(30)

    def _run(self):
        while not self._stop.is_set():
            try:
                served_serial(self.server, self.pki.path("ca.crt"), self.client)
                self.connections += 1
            except (OSError, ssl.SSLError) as error:
                self.failures.append(repr(error))
            time.sleep(0.02)


def test_rotation_by_renaming_files(start_server, pki, tmp_path):
    cert, key = str(tmp_path / "tls.crt"), str(tmp_path / "tls.key")
    copy(pki.server[0], cert)
    copy(pki.server[1], key)
    server = start_server(*tls_flags(cert, key))
    assert served_serial(server, pki.path("ca.crt")) == pki.server[2]
    old = secure_channel(server, pki.path("ca.crt"))
    assert health(old) == SERVING
    with Prober(server, pki) as prober:
        # Two renames: in between, the key does not match the certificate; the server keeps
        # serving the old pair until both are new.
        copy(pki.server2[1], key)
        copy(pki.server2[0], cert)
        wait_for_serial(server, pki, pki.server2[2])
        time.sleep(0.3)
    assert prober.failures == [], prober.failures
    assert prober.connections > 0
    assert health(old) == SERVING  # the connection opened before the rotation still works
    old.close()
    reloaded = [e for e in server.log_events() if e.get("event") == "tls_reloaded"]
    assert int(reloaded[-1]["serial"], 16) == pki.server2[2]
    assert reloaded[-1]["subject"] == "CN=server2"


def make_secret_dir(directory, version, files):
    """Writes `files` ({name: source path}) the way the kubelet updates a mounted Secret: into a
    new timestamped directory, then swaps the ..data symlink to it with one rename; the files
    themselves are symlinks through ..data."""
    version_dir = f"..{version}"
    os.mkdir(os.path.join(directory, version_dir))
    for name, source in files.items():
        with open(os.path.join(directory, version_dir, name), "wb") as f:
            f.write(read(source))
    temporary = os.path.join(directory, "..data_tmp")
    os.symlink(version_dir, temporary)
    os.replace(temporary, os.path.join(directory, "..data"))
    for name in files:
        link = os.path.join(directory, name)
        if not os.path.islink(link):
            os.symlink(os.path.join("..data", name), link)


def test_rotation_by_kubernetes_secret_symlink_swap(start_server, pki, tmp_path):
    secret = str(tmp_path / "secret")
    os.mkdir(secret)
    make_secret_dir(
        secret,
        "2026_01_01_00_00_00.1",
        {"tls.crt": pki.server[0], "tls.key": pki.server[1], "ca.crt": pki.path("ca.crt")},
    )
    server = start_server(
        *tls_flags(
            os.path.join(secret, "tls.crt"),
            os.path.join(secret, "tls.key"),
            client_ca=os.path.join(secret, "ca.crt"),
        )
    )
    assert served_serial(server, pki.path("ca.crt"), pki.client) == pki.server[2]
    old = secure_channel(server, pki.path("ca.crt"), client=pki.client)
    assert health(old) == SERVING
    with Prober(server, pki, pki.client) as prober:
        make_secret_dir(
            secret,
            "2026_01_02_00_00_00.2",
            {"tls.crt": pki.server3[0], "tls.key": pki.server3[1], "ca.crt": pki.path("ca.crt")},
        )
        wait_for_serial(server, pki, pki.server3[2], pki.client)
    assert prober.failures == [], prober.failures
    assert health(old) == SERVING
    old.close()
    # A new connection with a client certificate still works after the swap (the client CA was
    # re-read too).
    with secure_channel(server, pki.path("ca.crt"), client=pki.client) as channel:
        assert schedule(channel).task_id


def test_bad_new_files_keep_the_old_certificate(start_server, pki, tmp_path):
    cert, key = str(tmp_path / "tls.crt"), str(tmp_path / "tls.key")
    copy(pki.server[0], cert)
    copy(pki.server[1], key)
    server = start_server(*tls_flags(cert, key))
    garbage = tmp_path / "garbage"
    garbage.write_text("not a certificate\n")
    copy(str(garbage), cert)

    def failed():
        return any(e.get("event") == "tls_reload_failed" for e in server.log_events())

    wait_until(failed, timeout_s=10, what="tls_reload_failed")
    event = next(e for e in server.log_events() if e.get("event") == "tls_reload_failed")
    assert cert in event["error"] and "no PEM certificate" in event["error"]
    assert event["level"] == "error"
    # The old certificate is still served, to new connections too.
    assert served_serial(server, pki.path("ca.crt")) == pki.server[2]
    samples = support.parse_metrics(support.scrape(server))
    assert ("hourglass_tls_reloads_total", {"result": "failed"}, 1.0) in samples
    # A deleted key: refused as well.
    os.remove(key)
    time.sleep(1.5)
    assert served_serial(server, pki.path("ca.crt")) == pki.server[2]
    # Then a good pair: served.
    copy(pki.server2[1], key)
    copy(pki.server2[0], cert)
    wait_for_serial(server, pki, pki.server2[2])
    samples = support.parse_metrics(support.scrape(server))
    assert ("hourglass_tls_reloads_total", {"result": "ok"}, 1.0) in samples


# --- bad flags and files at start ---------------------------------------------------------


def start_fails(tmp_path, *flags):
    """Runs the server with `flags`; it must exit non-zero before it listens. Returns stderr."""
    result = subprocess.run(
        [
            BINARY,
            "--grpc_address=127.0.0.1:0",
            "--metrics_address=",
            f"--data_dir={tmp_path / 'data'}",
            *flags,
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2, result.stderr
    assert "server_started" not in result.stderr
    return result.stderr


def test_bad_files_at_start_stop_the_server_naming_the_file(pki, tmp_path):
    cert, key, _ = pki.server
    missing = str(tmp_path / "missing.crt")
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n")
    cases = [
        ([f"--tls_cert={missing}", f"--tls_key={key}"], [missing, "No such file"]),
        ([f"--tls_cert={garbage}", f"--tls_key={key}"], [str(garbage), "no PEM certificate"]),
        ([f"--tls_cert={cert}", f"--tls_key={garbage}"], [str(garbage), "no unencrypted PEM"]),
        ([f"--tls_cert={cert}", f"--tls_key={pki.server2[1]}"], [pki.server2[1], "not the key"]),
        (
            [f"--tls_cert={cert}", f"--tls_key={key}", f"--tls_client_ca={garbage}"],
            ["--tls_client_ca", str(garbage)],
        ),
        (
            [f"--tls_cert={cert}", f"--tls_key={key}", f"--tls_client_ca={missing}"],
            ["--tls_client_ca", missing],
        ),
    ]
    for flags, expected in cases:
        stderr = start_fails(tmp_path, *flags)
        for text in expected:
            assert text in stderr, (flags, stderr)
        assert "start_failed" in stderr


def test_unreadable_key_stops_the_server(pki, tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root reads every file")
    key = tmp_path / "tls.key"
    copy(pki.server[1], str(key))
    os.chmod(key, 0)
    stderr = start_fails(tmp_path, f"--tls_cert={pki.server[0]}", f"--tls_key={key}")
    assert str(key) in stderr and "Permission denied" in stderr


def test_flag_combinations_that_make_no_sense(pki, tmp_path):
    cert, key, _ = pki.server
    assert "--tls_key is set but --tls_cert is not" in start_fails(tmp_path, f"--tls_key={key}")
    assert "--tls_cert is set but --tls_key is not" in start_fails(tmp_path, f"--tls_cert={cert}")
    assert "--tls_client_ca needs --tls_cert and --tls_key" in start_fails(
        tmp_path, f"--tls_client_ca={pki.path('ca.crt')}"
    )
    assert "--tls_reload_interval must be between" in start_fails(
        tmp_path, f"--tls_cert={cert}", f"--tls_key={key}", "--tls_reload_interval=0s"
    )


def test_help_documents_the_tls_flags():
    output = subprocess.run([BINARY, "--help"], capture_output=True, text=True, timeout=30).stdout
    for flag in ("tls_cert", "tls_key", "tls_client_ca", "tls_reload_interval"):
        assert f"  --{flag} (default: " in output, flag
    assert "  --tls_reload_interval (default: 1m)" in output
