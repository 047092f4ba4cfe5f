"""No hostile input is a 500: nested, huge and out-of-range values thrown at every route of
the app (enumerated from its router, so a new route is covered the day it is added), inside
signed vitals batches (native and FHIR), in query parameters and path segments, in forms and
client assertions, and on the signalling WebSocket. Every refusal is problem+json (under
/fhir, a FHIR OperationOutcome)."""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from gateway.config import Config
from tests.gateway.idclient import Holder, b64u, call, get_token, invite_and_enroll
from tests.gateway.vitals.world import World, iso, sign
from tests.supply import world as supply

PROBLEM_JSON = "application/problem+json"
HOT = "@@"  # where a template takes the hostile value (raw JSON text)


# -- hostile values ---------------------------------------------------------------------
def _array(depth: int) -> str:
    return "[" * depth + "]" * depth


def _object(depth: int) -> str:
    return '{"a":' * depth + "1" + "}" * depth


_OFFSETS = ["Z", "+14:00", "-14:00", "+23:59", "-23:59", "+00:00", "+24:00", ""]
#: Date-times in and out of range: years 1 and 9999 with extreme offsets overflow in UTC.
times = st.one_of(
    st.builds(
        "{:04d}-{:02d}-{:02d}T{:02d}:{:02d}:{:02d}{}".format,
        st.sampled_from([1, 2, 1969, 1970, 2026, 9998, 9999]) | st.integers(0, 9999),
        st.integers(0, 13),
        st.integers(0, 32),
        st.integers(0, 25),
        st.integers(0, 60),
        st.integers(0, 61),
        st.sampled_from(_OFFSETS),
    ),
    st.sampled_from(["YESTERDAY", "2026-W49-1T10:00:00Z", "20261201T093000Z", "", "T" * 41]),
)
big_ints = st.one_of(
    st.integers(min_value=2**63 - 2, max_value=10**450),
    st.integers(min_value=-(10**450), max_value=-(2**63) + 2),
    st.integers(300, 1500).map(lambda n: "9" * n),
).map(str)
#: Raw JSON text for one value.
json_values = st.one_of(
    st.integers(30, 3000).flatmap(lambda d: st.sampled_from([_array(d), _object(d)])),
    big_ints,
    st.sampled_from(["1e999", "-1e999", "NaN", "Infinity", "-Infinity", "1e-999", "0." + "1" * 80]),
    st.sampled_from(['"\\ud800"', '"x\\udfff"', '"\\u0000"']),
    times.map(json.dumps),
    st.sampled_from(['""', "[]", "{}", "null", "true", "-0", '"' + "x" * 5000 + '"']),
    # Well-formed, but of another type or outside the tables.
    st.sampled_from(
        [
            '["x"]',
            '{"a":[]}',
            '"1234-5"',
            '"8867-4"',
            '{"coding":[{"system":"http://loinc.org","code":"1234-5"}]}',
            '{"identifier":[]}',
        ]
    ),
)
#: Query parameter and path segment values.
texts = st.one_of(
    big_ints,
    times,
    st.sampled_from(
        [
            "99999999999999999999.0",
            "1.99999999999999999999",
            "-1",
            "0",
            " 1",
            "1_0",
            "\uff11",  # fullwidth one: str.isdigit() says yes, int() says yes
            "\u00b2",  # superscript two: str.isdigit() says yes, int() says no
            "\u0663",
            "1e999",
            "NaN",
            "",
            "x" * 1500,
            "a.b",
            "0.-1",
            "json",
            "fhir",
            "true",
        ]
    ),
)
#: Host headers: without TELEGATE_PUBLIC_URL the origin and DPoP htu are built from Host.
hosts = st.one_of(
    st.sampled_from(["127.0.0.1:notaport", "127.0.0.1:99999", "", "[::1", "a b", "x@y", ":80"]),
    st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=40),
)
QUERY_NAMES = (
    "since",
    "until",
    "limit",
    "after",
    "cursor",
    "index",
    "size",
    "old",
    "new",
    "format",
    "code",
    "active",
    "type",
    "subject",
    "ticket",
)


# -- the routes -------------------------------------------------------------------------
@dataclass(frozen=True)
class Route:
    """How to reach a route's parsing code: who calls, the body templates (one ``@@``
    each), and ``form`` for the OAuth endpoints. Unlisted routes get a generic JSON body
    from a caller drawn at random, so they are covered too."""

    who: str | None = None
    bodies: tuple[str, ...] = ()
    form: bool = False


ROUTES: dict[tuple[str, str], Route] = {
    ("POST", "/v1/invites"): Route(
        "adm",
        ('{"role":"patient","ttl":@@}', '{"role":@@}', '{"role":"device","patient":@@}'),
    ),
    ("POST", "/v1/enroll"): Route(
        None, ('{"invite":@@,"jwk":{"kty":"OKP"}}', '{"invite":"x","jwk":@@}', "@@")
    ),
    ("POST", "/v1/enroll/check"): Route(None, ('{"invite":@@}', "@@")),
    ("POST", "/v1/revocations"): Route(
        "adm", ('{"jti":@@,"reason":"key_compromise"}', '{"sub":"x","reason":@@}')
    ),
    ("POST", "/v1/consents"): Route(
        "pat",
        (
            '{"grantee":"role:provider","scopes":["call"],"until":@@}',
            '{"grantee":@@,"scopes":["call"],"until":"2030-01-01T00:00:00Z"}',
            '{"grantee":"role:provider","scopes":@@,"until":"2030-01-01T00:00:00Z"}',
        ),
    ),
    ("POST", "/v1/emergency-access"): Route(
        "prov", ('{"patient":"PAT","reason":@@}', '{"patient":@@,"reason":"xxxxxxxxxxxx"}')
    ),
    ("POST", "/v1/sessions"): Route("prov", ('{"patient":@@}', "@@")),
    ("POST", "/v1/patients/{id}/erase"): Route(
        "adm", ('{"reason":@@}', '{"reason":"patient_request","reference":@@}')
    ),
    ("POST", "/oauth/token"): Route("pat", form=True),
    ("POST", "/oauth/introspect"): Route("adm", form=True),
    ("POST", "/v1/vitals"): Route("dev"),
    ("POST", "/v1/supply/events"): Route("sup"),
    ("GET", "/v1/audit/events"): Route("aud"),
    ("GET", "/v1/audit/export"): Route("aud"),
    ("GET", "/v1/patients/{patient}/access-report"): Route("aud"),
    ("GET", "/v1/patients/{id}/vitals"): Route("pat"),
    ("GET", "/v1/sessions"): Route("pat"),
    ("GET", "/v1/sessions/waiting"): Route("prov"),
    ("GET", "/v1/sessions/{id}"): Route("prov"),
    ("GET", "/v1/consents"): Route("pat"),
    ("DELETE", "/v1/consents/{id}"): Route("pat"),
    ("GET", "/v1/turn-credentials"): Route("pat"),
    # Incentives (gateway/incentives, docs/incentives.md).
    ("POST", "/v1/programs"): Route(
        "adm",
        (
            '{"name":@@,"start":"2026-12-07","rule":"count(\\"8867-4\\") > 1"}',
            '{"name":"x","start":@@,"rule":"count(\\"8867-4\\") > 1"}',
            '{"name":"x","start":"2026-12-07","rule":@@}',
            '{"name":"x","start":"2026-12-07","rule":"count(\\"8867-4\\") > 1","periods":@@}',
            "@@",
        ),
    ),
    ("GET", "/v1/programs"): Route("pat"),
    ("POST", "/v1/programs/{id}/enroll"): Route("pat", ("@@",)),
    ("POST", "/v1/programs/{id}/evaluate"): Route("pat", ('{"period":@@}', "@@")),
    ("GET", "/v1/programs/{id}/progress"): Route("pat"),
    ("GET", "/v1/programs/{id}/evaluations/{period}"): Route("pat"),
    ("GET", "/v1/rewards"): Route("pat"),
    ("POST", "/v1/rewards/{id}/revoke"): Route("adm"),
}
#: Opened as WebSockets by test_hostile_signalling_messages, not as plain requests.
WEBSOCKETS = {("GET", "/v1/sessions/{id}/ws")}

NATIVE = (
    '{"batch_id":"BID","readings":[{"code":"8867-4","unit":"/min","value":@@,"time":"NOW"}]}',
    '{"batch_id":"BID","readings":[{"code":"8867-4","unit":"/min","value":70,"time":@@}]}',
    '{"batch_id":"BID","readings":@@}',
    '{"batch_id":@@,"readings":[]}',
    '{"batch_id":"BID","readings":[{"code":"85354-9","time":"NOW","components":'
    '[{"code":"8480-6","unit":"mm[Hg]","value":@@},'
    '{"code":"8462-4","unit":"mm[Hg]","value":80}]}]}',
    '{"batch_id":"BID","readings":[{"code":"85354-9","time":"NOW","components":'
    '[{"code":@@,"unit":"mm[Hg]","value":120},{"code":"8462-4","unit":"mm[Hg]","value":80}]}]}',
    '{"batch_id":"BID","readings":[{"code":@@,"unit":"/min","value":70,"time":"NOW"}]}',
)
_OBS = (
    '{"resourceType":"Observation","status":"final",'
    '"code":{"coding":[{"system":"http://loinc.org","code":"8867-4"}]},'
    '"effectiveDateTime":TIME,'
    '"valueQuantity":{"value":VALUE,"system":"http://unitsofmeasure.org","code":"/min"}}'
)
_BP = (
    '{"resourceType":"Observation","status":"final",'
    '"code":{"coding":[{"system":"http://loinc.org","code":"85354-9"}]},'
    '"effectiveDateTime":"NOW","component":['
    '{"code":@@,"valueQuantity":{"value":120,"system":"http://unitsofmeasure.org","code":"mm[Hg]"}},'
    '{"code":{"coding":[{"system":"http://loinc.org","code":"8462-4"}]},'
    '"valueQuantity":{"value":80,"system":"http://unitsofmeasure.org","code":"mm[Hg]"}}]}'
)
_BUNDLE = '{"resourceType":"Bundle","type":"collection","identifier":{"value":"BID"},"entry":'
FHIR = (
    _BUNDLE + '[{"resource":' + _OBS.replace("VALUE", HOT).replace("TIME", '"NOW"') + "}]}",
    _BUNDLE + '[{"resource":' + _OBS.replace("VALUE", "70").replace("TIME", HOT) + "}]}",
    _BUNDLE + HOT + "}",
    _BUNDLE + '[{"resource":@@}]}',
    _BUNDLE
    + '[{"resource":'
    + _OBS.replace('"final"', HOT).replace("VALUE", "70").replace("TIME", '"NOW"')
    + "}]}",
    _BUNDLE + '[{"resource":' + _BP + "}]}",
    _BUNDLE
    + '[{"resource":'
    + _OBS.replace("VALUE", "70").replace("TIME", '"NOW"')[:-1]
    + ',"subject":@@}}]}',
)


def _epcis(*fields: str) -> tuple[str, ...]:
    """A commissioning document signed as a party's software would, with the hostile value
    in one field at a time (the event's, or the document's)."""
    doc = supply.document(supply.commission([supply.sgtin("HOSTILE1")]))
    out = []
    for field in fields:
        d = json.loads(json.dumps(doc))
        ev = d["epcisBody"]["eventList"][0]
        (ev if field in ev else d)[field] = "@HOT@"
        out.append(json.dumps(d).replace('"@HOT@"', HOT))
    return tuple(out)


EPCIS = _epcis("epcList", "eventTime", "bizStep", "action", "ilmd", "type", "creationDate")


@dataclass
class Hostile:
    """A world with every role, a call, a consent and a live signalling socket."""

    w: World
    aud: Holder
    aud_t: str
    sup: Holder
    sup_t: str
    session: str
    consent: str
    ws: Any

    def holder(self, who: str) -> tuple[Holder, str]:
        w = self.w
        return {
            "adm": (w.adm, w.adm_t),
            "prov": (w.prov, w.prov_t),
            "pat": (w.pat, w.pat_t),
            "dev": (w.dev, w.dev_t),
            "aud": (self.aud, self.aud_t),
            "sup": (self.sup, self.sup_t),
        }[who]

    def path_value(self, method: str, canonical: str, name: str) -> str:
        if name in ("id", "patient") and canonical.startswith("/v1/patients/"):
            # Erasure goes to the other patient, so the reads keep finding data.
            return self.w.other.sub if canonical.endswith("/erase") else self.w.pat.sub
        return {
            "id": self.consent if canonical.startswith("/v1/consents/") else self.session,
            "session": self.session,
            "index": "0",
            "path": "0/000",
            "list": "1",
            "kind": "js",
            "name": "call.js",
        }.get(name, "x")


@pytest.fixture
async def hostile(client: Any, config: Config) -> Hostile:
    w = await World(client).setup(config)
    aud = await invite_and_enroll(client, w.adm, w.adm_t, "auditor")
    aud_t = await get_token(client, aud)
    party = {"gln": supply.gln(1), "kind": "distributor", "display_name": "Distributor 1"}
    sup = await invite_and_enroll(client, w.adm, w.adm_t, "party", **party)
    sup_t = await get_token(client, sup)
    consent = (await w.grant(["call", "vitals.read"]))["id"]
    r = await call(client, "POST", "/v1/sessions", w.prov, w.prov_t, json={"patient": w.pat.sub})
    assert r.status == 201, await r.text()
    session = str((await r.json())["id"])
    ws = await w.ws(session, w.pat, w.pat_t)
    return Hostile(w, aud, aud_t, sup, sup_t, session, consent, ws)


def _routes(app: Any) -> list[tuple[str, str, list[str]]]:
    """(method, canonical path, path parameter names) of every route but HEAD."""
    out = []
    for r in app.router.routes():
        info = r.resource.get_info() if r.resource is not None else {}
        canonical = r.resource.canonical if r.resource is not None else ""
        if r.method == "HEAD" or (r.method, canonical) in WEBSOCKETS:
            continue
        names = list(info["pattern"].groupindex) if "pattern" in info else []
        out.append((r.method, canonical, names))
    return out


def _fill(canonical: str, values: dict[str, str]) -> str:
    path = canonical
    for k, v in values.items():
        path = path.replace("{" + k + "}", v)
    return path


def _jws(holder: Holder, payload: bytes, **header: Any) -> str:
    head = b64u(json.dumps({"alg": holder.alg, "typ": "JWT", **header}).encode())
    signing_input = f"{head}.{b64u(payload)}"
    return f"{signing_input}.{b64u(holder.key.sign(signing_input.encode()))}"


async def _check(resp: Any, what: Any) -> None:
    text = await resp.text()
    assert resp.status < 500, (what, resp.status, text[:300])
    if resp.status >= 400 and resp.url.path.startswith("/fhir/") and resp.status != 429:
        # The FHIR API's refusals are OperationOutcome (gateway/fhir/outcome.py).
        assert resp.content_type == "application/fhir+json", (what, resp.status, text[:300])
        assert json.loads(text)["resourceType"] == "OperationOutcome"
    elif resp.status >= 400:
        assert resp.content_type == PROBLEM_JSON, (what, resp.status, resp.content_type)
        assert json.loads(text)["status"] == resp.status


async def _send(
    h: Hostile, method: str, canonical: str, path: str, spec: Route | None, draw: Any
) -> None:
    w = h.w
    value: str = draw(json_values)
    query = draw(st.dictionaries(st.sampled_from(QUERY_NAMES), texts, max_size=3))
    who = spec.who if spec is not None else draw(st.sampled_from(["adm", "prov", "pat", "aud"]))
    kw: dict[str, Any] = {"params": query}
    if spec is not None and spec.form and canonical == "/oauth/token":
        claims = '{"iss":"PAT","sub":"PAT","aud":"AUD","exp":@@,"jti":"abcdefghijkl"}'
        claims = claims.replace("PAT", w.pat.sub).replace(
            "AUD", w.client.make_url(path).human_repr()
        )
        assertion = _jws(w.pat, claims.replace(HOT, value).encode())
        form = {
            "grant_type": "client_credentials",
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": assertion,
            draw(st.sampled_from(["scope", "resource", "client_id"])): draw(texts),
        }
        url = str(w.client.make_url(path))
        resp = await w.client.post(path, data=form, headers={"DPoP": w.pat.dpop("POST", url)})
        return await _check(resp, (canonical, value[:80]))
    if spec is not None and spec.form:
        kw["data"] = {"token": _jws(Holder(), value.encode())}
    elif canonical == "/v1/vitals":
        fhir = draw(st.booleans())
        template = draw(st.sampled_from(FHIR if fhir else NATIVE))
        payload = template.replace("BID", secrets.token_hex(8)).replace("NOW", iso(time.time()))
        jws = sign(
            w.dev, payload.replace(HOT, value).encode(), **({"cty": "fhir+json"} if fhir else {})
        )
        kw["data"] = jws
        kw["headers"] = {"Content-Type": "application/jose"}
    elif canonical == "/v1/supply/events":
        template = draw(st.sampled_from(EPCIS))
        kw["data"] = supply.sign(h.sup, template.replace(HOT, value).encode())
        kw["headers"] = {"Content-Type": "application/jose"}
    elif method in ("POST", "PUT", "PATCH", "DELETE"):
        bodies = spec.bodies if spec is not None and spec.bodies else ('{"x":@@}', "@@")
        body = draw(st.sampled_from(bodies)).replace("PAT", w.pat.sub).replace(HOT, value)
        kw["data"] = body.encode()
        kw["headers"] = {"Content-Type": "application/json"}
    if draw(st.integers(0, 7)) == 0:
        kw["headers"] = {**kw.get("headers", {}), "Host": draw(hosts)}
    if who is None:
        resp = await w.client.request(method, path, **kw)
    else:
        holder, token = h.holder(who)
        resp = await call(w.client, method, path, holder, token, **kw)
    await _check(resp, (method, canonical, value[:80], query))


#: Shrinking would replay every route per step (minutes); the failure message already names
#: the route, the value and the query.
PHASES = (Phase.explicit, Phase.reuse, Phase.generate)


@settings(
    max_examples=40,
    deadline=None,
    phases=PHASES,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
async def test_no_route_answers_500_to_hostile_input(hostile: Hostile, data: Any) -> None:
    """Each example sends one hostile request to every route."""
    h = hostile
    for method, canonical, names in _routes(h.w.client.app):
        spec = ROUTES.get((method, canonical))
        values = {n: h.path_value(method, canonical, n) for n in names}
        if data.draw(st.integers(0, 3)) == 0:  # now and then, hostile path segments too
            values = {n: data.draw(texts.filter(lambda s: "/" not in s)) or "x" for n in names}
        await _send(h, method, canonical, _fill(canonical, values), spec, data.draw)


async def test_every_route_with_a_body_has_its_templates(client: Any) -> None:
    """A route that reads a body gets hostile values in its real fields only if it is
    listed in ROUTES: say which fields there when adding one."""
    generic = [
        (m, c)
        for m, c, _ in _routes(client.app)
        if m in ("POST", "PUT", "PATCH", "DELETE") and (m, c) not in ROUTES
    ]
    known_bodiless = {
        ("POST", "/v1/sessions/{id}/ticket"),
        ("POST", "/v1/sessions/{id}/admit"),
        ("POST", "/v1/sessions/{id}/end"),
        ("POST", "/v1/sessions/{id}/no-show"),
    }
    assert set(generic) <= known_bodiless, (
        f"new routes {sorted(set(generic) - known_bodiless)}: add them to ROUTES"
    )


@settings(
    max_examples=40,
    deadline=None,
    phases=PHASES,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(value=json_values, kind=st.sampled_from(["offer", "answer", "candidate", "bye"]))
async def test_hostile_signalling_messages(hostile: Hostile, value: str, kind: str) -> None:
    """A nested, huge or out-of-range message gets an error reply; the socket stays open."""
    ws = hostile.ws
    for message in (value, f'{{"type":"{kind}","sdp":{value}}}', f'{{"type":{value}}}'):
        await ws.send_str(message)
        reply = await ws.receive_json(timeout=5)
        assert reply["type"] == "error", reply
        assert not ws.closed
