"""moto's S3 server for the facility test, with IAM authentication switched on.

Creates one IAM user with full access and writes its key pair to ``CREDENTIALS_FILE`` (a
mounted folder only the test can read), so the key never appears in a log or in an image.
Then every request must be signed with a known key, which proves that credentials really
reach the job and the workers.
"""

from __future__ import annotations

import json
import os
import signal
import threading
from pathlib import Path

PORT = int(os.environ.get("S3_PORT", "5000"))
CREDENTIALS_FILE = Path(os.environ.get("S3_CREDENTIALS_FILE", "/run/s3/credentials.json"))
POLICY = json.dumps({"Version": "2012-10-17",
                     "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]})


def main() -> None:
    """Serve until SIGTERM."""
    import boto3
    from moto import settings
    from moto.core.authorization import ActionAuthenticatorMixin
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="0.0.0.0", port=PORT, verbose=False)  # noqa: S104
    server.start()
    local = f"http://127.0.0.1:{PORT}"
    iam = boto3.client("iam", endpoint_url=local, aws_access_key_id="bootstrap",
                       aws_secret_access_key="bootstrap", region_name="us-east-1")
    iam.create_user(UserName="intccms-facility")
    iam.put_user_policy(UserName="intccms-facility", PolicyName="all", PolicyDocument=POLICY)
    key = iam.create_access_key(UserName="intccms-facility")["AccessKey"]
    settings.INITIAL_NO_AUTH_ACTION_COUNT = 0
    ActionAuthenticatorMixin.request_count = 0
    tmp = CREDENTIALS_FILE.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump({"key": key["AccessKeyId"], "secret": key["SecretAccessKey"]}, handle)
    tmp.rename(CREDENTIALS_FILE)
    print(f"S3 test server on port {PORT}, IAM authentication on", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    server.stop()


if __name__ == "__main__":
    main()
