"""Cross-language checks driven by test/integration/python-sdk.test.ts:

  python3 tests/crosslang.py verify ISSUER AUDIENCE   < token   -> {"ok": true, "claims": …} | {"ok": false, "reason": …}
  python3 tests/crosslang.py mint ISSUER CLIENT_ID     (secret on stdin) -> the access token on stdout
"""
from __future__ import annotations

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from aegis_sdk import ClientCredentialsSource  # noqa: E402


def main() -> int:
    command = sys.argv[1]
    if command == "verify":
        from aegis_sdk.verify import Verifier, VerifyError

        verifier = Verifier(sys.argv[2], sys.argv[3])
        results = []
        for token in sys.stdin.read().split():
            try:
                results.append({"ok": True, "claims": verifier.verify(token).claims_dict()})
            except VerifyError as err:
                results.append({"ok": False, "reason": err.reason, "code": err.code})
        print(json.dumps(results))
        return 0
    if command == "mint":
        with ClientCredentialsSource(sys.argv[2], sys.argv[3], sys.stdin.read().strip()) as source:
            print(source.get_token())
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
