"""Schemathesis hooks for tests/openapi.rs (loaded through SCHEMATHESIS_HOOKS).

Every create that carries a valid `Idempotency-Key` gets a fresh one, as a client does: a key
is the client's promise that a repeated request is the same request. Generated keys repeat
("0", "00"), and a create replayed with its key answers the first create's resource as it was
then (by design, for 24 h), even if that resource was deleted since; Schemathesis' stateful
phase would then find the "created" resource gone. Reusing a key with another body (422) is
tested in tests/idempotency.rs. An invalid generated key is left as it is, so the negative
cases still send it.
"""

import re
import uuid

import schemathesis

VALID_KEY = re.compile(r"^[!-~]{1,255}$")


@schemathesis.hook
def before_call(context, case, kwargs):
    headers = case.headers or {}
    for name in list(headers):
        if name.lower() == "idempotency-key" and isinstance(headers[name], str) and VALID_KEY.match(headers[name]):
            headers[name] = str(uuid.uuid4())
