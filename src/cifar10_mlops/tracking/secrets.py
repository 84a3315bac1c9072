"""No credential reaches MLflow: URL user info is redacted from logged params and messages."""

from __future__ import annotations

import re
from typing import Any

from cifar10_mlops.core.params import Params, flatten

# scheme://userinfo@host: the greedy run stops at the netloc's end and backs off to its last
# '@', so a raw '@' inside a password is covered too.
_URL_USERINFO = re.compile(r"\b(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)[^/?#\s]*@")


def redact_credentials(text: str) -> str:
    """`https://user:pass@host/x` -> `https://***@host/x`, anywhere in `text`. The user name
    goes too: in token URLs (`https://<token>@host`) it is the secret."""
    return _URL_USERINFO.sub(r"\g<scheme>***@", text)


def loggable_params(params: Params) -> dict[str, Any]:
    """Every param, flattened, as MLflow logs it: null spelt as in params.yaml, URL user info
    redacted."""

    def text(value: Any) -> Any:
        if value is None:
            return "null"
        return redact_credentials(value) if isinstance(value, str) else value

    return {key: text(value) for key, value in flatten(params).items()}
