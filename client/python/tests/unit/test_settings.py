"""Settings a client refuses, each error naming the setting."""

import pytest

from vss import Client, ConfigurationError, Security
from vss.client import target_of


def test_an_empty_endpoint_list_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="endpoints: no endpoints given"):
        Client([])


def test_endpoints_with_or_without_a_scheme() -> None:
    assert target_of("127.0.0.1:7700") == "127.0.0.1:7700"
    assert target_of("http://a:1") == "a:1"
    assert target_of(" https://vss-0.vss:7700/ ") == "vss-0.vss:7700"
    assert Client("127.0.0.1:1,127.0.0.1:2").endpoints == ["127.0.0.1:1", "127.0.0.1:2"]


@pytest.mark.parametrize("bad", ["localhost", "h:", ":7700", "h:99999", "h:port"])
def test_a_bad_endpoint_is_named(bad: str) -> None:
    with pytest.raises(ConfigurationError) as e:
        Client([bad])
    assert str(e.value) == f"endpoint `{bad}`: expected host:port (port 1-65535)"


def test_a_token_goes_on_every_call_as_a_bearer() -> None:
    assert Security(token=" s3cret-0123456789 ").metadata() == (
        ("authorization", "Bearer s3cret-0123456789"),
    )
    assert Security().metadata() == ()


def test_bad_settings_name_what_is_wrong() -> None:
    with pytest.raises(ConfigurationError, match="^CA: no PEM certificate$"):
        Client(["h:1"], security=Security(ca_pem=b"not pem"))
    with pytest.raises(ConfigurationError, match="^client certificate: needs the CA"):
        Client(["h:1"], security=Security(identity_pem=(b"", b"")))
    with pytest.raises(ConfigurationError, match="^token: not printable ASCII$"):
        Client(["h:1"], security=Security(token="caf\u00e9-0123456789"))
    with pytest.raises(ConfigurationError, match="^timeout: must be above 0"):
        Client(["h:1"], timeout=0)


def test_files_that_cannot_be_read_are_named(tmp_path) -> None:  # type: ignore[no-untyped-def]
    missing = tmp_path / "ca.pem"
    with pytest.raises(ConfigurationError, match=f"^CA: cannot read {missing}"):
        Security.from_files(ca=missing)
    with pytest.raises(ConfigurationError, match="needs both the certificate and the key"):
        Security.from_files(ca=missing, cert=tmp_path / "c.pem")
    token = tmp_path / "token"
    token.write_text("abcdef0123456789\n")
    assert Security.from_files(token_file=token).token == "abcdef0123456789"
