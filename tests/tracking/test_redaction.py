"""Credentials inside URLs never reach MLflow (issue 27, item 5): user info was redacted, a
presigned URL's signature or an access_token in the query string was stored as a param."""

from __future__ import annotations

import pytest

from cifar10_mlops.core.params import Params
from cifar10_mlops.tracking.secrets import loggable_params, redact_credentials

SECRET = "s3cr3tVALUE"


@pytest.mark.parametrize(
    "url",
    [
        f"https://bucket.s3.amazonaws.com/c.tar.gz?X-Amz-Algorithm=AWS4&X-Amz-Signature={SECRET}",
        f"https://b.s3.amazonaws.com/c.tar.gz?X-Amz-Credential={SECRET}%2F20261206&X-Amz-Date=1",
        f"https://b.s3.amazonaws.com/c.tar.gz?x-amz-security-token={SECRET}",
        f"https://host/c.tar.gz?access_token={SECRET}",
        f"https://host/c.tar.gz?a=1&token={SECRET}#frag",
        f"https://acct.blob.core.windows.net/c/c.tar.gz?sv=2024&sig={SECRET}",
        f"https://storage.googleapis.com/b/c.tar.gz?X-Goog-Signature={SECRET}",
        f"https://host/c.tar.gz?api_key={SECRET}",
        f"https://host/c.tar.gz?Password={SECRET}",
    ],
)
def test_a_credential_in_the_query_string_is_redacted(url):
    redacted = redact_credentials(url)
    assert SECRET not in redacted
    assert "=***" in redacted
    assert redacted.split("?")[0] == url.split("?")[0]  # the place stays readable


def test_ordinary_query_parameters_stay():
    url = "https://host/cifar-10-binary.tar.gz?version=2&dl=1"
    assert redact_credentials(url) == url


def test_the_logged_params_carry_no_query_credential():
    url = f"https://host/cifar-10-binary.tar.gz?X-Amz-Signature={SECRET}"
    params = Params.model_validate({"data": {"cifar10": {"url": url}}})
    logged = loggable_params(params)["data.cifar10.url"]
    assert logged == "https://host/cifar-10-binary.tar.gz?X-Amz-Signature=***"
