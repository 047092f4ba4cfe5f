"""The witness TOML file, the key file and ``telegate witness init``."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest

from gateway.cli import main
from gateway.errors import ConfigError
from gateway.witness import WitnessConfig, init_witness_key, load_witness_key
from ledger.checkpoint import CosignatureSigner
from ledger.note import ALG_COSIGNATURE_V1, Signer, Verifier

from .conftest import ORIGIN, WITNESS_NAME

LOG = Signer.generate(ORIGIN)
ROTATED = Signer.generate(ORIGIN)


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "witness.toml"
    p.write_text(text)
    return p


def test_load_a_toml_file(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        f"""
name = "{WITNESS_NAME}"
data_dir = "state"
key_file = "keys/w1.skey"
port = 9000

[[logs]]
origin = "{ORIGIN}"
vkey = "{LOG.vkey}"

[[logs]]
origin = "clinic-b.example/log"
vkeys = ["{ROTATED.vkey}", "{LOG.vkey}"]
""",
    )
    cfg = WitnessConfig.load(path)
    assert cfg.data_dir == tmp_path / "state"
    assert cfg.key_path == tmp_path / "keys/w1.skey"
    assert (cfg.host, cfg.port) == ("127.0.0.1", 9000)
    logs = cfg.witnessed_logs()
    assert [log.origin for log in logs] == [ORIGIN, "clinic-b.example/log"]
    assert [v.vkey for v in logs[1].verifiers] == [ROTATED.vkey, LOG.vkey]


def test_defaults(tmp_path: Path) -> None:
    cfg = WitnessConfig.load(write(tmp_path, f'name = "{WITNESS_NAME}"\ndata_dir = "d"\n'))
    assert cfg.key_path == tmp_path / "d" / "witness.skey"
    assert cfg.db_path == tmp_path / "d" / "state.db"
    assert cfg.logs == ()


COSIGNER_VKEY = CosignatureSigner(Signer.generate("w")).vkey
BAD = {
    "unknown-setting": 'name = "w"\ndata_dir = "d"\nlisten = "x"\n',
    "no-name": 'data_dir = "d"\n',
    "no-data-dir": 'name = "w"\n',
    "name-with-plus": 'name = "w+1"\ndata_dir = "d"\n',
    "name-with-space": 'name = "w 1"\ndata_dir = "d"\n',
    "port-not-int": 'name = "w"\ndata_dir = "d"\nport = "80"\n',
    "port-bool": 'name = "w"\ndata_dir = "d"\nport = true\n',
    "port-range": 'name = "w"\ndata_dir = "d"\nport = 70000\n',
    "body-limit": 'name = "w"\ndata_dir = "d"\nmax_body_size = 10\n',
    "not-toml": "name = \n",
    "log-no-vkey": f'name = "w"\ndata_dir = "d"\n[[logs]]\norigin = "{ORIGIN}"\n',
    "log-bad-vkey": 'name = "w"\ndata_dir = "d"\n[[logs]]\norigin = "o"\nvkey = "o+00+AA"\n',
    "log-cosigner-vkey": f'name = "w"\ndata_dir = "d"\n[[logs]]\norigin = "o"\n'
    f'vkey = "{COSIGNER_VKEY}"\n',
    "log-extra-key": f'name = "w"\ndata_dir = "d"\n[[logs]]\norigin = "o"\n'
    f'vkey = "{LOG.vkey}"\nurl = "x"\n',
    "log-twice": 'name = "w"\ndata_dir = "d"\n'
    + f'[[logs]]\norigin = "o"\nvkey = "{LOG.vkey}"\n' * 2,
}


@pytest.mark.parametrize("text", BAD.values(), ids=BAD.keys())
def test_bad_config_is_refused(tmp_path: Path, text: str) -> None:
    with pytest.raises(ConfigError):
        WitnessConfig.load(write(tmp_path, text))


def test_key_created_once_0600_with_a_cosignature_vkey(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "witness.skey"
    signer, created = init_witness_key(path, WITNESS_NAME)
    assert created
    assert path.stat().st_mode & 0o777 == 0o600
    # Clients pin the tlog-cosignature/v1 key: type 0x04, written beside the private key.
    vkey = (tmp_path / "keys" / "witness.vkey").read_text().strip()
    assert vkey == signer.vkey
    assert base64.b64decode(vkey.split("+", 2)[2])[0] == ALG_COSIGNATURE_V1
    assert Verifier.from_vkey(vkey).alg == ALG_COSIGNATURE_V1
    again, created = init_witness_key(path, WITNESS_NAME)
    assert (again.vkey, created) == (signer.vkey, False)
    # The file is Go's note key format, as telegate's log key is.
    assert Signer.from_skey(path.read_text()).name == WITNESS_NAME


def test_key_file_checks(tmp_path: Path) -> None:
    path = tmp_path / "witness.skey"
    init_witness_key(path, WITNESS_NAME)
    with pytest.raises(ConfigError, match="named"):
        load_witness_key(path, "witness.example/w2")
    os.chmod(path, 0o644)
    with pytest.raises(ConfigError, match="readable by other users"):
        load_witness_key(path, WITNESS_NAME)
    with pytest.raises(ConfigError, match="cannot read"):
        load_witness_key(tmp_path / "missing.skey", WITNESS_NAME)


def test_cli_init_prints_the_vkey(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, f'name = "{WITNESS_NAME}"\ndata_dir = "d"\n')
    assert main(["witness", "init", "--config", str(path)]) == 0
    out, err = capsys.readouterr()
    assert "created" in err
    vkey = out.strip()
    assert vkey == (tmp_path / "d" / "witness.vkey").read_text().strip()
    assert main(["witness", "init", "--config", str(path)]) == 0
    out, err = capsys.readouterr()
    assert (out.strip(), "exists" in err) == (vkey, True)


def test_cli_reports_a_bad_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["witness", "init", "--config", str(tmp_path / "none.toml")]) == 1
    assert capsys.readouterr().err.startswith("error: cannot read witness config")


def test_database_url_from_the_file_or_the_environment(tmp_path: Path) -> None:
    base = 'name = "w.example/w"\ndata_dir = "d"\n'
    url = "postgresql://witness:hunter2@db.example:5432/witness"
    assert WitnessConfig.load(write(tmp_path, base), env={}).database_url is None
    path = write(tmp_path, base + f'database_url = "{url}"\n')
    cfg = WitnessConfig.load(path, env={})
    assert cfg.database_url == url
    assert "hunter2" not in repr(cfg) and "witness:***@db.example" in repr(cfg)
    other = "postgresql://w@other.example/w"
    env = {"TELEGATE_WITNESS_DATABASE_URL": other}
    assert WitnessConfig.load(path, env=env).database_url == other
    empty = {"TELEGATE_WITNESS_DATABASE_URL": ""}  # set but empty: the embedded state.db
    assert WitnessConfig.load(path, env=empty).database_url is None


@pytest.mark.parametrize(
    "url", ["sqlite:///x.db", "postgresql://w:hunter2@db.example:port/w", "postgresql://h/"]
)
def test_a_bad_database_url_is_refused_without_its_password(tmp_path: Path, url: str) -> None:
    path = write(tmp_path, f'name = "w.example/w"\ndata_dir = "d"\ndatabase_url = "{url}"\n')
    with pytest.raises(ConfigError) as e:
        WitnessConfig.load(path, env={})
    assert "database_url" in str(e.value) and "hunter2" not in str(e.value)
