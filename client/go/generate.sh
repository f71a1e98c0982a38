#!/usr/bin/env bash
# Regenerates vsspb/ (the Go types and gRPC stubs of proto/vss/v1) with
# Debian's protoc and the Go plugins at the versions pinned here. CI runs
# it and fails if the committed code differs.
#
#   apt-get install protobuf-compiler
#   go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
#   go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.0
set -euo pipefail
cd "$(dirname "$0")"
PROTO=../../proto
PKG=github.com/vss-dev/vss/client/go/vsspb
# Plugins already on PATH win (CI puts pinned ones first); then GOPATH/bin.
PATH="$PATH:$(go env GOPATH)/bin"
for tool in protoc protoc-gen-go protoc-gen-go-grpc; do
    command -v "$tool" >/dev/null || { echo "generate.sh: $tool not found (see the comment at the top)" >&2; exit 1; }
done
rm -f vsspb/*.pb.go
# The protos carry no go_package: the M options place both files in vsspb.
M="Mvss/v1/vss.proto=$PKG,Mvss/v1/cluster.proto=$PKG"
# Messages of both files (vss.proto uses cluster.proto's RoutingTable)...
protoc -I "$PROTO" --go_out=vsspb --go_opt=paths=source_relative,$M \
    vss/v1/vss.proto vss/v1/cluster.proto
# ...but the client API's stubs only: clients never call the mesh or
# control services.
protoc -I "$PROTO" --go-grpc_out=vsspb --go-grpc_opt=paths=source_relative,$M \
    vss/v1/vss.proto
# paths=source_relative writes vsspb/vss/v1/*.go: flatten.
mv vsspb/vss/v1/*.go vsspb/
rm -rf vsspb/vss
