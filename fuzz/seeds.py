"""Writes the seed corpus: small, real examples of what each harness reads.

``python -m fuzz.seeds`` (re)creates the ``seed-*`` files under ``fuzz/corpus/<harness>/``;
files named otherwise (inputs the fuzzer found, crash regressions) are left alone.
"""

from __future__ import annotations

import json
from pathlib import Path

from fuzz._keys import HOLDER, HOLDER_JWK, LOG, WITNESS, checkpoint_note, compact_jws, proof
from gateway.auth.jwk import HolderKey
from ledger.checkpoint import Checkpoint, cosign
from ledger.cosigning import add_checkpoint_body
from ledger.tiles import encode_entry_bundle

CORPUS = Path(__file__).parent / "corpus"
NOW = 1_800_000_000
T2 = "2027-02-01T00:00:00Z"  # a consent's end, after NOW
PATIENT, PROVIDER = "pat:" + "1" * 32, "prov:" + "0" * 32
T = "2027-01-15T08:00:00Z"  # a little before the harnesses' NOW (2027-01-15T08:00:00Z)


def _native() -> bytes:
    return json.dumps(
        {
            "batch_id": "b-1",
            "readings": [
                {"code": "8867-4", "unit": "/min", "value": 72, "time": T},
                {"code": "8310-5", "unit": "[degF]", "value": 98.6, "time": T},
                {
                    "code": "85354-9",
                    "time": T,
                    "components": [
                        {"code": "8480-6", "unit": "mm[Hg]", "value": 120},
                        {"code": "8462-4", "unit": "mm[Hg]", "value": 80},
                    ],
                },
            ],
        }
    ).encode()


def _fhir() -> bytes:
    def obs(code: str, unit: str, value: float) -> dict[str, object]:
        return {
            "resourceType": "Observation",
            "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
            "subject": {"identifier": {"value": "pat-1"}},
            "effectiveDateTime": T,
            "valueQuantity": {"system": "http://unitsofmeasure.org", "code": unit, "value": value},
        }

    bp = obs("85354-9", "", 0)
    del bp["valueQuantity"]
    bp["component"] = [
        {
            "code": {"coding": [{"system": "http://loinc.org", "code": c}]},
            "valueQuantity": {"system": "http://unitsofmeasure.org", "code": "mm[Hg]", "value": v},
        }
        for c, v in (("8480-6", 118), ("8462-4", 76))
    ]
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "identifier": {"value": "fhir-1"},
        "entry": [{"resource": r} for r in (obs("59408-5", "%", 97), obs("29463-7", "kg", 70), bp)],
    }
    return json.dumps(bundle).encode()


def _dpop_claims(**extra: object) -> bytes:
    claims = {"jti": "jti-000000001", "htm": "POST", "htu": "https://gw.example/v1/token"}
    return json.dumps({**claims, "iat": NOW, **extra}).encode()


def seeds() -> dict[str, dict[str, bytes]]:
    note5 = checkpoint_note(5)
    text5 = Checkpoint.parse(checkpoint_note(5).decode().split("\n\n")[0] + "\n").text()
    sdp = (
        "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
        "a=fingerprint:sha-256 AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89"
        ":AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89\r\n"
        "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=fingerprint:sha-1 0a:1b:2c\r\n"
    )
    jkt = HolderKey.from_jwk(HOLDER_JWK).jkt

    proof_jws = compact_jws(
        {"typ": "dpop+jwt", "alg": "EdDSA", "jwk": HOLDER_JWK}, _dpop_claims(), HOLDER
    )
    batch = compact_jws({"alg": "EdDSA", "typ": "vitals+json", "kid": jkt}, _native(), HOLDER)
    cosigned = cosign(note5, WITNESS, NOW)
    endpoint = "https://gw.example/oauth/token"
    claims = {"iss": PROVIDER, "sub": PROVIDER, "aud": endpoint, "exp": NOW + 60, "jti": "j" * 16}
    assertion = compact_jws({"alg": "EdDSA", "typ": "JWT"}, json.dumps(claims).encode(), HOLDER)
    line = cosigned[len(note5) :]
    return {
        "note": {
            "seed-checkpoint": note5,
            "seed-cosigned": cosigned,
            "seed-vkey": LOG.vkey.encode(),
            "seed-witness-vkey": WITNESS.vkey.encode(),
            "seed-two-lines": checkpoint_note(0, ("ext one",)),
        },
        "checkpoint": {
            "seed-body": text5.encode(),
            "seed-signed": note5,
            "seed-cosigned": cosigned,
            "seed-extensions": checkpoint_note(3, ("a", "b")),
            "seed-empty": checkpoint_note(0),
        },
        "cosignatures": {"seed-line": line, "seed-size": b"5\n", "seed-zero": b"0\n"},
        "witness": {
            "seed-from-0": add_checkpoint_body(0, [], note5),
            "seed-from-3": add_checkpoint_body(3, proof(3, 5), note5),
            "seed-same": add_checkpoint_body(3, [], checkpoint_note(3)),
        },
        "tiles": {
            "seed-path": b"\x00tile/0/x001/234",
            "seed-partial": b"\x00tile/entries/000.p/5",
            "seed-hashes": b"\x02" + bytes(range(64)),
            "seed-bundle": b"\x03" + encode_entry_bundle([b"a", b"", b"ccc"]),
        },
        "jws": {
            "seed-proof": b"\x00" + proof_jws.encode(),
            "seed-claims": b"\x01" + _dpop_claims(),
            "seed-claims-ath": b"\x01" + _dpop_claims(ath="x", nonce="y"),
            "seed-jwk-okp": b"\x02" + json.dumps(HOLDER_JWK).encode(),
            "seed-jwk-ec": b"\x02"
            + json.dumps(
                {
                    "kty": "EC",
                    "crv": "P-256",
                    "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
                    "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0",
                }
            ).encode(),
        },
        "vitals": {"seed-jws": b"\x00" + batch.encode(), "seed-payload": b"\x01" + _native()},
        "fhir": {"seed-bundle": _fhir()},
        "sdp": {"seed-offer": sdp.encode()},
        "jsonio": {
            "seed-object": _native(),
            "seed-numbers": b'[1, -2.5e3, 9223372036854775807, "\\ud83d\\ude00", null, true]',
        },
        "rfc3339": {
            "seed-z": T.encode(),
            "seed-offset": b"2026-12-01T09:30:00.123456789+05:30",
        },
        "bodies": {
            "seed-invite-provider": b"\x00"
            + json.dumps({"role": "provider", "npi": "1234567893", "ttl": 3600}).encode(),
            "seed-invite-device": b"\x00"
            + json.dumps({"role": "device", "patient": PATIENT, "display_name": "Scale"}).encode(),
            "seed-enroll": b"\x01"
            + json.dumps(
                {"invite": "x" * 43, "jwk": HOLDER_JWK, "serial": "SN-1", "model": "Acme 2"}
            ).encode(),
            "seed-display-name": b"\x02" + json.dumps({"display_name": "Dr. Jane O'Neil"}).encode(),
            "seed-consent": b"\x03"
            + json.dumps(
                {"grantee": PROVIDER, "scopes": ["vitals.read", "call"], "until": T2}
            ).encode(),
            "seed-emergency": b"\x04"
            + json.dumps({"patient": PATIENT, "reason": "unconscious in the ER"}).encode(),
            "seed-revocation": b"\x05" + b'{"sub": "' + PATIENT.encode() + b'", "reason": "left"}',
            "seed-erasure": b"\x06" + b'{"reason": "legal_order", "reference": "TKT-1:2"}',
        },
        "oauth": {
            "seed-form": b"\x00grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange"
            b"&subject_token=a.b.c&subject_token_receipt=e30"
            b"&subject_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Aaccess_token"
            b"&scope=call&audience=https%3A%2F%2Fgw.example%2F",
            "seed-assertion": b"\x01" + assertion.encode(),
            "seed-claims": b"\x02" + json.dumps(claims).encode(),
            "seed-header": b"\x03"
            + json.dumps({"alg": "EdDSA", "typ": "JWT", "kid": jkt}).encode(),
        },
        "query": {
            "seed-filters": b"type=consent.granted&actor="
            + PATIENT.encode()
            + b"&since=2027-01-01T00:00:00Z&until=2027-01-15T08:00:00.5%2B01:00&limit=10",
            "seed-cursor": b"cursor=0041&limit=1000&session=s%20x",
        },
        "config": {
            "seed-config": b'host = "127.0.0.1"\nport = 8443\n'
            b'log_origin = "gw.example/telegate/log"\ntoken_lifetime = 300\n'
            b"dpop_require_nonce = true\n"
            b'[[witnesses]]\nurl = "https://w.example"\nvkey = "' + WITNESS.vkey.encode() + b'"\n',
        },
    }


def write() -> None:
    for harness, files in seeds().items():
        d = CORPUS / harness
        d.mkdir(parents=True, exist_ok=True)
        for name, data in files.items():
            (d / name).write_bytes(data)


if __name__ == "__main__":
    write()
