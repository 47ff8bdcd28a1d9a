"""Config files: every bad config is one ConfigError naming the file and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from node.config import MAX_PRIESTS, load_config, load_yaml, parse_config
from node.errors import ConfigError

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
GOOD = """\
cluster: four
data_dir: logs/four
priests:
  alpha: {host: 127.0.0.1, port: 7101}
  beta:  {host: 127.0.0.1, port: 7102}
"""


def load(tmp_path: Path, text: str, name: str = "c.yaml") -> ConfigError:
    """The ConfigError loading `text` raises; fails the test if it loads."""
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    message = str(err.value)
    assert "\n" not in message and message.startswith(str(path))
    return err.value


def priests(*lines: str) -> str:
    return "priests:\n" + "".join(f"  {line}\n" for line in lines)


@pytest.mark.parametrize("config", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_load(config: Path) -> None:
    c = load_config(config)
    assert c.cluster == config.stem and 1 <= len(c.priests) <= MAX_PRIESTS
    assert c.quorum == len(c.priests) // 2 + 1


def test_good_config_loads(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(GOOD)
    c = load_config(path)
    assert c.names == ["alpha", "beta"] and c.address_of("beta") == ("127.0.0.1", 7102)
    assert c.data_dir == Path("logs/four") and c.flaws == ()


@pytest.mark.parametrize("text, key", [
    (GOOD + "colour: red\n", "colour"),
    (priests("alpha: {host: 127.0.0.1, port: 7101, weight: 2}"), "priests.alpha.weight"),
    (priests("alpha: {port: 7101}", "alpha: {port: 7102}"), "duplicate key 'alpha'"),
    (priests("alpha: {port: 7101}", "beta: {port: 7101}"), "priests.beta.port"),
    (priests("alpha: {port: 0}"), "priests.alpha.port"),
    (priests("alpha: {port: 70000}"), "priests.alpha.port"),
    (priests("alpha: {port: x}"), "priests.alpha.port"),
    (priests("alpha: {port: true}"), "priests.alpha.port"),
    (priests("alpha: {port: 7101.0}"), "priests.alpha.port"),
    (priests("alpha: {}"), "priests.alpha.port"),
    (priests("Alpha: {port: 7101}"), "priests.Alpha"),
    (priests("al.pha: {port: 7101}"), "priests.al.pha"),
    (priests(f"{'a' * 33}: {{port: 7101}}"), f"priests.{'a' * 33}"),
    (priests("'': {port: 7101}"), "priests."),
    (priests("7: {port: 7101}"), "priests.7"),
    (priests("alpha: {host: 10.0.0.1, port: 7101}"), "priests.alpha.host"),
    (priests("alpha: {host: example.com, port: 7101}"), "priests.alpha.host"),
    (priests("alpha: {port: 7101, propose: 9223372036854775808}"), "priests.alpha.propose"),
    (priests("alpha: {port: 7101, propose: -9223372036854775809}"), "priests.alpha.propose"),
    (priests("alpha: {port: 7101, propose: yes}"), "priests.alpha.propose"),
    (priests("alpha: 7101"), "priests.alpha"),
    (GOOD + "timing: {retransmit: 0}\n", "timing.retransmit"),
    (GOOD + "timing: {ballot_timeout: -1}\n", "timing.ballot_timeout"),
    (GOOD + "timing: {backoff: .nan}\n", "timing.backoff"),
    (GOOD + "timing: {backoff: .inf}\n", "timing.backoff"),
    (GOOD + "timing: {attempts: 0}\n", "timing.attempts"),
    (GOOD + "timing: {attempts: 2.5}\n", "timing.attempts"),
    (GOOD + "timing: {retransmit: 1, ballot_timeout: 0.5}\n", "timing.ballot_timeout"),
    (GOOD + "timing: {patience: 1}\n", "timing.patience"),
    (GOOD + "timing: 3\n", "timing"),
    (GOOD + "flaws: [forget-everything]\n", "flaws"),
    (GOOD + "flaws: forget-promises\n", "flaws"),
    (GOOD + "flaws: [forget-promises, forget-promises]\n", "flaws"),
    (GOOD.replace("cluster: four", "cluster: Four"), "cluster"),
    (GOOD.replace("data_dir: logs/four", "data_dir: ''"), "data_dir"),
    (GOOD.replace("data_dir: logs/four", 'data_dir: "logs/\\0four"'), "data_dir"),
    (GOOD.replace("data_dir: logs/four", "data_dir: 7"), "data_dir"),
    ("cluster: four\n", "priests"),
    ("priests: {}\n", "priests"),
    ("priests: [alpha, beta]\n", "priests"),
])
def test_bad_config_names_file_and_key(tmp_path: Path, text: str, key: str) -> None:
    err = load(tmp_path, text)
    assert key in str(err)


def test_more_than_255_priests(tmp_path: Path) -> None:
    text = priests(*(f"p{i}: {{port: {10000 + i}}}" for i in range(MAX_PRIESTS + 1)))
    err = load(tmp_path, text)
    assert err.key == "priests" and str(MAX_PRIESTS) in err.problem


def test_255_priests_are_allowed(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(priests(*(f"p{i}: {{port: {10000 + i}}}" for i in range(MAX_PRIESTS))))
    assert len(load_config(path).priests) == MAX_PRIESTS


@pytest.mark.parametrize("text, line", [
    ("? [a, b]\n: 1\n", 1),
    ("priests:\n  ? [a, b]\n  : {port: 7101}\n", 2),
    ("priests:\n  alpha: {port: 7101}\n  ? {x: 1}\n  : {port: 7102}\n", 3),
])
def test_list_or_mapping_key_is_an_error_naming_its_line(tmp_path: Path, text: str,
                                                          line: int) -> None:
    err = load(tmp_path, text)
    assert f"line {line}" in str(err) and "a key must be a plain name" in str(err)


@pytest.mark.parametrize("text, problem", [
    ("", "must be a mapping"),
    ("# only a comment\n", "must be a mapping"),
    ("- alpha\n- beta\n", "must be a mapping"),
    ("just words\n", "must be a mapping"),
    ("priests: {alpha: {port: 7101}\n", "not valid YAML at line"),
    ("priests:\n\talpha: 1\n", "not valid YAML at line"),
    ("priests: !!python/object:os.system {}\n", "not valid YAML"),
    ("[" * 5000 + "]" * 5000 + "\n", "not valid YAML"),
])
def test_unusable_document_names_the_file(tmp_path: Path, text: str, problem: str) -> None:
    assert problem in str(load(tmp_path, text))


def test_unreadable_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "absent.yaml")
    with pytest.raises(ConfigError, match="is a directory"):
        load_config(tmp_path)
    (tmp_path / "latin1.yaml").write_bytes(b"cluster: caf\xe9\n")
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "latin1.yaml")


def test_load_yaml_parses_and_maps_errors(tmp_path: Path) -> None:
    path = tmp_path / "plan.yaml"
    path.write_text("- {at: 0, kill: alpha}\n- {at: 1.5, restart: alpha}\n")
    assert load_yaml(path) == [{"at": 0, "kill": "alpha"}, {"at": 1.5, "restart": "alpha"}]
    assert load_yaml(str(path)) == load_yaml(path)
    path.write_text("- {at: 0, kill: alpha, kill: beta}\n")
    with pytest.raises(ConfigError, match=r"plan\.yaml: not valid YAML at line 1: duplicate key"):
        load_yaml(path)
    path.write_text("a: [1,\n")
    with pytest.raises(ConfigError, match=r"plan\.yaml: not valid YAML at line"):
        load_yaml(path)


def test_key_file_is_relative_to_the_config_files_directory(tmp_path: Path) -> None:
    raw = {"priests": {"alpha": {"port": 7101}}, "key_file": "keys/k.key"}
    config = parse_config(raw, str(tmp_path / "conf" / "c.yaml"))
    assert config.key_file == tmp_path / "conf" / "keys" / "k.key"
    assert parse_config({**raw, "key_file": "/abs/k.key"}, "c.yaml").key_file == Path("/abs/k.key")
    assert parse_config({"priests": {"alpha": {"port": 7101}}}, "c.yaml").key_file is None


@pytest.mark.parametrize("bad", [5, "", "keys/", ["k"], "a\0b"])
def test_a_bad_key_file_is_a_config_error_naming_the_key(bad: object) -> None:
    with pytest.raises(ConfigError, match="key_file"):
        parse_config({"priests": {"alpha": {"port": 7101}}, "key_file": bad}, "c.yaml")
