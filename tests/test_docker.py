"""docker/: the image and the compose file, checked against the gateway they package.

No Docker engine runs here. The Dockerfile is read as text and compose.yaml with PyYAML;
each is checked against the code it must agree with (Config's fields and validation, the
CLI's parser, the app's routes, pages.WEB_DIR). The two start scripts run for real under
/bin/sh, with ``telegate serve`` and ``turnserver`` replaced by recording shims.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway import cli
from gateway.app import _turn_secret, create_app
from gateway.config import Config
from gateway.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
DOCKER = ROOT / "docker"
SETTINGS = {f"TELEGATE_{f.name.upper()}" for f in fields(Config)}
SECRET = "9f" * 32  # what `openssl rand -hex 32` prints: 64 hex digits


# --- reading the files ----------------------------------------------------------------------


def instructions(path: Path = DOCKER / "Dockerfile") -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        full = pending + stripped
        pending = ""
        word, _, rest = full.partition(" ")
        out.append((word.upper(), rest.strip()))
    assert not pending, "the Dockerfile ends inside a continued line"
    return out


def final_stage(instrs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    last = max(i for i, (word, _) in enumerate(instrs) if word == "FROM")
    return instrs[last:]


def build_args(instrs: list[tuple[str, str]]) -> dict[str, str]:
    return dict(arg.split("=", 1) for word, arg in instrs if word == "ARG" and "=" in arg)


def image_env(instrs: list[tuple[str, str]]) -> dict[str, str]:
    env: dict[str, str] = {}
    for word, arg in final_stage(instrs):
        if word == "ENV":
            env.update(token.split("=", 1) for token in shlex.split(arg))
    return env


def healthcheck_command(instrs: list[tuple[str, str]]) -> list[str]:
    [arg] = [arg for word, arg in final_stage(instrs) if word == "HEALTHCHECK"]
    _, _, command = arg.partition(" CMD ")
    argv = json.loads(command)  # exec form: no shell in the way of the exit status
    assert isinstance(argv, list)
    return [str(a) for a in argv]


def compose() -> dict[str, Any]:
    doc = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    assert isinstance(doc, dict)
    return doc


_VAR = re.compile(r"\$\$|\$\{(\w+)(?:(:?[-?])([^}]*))?\}")


def interpolate(value: str) -> str:
    """Compose's interpolation with an empty environment: every ``${VAR}`` must carry a
    ``:-default`` so that `docker compose config` works before anyone writes a .env file."""

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        assert m.group(2) in (":-", "-"), f"${{{m.group(1)}}} has no default"
        return m.group(3)

    return _VAR.sub(sub, value)


def service_env(service: Mapping[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: interpolate(str(v)) for k, v in env.items()}


def gateway_env() -> dict[str, str]:
    """What the gateway process sees: the image's ENV, then compose's environment."""
    return {**image_env(instructions()), **service_env(compose()["services"]["gateway"])}


def script_defaults(path: Path) -> dict[str, str]:
    """``name="${VAR:-default}"`` assignments of a start script: VAR -> default."""
    pattern = r'^\w+="\$\{(\w+):-([^}]*)\}"$'
    return dict(re.findall(pattern, path.read_text(), flags=re.MULTILINE))


def turnserver_conf(text: str) -> list[tuple[str, str]]:
    """coturn's config syntax: ``name[=value]`` a line, ``#`` comments on their own line."""
    pairs = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            pairs.append((name.strip(), value.strip()))
    return pairs


def listening_port() -> int:
    conf = dict(turnserver_conf((DOCKER / "turnserver.conf").read_text()))
    return int(conf.get("listening-port", "3478"))


# --- the shims the start scripts run --------------------------------------------------------


def shim(directory: Path, name: str, body: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)


def run_gateway_entrypoint(tmp_path: Path, secret_text: str | None) -> tuple[int, Path, Path]:
    """docker/entrypoint.sh with the real ``telegate keys init`` and a ``telegate serve``
    that records its arguments. Returns (exit status, data dir, record of serve)."""
    data, record, bin_dir = tmp_path / "data", tmp_path / "serve.args", tmp_path / "bin"
    shim(
        bin_dir,
        "telegate",
        f'if [ "$1" = serve ]; then printf "%s\\n" "$@" > {shlex.quote(str(record))}; exit 0; fi\n'
        f'exec {shlex.quote(sys.executable)} -m gateway.cli "$@"\n',
    )
    secret_file = tmp_path / "turn_secret"
    if secret_text is not None:
        secret_file.write_text(secret_text)
    env = {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "PYTHONPATH": str(ROOT),
        "TELEGATE_DATA_DIR": str(data),
        "TURN_SECRET_FILE": str(secret_file),
    }
    proc = subprocess.run(
        ["/bin/sh", str(DOCKER / "entrypoint.sh")], env=env, capture_output=True, timeout=60
    )
    return proc.returncode, data, record


def run_coturn_start(tmp_path: Path, secret_text: str) -> tuple[int, Path, Path]:
    """docker/coturn-start.sh with a ``turnserver`` that records its arguments and the
    config file it was given. Returns (exit status, run dir, record)."""
    run_dir, record, bin_dir = tmp_path / "coturn", tmp_path / "turnserver.args", tmp_path / "bin"
    run_dir.mkdir(parents=True)
    shim(bin_dir, "turnserver", f'printf "%s\\n" "$@" > {shlex.quote(str(record))}\n')
    secret_file = tmp_path / "coturn_secret"
    secret_file.write_text(secret_text)
    env = {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "TURN_SECRET_FILE": str(secret_file),
        "TURN_BASE_CONFIG": str(DOCKER / "turnserver.conf"),
        "TURN_RUN_DIR": str(run_dir),
    }
    proc = subprocess.run(
        ["/bin/sh", str(DOCKER / "coturn-start.sh")], env=env, capture_output=True, timeout=30
    )
    return proc.returncode, run_dir, record


# --- compose against the gateway's configuration --------------------------------------------


def test_compose_sets_only_real_settings_with_valid_values() -> None:
    env = gateway_env()
    settings = {k for k in env if k.startswith("TELEGATE_")}
    assert settings, "the gateway service sets no TELEGATE_* variable"
    assert settings <= SETTINGS, f"not Config fields: {sorted(settings - SETTINGS)}"
    # Config.load is what `telegate serve` runs: a bad value raises ConfigError here.
    config = Config.load(env=env)
    # Production needs a fixed public origin (token iss/aud, DPoP htu): never "per request".
    assert config.public_url.startswith(("https://", "http://"))


def test_the_image_serves_beyond_loopback_only_with_compose_s_public_url() -> None:
    # The image listens on 0.0.0.0: alone it must refuse to serve (iss/aud and DPoP htu
    # would follow the request's Host); compose supplies TELEGATE_PUBLIC_URL.
    image = image_env(final_stage(instructions()))
    with pytest.raises(ConfigError, match="TELEGATE_PUBLIC_URL"):
        Config.load(env={**image, "TELEGATE_PUBLIC_URL": ""}).check_serving()
    Config.load(env=gateway_env()).check_serving()


def test_published_port_is_the_gateway_port() -> None:
    port = Config.load(env=gateway_env()).port
    gateway = compose()["services"]["gateway"]
    targets = {int(str(p).rsplit(":", 1)[-1].split("/")[0]) for p in gateway["ports"]}
    assert targets == {port}
    exposed = [arg for word, arg in final_stage(instructions()) if word == "EXPOSE"]
    assert [str(port)] == " ".join(exposed).split()


async def test_healthchecks_probe_a_route_the_gateway_serves(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    image_check = healthcheck_command(instructions())
    compose_check = compose()["services"]["gateway"]["healthcheck"]["test"]
    assert compose_check == ["CMD", *image_check], "compose and the image probe differently"
    assert image_check[:2] == ["python", "-c"]  # the venv's python: no curl in slim images
    code = image_check[2]
    [path] = re.findall(r"'(/[^']*)'", code)
    app = create_app(Config(data_dir=tmp_path / "data"))
    get_routes = {r.resource.canonical for r in app.router.routes() if r.method == "GET"}
    assert path in get_routes

    async def probe(port: int) -> int:
        env = {**os.environ, "TELEGATE_PORT": str(port)}
        proc = await asyncio.create_subprocess_exec(sys.executable, "-c", code, env=env)
        return await asyncio.wait_for(proc.wait(), 30)

    client = await aiohttp_client(app)  # startup ran: the ledger writer is up
    assert await probe(client.port) == 0
    port = client.port
    await client.close()
    assert await probe(port) != 0  # nothing listens any more: unhealthy


# --- the image ------------------------------------------------------------------------------


def test_image_is_multi_stage_on_a_pinned_slim_python_311() -> None:
    instrs = instructions()
    base = build_args(instrs).get("PYTHON_IMAGE", "")
    assert re.fullmatch(r"python:3\.11\.\d+-slim-[a-z]+", base), base
    froms = [arg.split()[0] for word, arg in instrs if word == "FROM"]
    assert len(froms) >= 2
    assert set(froms) == {"${PYTHON_IMAGE}"}  # one base: the venv moves between stages as is
    final = final_stage(instrs)
    copied = [arg for word, arg in final if word == "COPY" and arg.startswith("--from=")]
    venv = image_env(instrs)["PATH"].split(":")[0].removesuffix("/bin")
    assert any(arg.split()[1:] == [venv, venv] for arg in copied), copied
    assert ("STOPSIGNAL", "SIGTERM") in final


def test_image_runs_as_a_fixed_non_root_user_owning_the_data_volume() -> None:
    final = final_stage(instructions())
    [user] = [arg for word, arg in final if word == "USER"]
    uid = int(user.split(":")[0])  # numeric, so runAsNonRoot can check it
    assert uid != 0
    runs = " ".join(arg for word, arg in final if word == "RUN")
    assert f"--uid {uid}" in runs
    data_dir = image_env(instructions())["TELEGATE_DATA_DIR"]
    [volume] = [json.loads(arg) for word, arg in final if word == "VOLUME"]
    assert volume == [data_dir]
    # Owned by the user before VOLUME: a new named volume copies that ownership.
    volume_at = next(i for i, (word, _) in enumerate(final) if word == "VOLUME")
    assert any(
        word == "RUN" and f"-o {uid}" in arg and data_dir in arg for word, arg in final[:volume_at]
    )
    # compose mounts its named volume exactly there
    gateway = compose()["services"]["gateway"]
    mounts = dict(v.split(":")[:2][::-1] for v in gateway["volumes"])
    assert mounts[data_dir] in compose()["volumes"]


def test_entrypoint_commands_exist_in_the_cli() -> None:
    final = final_stage(instructions())
    [entrypoint] = [json.loads(arg) for word, arg in final if word == "ENTRYPOINT"]
    copies = [arg.split() for word, arg in final if word == "COPY"]
    assert ["--chmod=0755", "docker/entrypoint.sh", entrypoint[0]] in copies
    calls = re.findall(
        r"^\s*(?:exec\s+)?telegate\s+(.*)$", (DOCKER / "entrypoint.sh").read_text(), re.MULTILINE
    )
    argvs = [[a for a in shlex.split(call) if a != "$@"] for call in calls]
    parser = cli._parser()
    for argv in argvs:
        parser.parse_args(argv)  # SystemExit(2) on an unknown command or option
    assert argvs == [["keys", "init"], ["serve", "--host", "0.0.0.0"]]


def test_web_pages_come_with_the_wheel_not_a_copy() -> None:
    # The wheel installs web/ under <venv>/share/telegate/web (tests/test_packaging.py builds
    # one and checks); the image must not copy a second, possibly stale, set.
    copies = [arg.split() for word, arg in final_stage(instructions()) if word == "COPY"]
    assert not any(c[0] == "web" for c in copies)
    assert not any(
        c[0] == "web" for word, arg in instructions() if word == "COPY" for c in [arg.split()]
    )


def test_build_context_is_the_root_and_its_ignore_list_keeps_secrets_out() -> None:
    build = compose()["services"]["gateway"]["build"]
    context = (DOCKER / build["context"]).resolve()
    assert context == ROOT
    assert (context / build["dockerfile"]).resolve() == DOCKER / "Dockerfile"
    # BuildKit reads <Dockerfile>.dockerignore beside the Dockerfile, patterns from the root.
    patterns = [
        line.strip()
        for line in (DOCKER / "Dockerfile.dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert patterns[0] == "*"  # an allow-list
    allowed = {p[1:] for p in patterns if p.startswith("!")}
    sources = [
        source
        for word, arg in instructions()
        if word == "COPY" and not arg.startswith("--from=")
        for source in [a for a in arg.split() if not a.startswith("--")][:-1]
    ]
    assert sources and set(sources) <= allowed, set(sources) - allowed
    for private in ("data", ".git", ".venv", "docker/secrets", "docker"):
        assert private not in allowed


# --- the TURN secret, shared --------------------------------------------------------------


def test_gateway_and_coturn_read_one_secret_from_compose() -> None:
    doc = compose()
    gateway, coturn = doc["services"]["gateway"], doc["services"]["coturn"]
    assert gateway["secrets"] == coturn["secrets"] == ["turn_secret"]
    source = doc["secrets"]["turn_secret"]
    assert set(source) == {"file"}  # a file outside git, not a value in this file
    secret_path = (DOCKER / source["file"]).resolve()
    ignored = subprocess.run(
        ["git", "-C", str(ROOT), "check-ignore", "-q", str(secret_path)], check=False
    )
    assert ignored.returncode == 0, f"{secret_path} would be committable"
    mounted = "/run/secrets/turn_secret"  # compose's target for a short-syntax secret
    assert script_defaults(DOCKER / "entrypoint.sh")["TURN_SECRET_FILE"] == mounted
    coturn_defaults = script_defaults(DOCKER / "coturn-start.sh")
    assert coturn_defaults["TURN_SECRET_FILE"] == mounted
    # coturn starts through the script, on the config mounted where the script reads it,
    # and writes the secret into a tmpfs.
    mounts = dict(v.split(":")[:2] for v in coturn["volumes"])
    assert mounts["./coturn-start.sh"] == coturn["entrypoint"][-1]
    assert mounts["./turnserver.conf"] == coturn_defaults["TURN_BASE_CONFIG"]
    tmpfs = [t.split(":")[0] for t in coturn["tmpfs"]]
    assert coturn_defaults["TURN_RUN_DIR"] in tmpfs
    # Nowhere in the repository's files is a secret value.
    for name in ("compose.yaml", "turnserver.conf", "coturn-start.sh"):
        assert not re.search(r"static-auth-secret=\w", (DOCKER / name).read_text())


def test_start_scripts_give_gateway_and_coturn_the_same_secret(tmp_path: Path) -> None:
    rc, data, serve = run_gateway_entrypoint(tmp_path / "gw", SECRET + "\n")
    assert rc == 0
    installed = data / "keys" / "turn.secret"
    assert installed.stat().st_mode & 0o777 == 0o600
    assert (data / "keys" / "log.skey").exists()  # `telegate keys init` ran for real
    assert serve.read_text().split() == ["serve", "--host", "0.0.0.0"]

    rc, run_dir, record = run_coturn_start(tmp_path / "turn", SECRET + "\n")
    assert rc == 0
    argv = record.read_text().split()
    assert argv[:2] == ["-c", str(run_dir / "turnserver.conf")]
    assert not any("secret" in a for a in argv)  # never on a command line
    config_file = run_dir / "turnserver.conf"
    assert config_file.stat().st_mode & 0o777 == 0o600
    conf = turnserver_conf(config_file.read_text())
    assert ("use-auth-secret", "") in conf
    [static] = [value for name, value in conf if name == "static-auth-secret"]

    # The bytes the gateway signs TURN credentials with are coturn's static-auth-secret.
    assert _turn_secret(installed) == static.encode() == SECRET.encode()


@pytest.mark.parametrize(
    "bad",
    ["", "short1234", SECRET + " " + SECRET, SECRET + "\r\n", "$(id)" + SECRET],
    ids=["empty", "too-short", "space", "crlf", "shell"],
)
def test_start_scripts_refuse_a_secret_they_could_read_differently(
    tmp_path: Path, bad: str
) -> None:
    rc, data, serve = run_gateway_entrypoint(tmp_path / "gw", bad)
    assert rc != 0
    assert not serve.exists()
    assert not (data / "keys" / "turn.secret").exists()
    rc, _, record = run_coturn_start(tmp_path / "turn", bad)
    assert rc != 0
    assert not record.exists()


def test_without_a_mounted_secret_the_gateway_keeps_its_own(tmp_path: Path) -> None:
    # `docker run` with no compose secret: the entrypoint leaves keys/turn.secret to the
    # gateway, which creates one on first start.
    rc, data, serve = run_gateway_entrypoint(tmp_path, None)
    assert rc == 0
    assert serve.exists()
    assert not (data / "keys" / "turn.secret").exists()


def test_turn_uris_point_at_coturns_listening_port() -> None:
    config = Config.load(env=gateway_env())
    uris = [u for u in config.turn_uris.split(",") if u]
    assert uris
    port = listening_port()
    for uri in uris:
        m = re.fullmatch(r"turns?:([^:?]+):(\d+)(\?transport=(udp|tcp))?", uri)
        assert m, uri
        assert int(m.group(2)) == port, uri
        # Browsers resolve these: never the compose service name, which only resolves
        # inside the compose network.
        assert m.group(1) != "coturn"
    assert compose()["services"]["coturn"]["network_mode"] == "host"
    check = compose()["services"]["coturn"]["healthcheck"]["test"]
    assert check[:2] == ["CMD", "turnutils_stunclient"]
    assert check[check.index("-p") + 1] == str(port)


def test_coturn_accepts_only_rest_credentials_and_no_internal_peers() -> None:
    conf = turnserver_conf((DOCKER / "turnserver.conf").read_text())
    names = [name for name, _ in conf]
    assert "use-auth-secret" in names
    assert "static-auth-secret" not in names  # added at start from the compose secret
    for open_door in ("lt-cred-mech", "no-auth", "allow-loopback-peers", "user"):
        assert open_door not in names
    denied = [value for name, value in conf if name == "denied-peer-ip"]
    for private in ("10.0.0.0", "127.0.0.0", "169.254.0.0", "172.16.0.0", "192.168.0.0"):
        assert any(value.startswith(private + "-") for value in denied), private


# --- profile "replicas": two gateways, PostgreSQL, Redis, HAProxy ---------------------------

REPLICAS = ("gateway-1", "gateway-2")


def profile_services() -> dict[str, dict[str, Any]]:
    return {
        name: s for name, s in compose()["services"].items() if "replicas" in s.get("profiles", [])
    }


def replica_env(name: str) -> dict[str, str]:
    return {**image_env(instructions()), **service_env(compose()["services"][name])}


def haproxy_cfg() -> dict[str, list[list[str]]]:
    """HAProxy's sections (``backend gateways`` ...) -> their lines, split into words."""
    sections: dict[str, list[list[str]]] = {}
    current: list[list[str]] = []
    for raw in (DOCKER / "haproxy.cfg").read_text().splitlines():
        line = raw.split("#", 1)[0].rstrip()
        if not line.strip():
            continue
        if not raw[0].isspace():
            current = sections.setdefault(" ".join(line.split()), [])
        else:
            current.append(line.split())
    return sections


def test_the_default_stack_is_unchanged_by_the_replicas_profile() -> None:
    services = compose()["services"]
    assert "profiles" not in services["gateway"] and "profiles" not in services["coturn"]
    assert set(profile_services()) == {"postgres", "redis", "migrate", *REPLICAS, "lb"}
    # `--profile replicas up lb` beside a running single gateway: no port in common.
    published = [str(p).rsplit(":", 1)[0] for s in services.values() for p in s.get("ports", [])]
    assert len(published) == len(set(published)), published


def test_replicas_share_database_redis_keys_and_origin_with_valid_settings() -> None:
    services = compose()["services"]
    configs = []
    for name in REPLICAS:
        env = replica_env(name)
        settings = {k for k in env if k.startswith("TELEGATE_")}
        assert settings <= SETTINGS, f"not Config fields: {sorted(settings - SETTINGS)}"
        config = Config.load(env=env)
        config.check_serving()
        assert config.database_url and config.database_url.startswith("postgresql://")
        assert config.redis_url and config.redis_url.startswith("redis://redis:")
        configs.append(config)
        # The drain ends before Docker's SIGKILL.
        grace = services[name]["stop_grace_period"]
        assert grace.endswith("s") and config.drain_seconds < int(grace[:-1])
    a, b = configs
    for setting in ("database_url", "redis_url", "public_url", "log_origin", "data_dir"):
        assert getattr(a, setting) == getattr(b, setting), setting
    mounts = [services[n]["volumes"] for n in REPLICAS]
    assert mounts[0] == mounts[1]  # one data dir: the key dir is shared
    [volume] = mounts[0]
    assert volume.split(":")[1] == str(a.data_dir)
    # The database and Redis the URLs name are services of the profile.
    assert "@postgres:5432/" in (a.database_url or "")
    assert (
        services["migrate"]["environment"]["TELEGATE_DATABASE_URL"]
        == (services["gateway-1"]["environment"]["TELEGATE_DATABASE_URL"])
    )


def test_replicas_start_after_the_migration_redis_and_each_other() -> None:
    services = compose()["services"]
    migrate = services["migrate"]
    cli._parser().parse_args(migrate["command"][1:])  # a real `telegate` command
    assert migrate["command"][:3] == ["telegate", "db", "upgrade"]
    for name in REPLICAS:
        deps = services[name]["depends_on"]
        assert deps["migrate"]["condition"] == "service_completed_successfully"
        assert deps["redis"]["condition"] == "service_healthy"
        check = services[name]["healthcheck"]["test"]
        assert check == ["CMD", *healthcheck_command(instructions())]
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["gateway-2"]["depends_on"]["gateway-1"]["condition"] == "service_healthy"
    for name in REPLICAS:
        assert services["lb"]["depends_on"][name]["condition"] == "service_healthy"


def test_official_images_and_a_persistent_redis() -> None:
    services = compose()["services"]
    assert services["postgres"]["image"].startswith("postgres:")
    assert services["redis"]["image"].startswith("redis:")
    assert services["lb"]["image"].startswith("haproxy:")
    command = services["redis"]["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    assert command[command.index("--maxmemory-policy") + 1] == "noeviction"
    assert services["postgres"]["healthcheck"]["test"][1] == "pg_isready"
    assert services["redis"]["healthcheck"]["test"][1:] == ["redis-cli", "ping"]


def test_haproxy_balances_the_replicas_on_readyz_and_passes_websockets() -> None:
    cfg = haproxy_cfg()
    port = Config.load(env=replica_env("gateway-1")).port
    lb = compose()["services"]["lb"]
    assert lb["volumes"] == ["./haproxy.cfg:/usr/local/etc/haproxy/haproxy.cfg:ro"]
    [bind] = [line for line in cfg["frontend telegate"] if line[0] == "bind"]
    assert [str(p).rsplit(":", 1)[-1] for p in lb["ports"]] == [bind[1].lstrip(":")]
    assert ["timeout", "tunnel", "2h"] in cfg["defaults"]  # upgraded sockets stay open
    assert ["retry-on", "conn-failure"] in cfg["defaults"]
    for backend in ("backend gateways", "backend signalling"):
        lines = cfg[backend]
        assert ["http-check", "send", "meth", "GET", "uri", "/readyz"] in lines
        assert ["http-check", "expect", "status", "200"] in lines
        servers = [line for line in lines if line[0] == "server"]
        assert [s[2] for s in servers] == [f"{n}:{port}" for n in REPLICAS]
        assert all("check" in s for s in servers)
    # Both sockets of one call hashed to one replica: fewer hops through Redis.
    assert ["balance", "uri", "depth", "3"] in cfg["backend signalling"]
    # X-Forwarded-For from the balancer's fixed address only.
    assert ["option", "forwardfor"] in cfg["frontend telegate"]
    address = lb["networks"]["replicas"]["ipv4_address"]
    for name in REPLICAS:
        assert Config.load(env=replica_env(name)).trusted_proxies == address
    [subnet] = compose()["networks"]["replicas"]["ipam"]["config"]
    assert address.rsplit(".", 1)[0] == subnet["subnet"].rsplit(".", 1)[0]


def test_haproxy_accepts_its_configuration() -> None:
    from tests.conftest import need

    haproxy = shutil.which("haproxy")
    need(haproxy is not None, "haproxy (apt install haproxy) to check docker/haproxy.cfg")
    assert haproxy is not None
    r = subprocess.run(
        [haproxy, "-c", "-f", str(DOCKER / "haproxy.cfg")], capture_output=True, text=True
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Configuration file is valid" in r.stdout + r.stderr
