"""Credentials written into URLs are masked wherever text leaves the tool (issue 12): pure checks of
:func:`ci_serve.secrets.mask`; the end-to-end run is in tests/test_secrets_exposure.py."""

from __future__ import annotations

import pytest

from ci_serve import secrets
from ci_serve.cluster.address import resolve_address


@pytest.mark.parametrize("text, shown", [
    ("https://user:pa55word@example.com/pkg.zip", "https://***@example.com/pkg.zip"),
    ("--address https://ci:t0ken@head:8265 refused", "--address https://***@head:8265 refused"),
    ("--index-url=https://__token__:pypi-AgEN@pypi.example/simple", "--index-url=https://***@pypi.example/simple"),
    ("git+https://ghp_abc123@github.com/o/r.git@v1", "git+https://***@github.com/o/r.git@v1"),
    ("https://u:p@ss@host/x", "https://***@host/x"),  # a raw '@' in the password stays in the userinfo
    ("{'working_dir': 'https://u:pw@h/a.zip'}", "{'working_dir': 'https://***@h/a.zip'}"),
    ("mail ops@example.com at https://example.com/a@b", "mail ops@example.com at https://example.com/a@b"),
])
def test_url_userinfo_masked(text, shown):
    assert secrets.mask(text) == shown


def test_address_credentials_are_registered_and_masked_decoded():
    address = resolve_address("https://deploy:p%40ss-w0rd@head.example:8265", env={})
    assert address.startswith("https://deploy:")
    assert secrets.mask(f"cannot reach {address}") == "cannot reach https://***@head.example:8265"
    assert secrets.mask("login failed for deploy with p@ss-w0rd") == "login failed for deploy with ***"


def test_mask_data_masks_urls_in_configs():
    config = {"runtime_env": {"working_dir": "https://u:secretpw@h/a.zip", "py_modules": ["https://t0k3n@h/m.whl"],
                              "pip": {"packages": ["x"], "pip_install_options": ["--extra-index-url",
                                                                                 "https://u:idxpw@idx/simple"]}}}
    text = repr(secrets.mask_data(config))
    assert "secretpw" not in text and "t0k3n" not in text and "idxpw" not in text
    assert "https://***@h/a.zip" in text
