"""AWS error responses injected in front of moto: throttling bursts, denied calls.

`aws_faults(rules)` answers chosen API calls with an AWS error response instead of passing them to
moto, so a client sees exactly what AWS would have sent: botocore parses the error and applies its
retry policy (backoff for ThrottlingException and SlowDown), and the code under test gets the
ClientError AWS would raise. It wraps moto's botocore "before-send" handler rather than adding one
of its own: botocore calls every before-send handler, so moto would still carry out (create a
cluster, write an object) a call that was answered with an error.

    with mock_aws(), aws_faults([Fault("emr", "RunJobFlow", THROTTLING, times=3)]) as faults:
        ...
    faults.injected  # [(service, operation), ...] in the order they were answered with an error
    faults.passed    # the same for calls that went through to moto
"""
import contextlib
import dataclasses
import json
import threading
from unittest import mock

from botocore.awsrequest import AWSResponse
from moto.core.botocore_stubber import BotocoreStubber, MockRawResponse

THROTTLING = ("ThrottlingException", "Rate exceeded", 400)
S3_SLOW_DOWN = ("SlowDown", "Please reduce your request rate.", 503)


@dataclasses.dataclass
class Fault:
    """Answer the first `times` matching calls (after `after` matching calls passed) with an error."""

    service: str  # botocore's service id as in event names: emr, s3
    operation: str  # RunJobFlow, DescribeCluster, PutObject...
    error: tuple  # (code, message, HTTP status)
    times: int = 1
    after: int = 0
    url_contains: str = ""  # only calls whose URL has this (an S3 key, say)
    seen: int = 0

    def applies(self, service, operation, url):
        if (service, operation) != (self.service, self.operation) or self.url_contains not in url:
            return False
        self.seen += 1
        return self.after < self.seen <= self.after + self.times


def error_response(service, request, code, message, status):
    """The bytes AWS sends for an error: JSON for EMR's protocol, XML for S3's."""
    if service == "s3":
        body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
                f"<Message>{message}</Message><RequestId>FAULT</RequestId></Error>").encode()
        headers = {"Content-Type": "application/xml"}
    else:
        body = json.dumps({"__type": code, "message": message}).encode()
        headers = {"Content-Type": "application/x-amz-json-1.1", "x-amzn-ErrorType": code}
    return AWSResponse(request.url, status, headers, MockRawResponse(body))


class FaultInjector:
    def __init__(self, rules):
        self.rules = list(rules)
        self.injected, self.passed = [], []
        self._lock = threading.Lock()

    def fault_response(self, event_name, request):
        """The error response for this call, or None to let moto answer it."""
        _, service, operation = event_name.split(".", 2)  # before-send.<service>.<Operation>
        with self._lock:
            # Every rule counts the call, so each rule is asked, not only up to the first match.
            matching = [rule for rule in self.rules if rule.applies(service, operation, request.url)]
            rule = matching[0] if matching else None
            (self.injected if rule else self.passed).append((service, operation))
        return error_response(service, request, *rule.error) if rule else None

    def count(self, service, operation, injected=True):
        return (self.injected if injected else self.passed).count((service, operation))


@contextlib.contextmanager
def aws_faults(rules):
    """Install the injector for the block (every client, with mock_aws or a moto server); yields it."""
    injector = FaultInjector(rules)
    moto_handler = BotocoreStubber.__call__

    def handler(stubber, event_name, request, **kwargs):
        response = injector.fault_response(event_name, request)
        return response if response is not None else moto_handler(stubber, event_name, request, **kwargs)

    with mock.patch.object(BotocoreStubber, "__call__", handler):
        yield injector
