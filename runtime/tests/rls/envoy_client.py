"""An Envoy rate limit client that shares nothing with VSS.

Its stubs come from the `xds-protos` package, which the gRPC project
generates from Envoy's own protos, so a test through it shows that VSS
speaks `envoy.service.ratelimit.v3` as Envoy does, not only as VSS's own
types say. The Rust test drives it: one JSON `RateLimitRequest` per line on
stdin, one JSON line back per request, `{"ok": <RateLimitResponse>}` or
`{"error": {"code": "INVALID_ARGUMENT", "message": "..."}}`.

Usage: envoy_client.py HOST:PORT
"""

import json
import sys

import grpc
from envoy.service.ratelimit.v3 import rls_pb2, rls_pb2_grpc
from google.protobuf import json_format


def main() -> None:
    channel = grpc.insecure_channel(sys.argv[1])
    stub = rls_pb2_grpc.RateLimitServiceStub(channel)
    for line in sys.stdin:
        request = json_format.ParseDict(json.loads(line), rls_pb2.RateLimitRequest())
        try:
            reply = stub.ShouldRateLimit(request, timeout=5)
            out = {
                "ok": json_format.MessageToDict(
                    reply,
                    preserving_proto_field_name=True,
                    always_print_fields_with_no_presence=True,
                )
            }
        except grpc.RpcError as e:
            out = {"error": {"code": e.code().name, "message": e.details()}}
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
