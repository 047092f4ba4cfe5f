"""docker/mosquitto as shipped (its mosquitto.conf and acl, only paths and the port
changed): TLS with client certificates whose CN is the MQTT username. The gateway signs in
as telegate-gateway, a device as its id; a client without a certificate is refused."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import json
import secrets
import ssl
import time
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from gateway.app import create_app
from gateway.appkeys import CONFIG
from gateway.config import Config
from gateway.mqtt.topics import receipts_topic, vitals_topic
from tests.conftest import ROOT
from tests.gateway.vitals.world import World, batch, hr, sign
from tests.mqtt.broker import running
from tests.mqtt.conftest import ORIGIN, subscribed

SHIPPED = ROOT / "docker" / "mosquitto"


class Pki:
    """A throwaway CA issuing the broker's and the clients' certificates (EC P-256)."""

    def __init__(self, where: Path) -> None:
        self.where = where
        where.mkdir(parents=True, exist_ok=True)
        self.key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "telegate test CA")])
        self.name = name
        self.cert = (
            self._builder(name, self.key.public_key())
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        self.ca = self._write("ca.crt", self.cert.public_bytes(serialization.Encoding.PEM))
        self.issue("server", server=True)

    def _builder(self, subject: x509.Name, public: Any) -> x509.CertificateBuilder:
        now = dt.datetime.now(dt.UTC)
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(getattr(self, "name", subject))
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(hours=1))
        )

    def _write(self, name: str, data: bytes) -> Path:
        path = self.where / name
        path.write_bytes(data)
        path.chmod(0o600)
        return path

    def issue(self, cn: str, *, server: bool = False) -> tuple[Path, Path]:
        """(certificate, key) files for ``cn``."""
        key = ec.generate_private_key(ec.SECP256R1())
        b = self._builder(
            x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]), key.public_key()
        )
        if server:
            san = x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
            b = b.add_extension(san, critical=False).add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
            )
        else:
            b = b.add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
            )
        cert = b.sign(self.key, hashes.SHA256())
        stem = cn.replace(":", "-")
        pem = serialization.PrivateFormat.PKCS8
        key_pem = key.private_bytes(serialization.Encoding.PEM, pem, serialization.NoEncryption())
        return (
            self._write(f"{stem}.crt", cert.public_bytes(serialization.Encoding.PEM)),
            self._write(f"{stem}.key", key_pem),
        )

    def context(self, cert: tuple[Path, Path] | None) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.ca))
        if cert is not None:
            ctx.load_cert_chain(*cert)
        return ctx


def shipped_config(pki: Pki) -> str:
    """docker/mosquitto/mosquitto.conf with this test's paths; its listener is the test
    broker's (first line of tests/mqtt/broker.py's config); persistence left out, the log
    on stderr (unbuffered, into the broker's log file)."""
    out = []
    for line in (SHIPPED / "mosquitto.conf").read_text().splitlines():
        if line.startswith(("listener ", "persistence", "autosave_interval", "log_dest")):
            continue
        line = line.replace("/mosquitto/certs/", f"{pki.where}/")
        line = line.replace("/mosquitto/config/acl", str(SHIPPED / "acl"))
        out.append(line)
    out.append("log_type debug")  # the test reads the broker's denials
    return "\n".join(out)


async def test_the_shipped_tls_config_authenticates_by_certificate_and_applies_the_acl(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    pki = Pki(tmp_path / "certs")
    with running(tmp_path / "broker", shipped_config(pki)) as broker:
        gw_cert, gw_key = pki.issue("telegate-gateway")
        url = f"mqtts://127.0.0.1:{broker.port}?ca={pki.ca}&cert={gw_cert}&key={gw_key}"
        config = Config(
            data_dir=tmp_path / "data", log_origin=ORIGIN, rate_exempt_loopback=True, mqtt_url=url
        )
        gw = await aiohttp_client(create_app(config))
        await subscribed(gw.app)  # the gateway's certificate and its ACL entry work
        w = await World(gw).setup(gw.app[CONFIG])
        tls = pki.context(pki.issue(w.dev.sub))

        device_id = f"d-{secrets.token_hex(4)}"
        async with aiomqtt.Client(
            "127.0.0.1",
            broker.port,
            identifier=device_id,
            protocol=aiomqtt.ProtocolVersion.V5,
            tls_context=tls,
        ) as device:
            await device.subscribe(receipts_topic(w.dev.sub), qos=1)

            async def publish(topic: str, batch_id: str) -> None:
                props = Properties(PacketTypes.PUBLISH)
                props.CorrelationData = batch_id.encode()
                jws = sign(w.dev, batch([hr(70, time.time() - 5)], batch_id))
                await device.publish(topic, jws.encode(), qos=1, properties=props)

            await publish(vitals_topic(w.other_dev.sub), "tls-forged")  # dropped: ACL
            await publish(vitals_topic(w.dev.sub), "tls-ok")
            async with asyncio.timeout(15):
                m = await anext(aiter(device.messages))
            assert m.properties is not None and m.properties.CorrelationData == b"tls-ok"
            assert isinstance(m.payload, bytes)
            assert json.loads(m.payload)["batch_id"] == "tls-ok"
        events = await w.events("vitals.batch")
        assert [e["data"]["batch_id"] for e in events] == ["tls-ok"]
        denied = f"Denied PUBLISH from {device_id}"
        assert denied in broker.log.read_text() and vitals_topic(w.other_dev.sub) in (
            broker.log.read_text()
        )

        # No certificate: no connection.
        with pytest.raises(aiomqtt.MqttError):
            async with aiomqtt.Client(
                "127.0.0.1",
                broker.port,
                protocol=aiomqtt.ProtocolVersion.V5,
                tls_context=pki.context(None),
                timeout=2,
            ):
                pass
