"""TLS with serve.cert/serve.key, and the rule that the LAN needs serve.allow_remote."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from bot.config import ConfigError, parse_config
from engine.base import EngineState
from engine.config import EspeakConfig, RemoteConfig, VoicesConfig
from engine.remote import RemoteEngine
from engine.worker import EngineWorker
from tests.bot.serve.harness import launch_serve


def self_signed(folder: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gaming-pc")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def check_https(url: str, cert: Path) -> None:
    assert httpx.get(f"{url}/health", verify=str(cert)).json() == {"status": "ready"}
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/health")  # not trusted without the certificate


async def test_tls_serves_https_and_the_remote_engine_trusts_its_certificate(
    tmp_path: Path,
) -> None:
    cert, key = self_signed(tmp_path)
    server = launch_serve(
        tmp_path / "srv", {"name": "espeak"}, {"cert": str(cert), "key": str(key)}
    )
    https = server.url
    assert https.startswith("https://")
    try:
        check_https(https, cert)
        engine = RemoteEngine(
            RemoteConfig(url=https, ca_file=cert),
            EspeakConfig(),
            VoicesConfig(dir=tmp_path / "voices"),
            state_dir=server.state_dir,
        )
        worker = EngineWorker(engine)
        await worker.start()
        try:
            assert await asyncio.wait_for(worker.wait_ready(), 30) is EngineState.READY
            assert engine.server_up
            audio = await asyncio.wait_for(worker.submit("Over TLS.", "default").collect(), 60)
            assert audio.size
        finally:
            await worker.close()
    finally:
        server.stop()


def test_the_network_needs_allow_remote(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as refused:
        parse_config({"serve": {"host": "0.0.0.0"}}, tmp_path)
    assert "serve.host" in str(refused.value)
    assert "serve.allow_remote" in str(refused.value)
    cfg = parse_config({"serve": {"host": "0.0.0.0", "allow_remote": True}}, tmp_path)
    assert cfg.serve.host == "0.0.0.0"
    with pytest.raises(ConfigError) as half:
        parse_config({"serve": {"cert": "cert.pem"}}, tmp_path)
    assert "set both or neither" in str(half.value)
