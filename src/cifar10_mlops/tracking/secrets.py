"""No credential reaches MLflow: URL user info and credential query parameters (a presigned
URL's signature, an access token) are redacted from logged params and messages."""

from __future__ import annotations

import re
from typing import Any

from cifar10_mlops.core.params import Params, flatten

# scheme://userinfo@host: the greedy run stops at the netloc's end and backs off to its last
# '@', so a raw '@' inside a password is covered too.
_URL_USERINFO = re.compile(r"\b(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)[^/?#\s]*@")

# Query parameters that carry a credential: S3 / GCS presigned URLs (X-Amz-Signature,
# X-Amz-Credential, X-Amz-Security-Token, X-Goog-Signature, X-Goog-Credential), Azure SAS (sig),
# OAuth and API tokens. Matched on the name alone, any case; the value goes up to the next
# `&`, `#` or blank.
_QUERY_CREDENTIAL = re.compile(
    r"(?P<name>[?&;](?:x-amz-(?:signature|credential|security-token)|x-goog-(?:signature|credential)"
    r"|sig|signature|access_token|id_token|refresh_token|token|api_key|apikey|key|secret"
    r"|client_secret|password|passwd|pwd|auth|code)=)[^&#\s]*",
    re.IGNORECASE,
)


def redact_credentials(text: str) -> str:
    """`https://user:pass@host/x` -> `https://***@host/x`, anywhere in `text`. The user name
    goes too: in token URLs (`https://<token>@host`) it is the secret. Credential query
    parameters keep their name: `?X-Amz-Signature=abc` -> `?X-Amz-Signature=***`."""
    text = _URL_USERINFO.sub(r"\g<scheme>***@", text)
    return _QUERY_CREDENTIAL.sub(r"\g<name>***", text)


def loggable_params(params: Params) -> dict[str, Any]:
    """Every param, flattened, as MLflow logs it: null spelt as in params.yaml, URL user info
    redacted."""

    def text(value: Any) -> Any:
        if value is None:
            return "null"
        return redact_credentials(value) if isinstance(value, str) else value

    return {key: text(value) for key, value in flatten(params).items()}
