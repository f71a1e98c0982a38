#!/usr/bin/env bash
# End-to-end test on a throwaway kind cluster: build and load the images,
# install the chart, apply the example VssClusters, run the scenarios of
# e2e/tests/kind.rs. See e2e/README.md.
#
#   e2e/run.sh                      # everything; deletes the cluster after
#   VSS_E2E_KEEP_CLUSTER=1 e2e/run.sh
#   e2e/run.sh config_change        # only scenarios whose name contains this
set -euo pipefail
cd "$(dirname "$0")/.."

CLUSTER_NAME="${VSS_E2E_KIND_CLUSTER:-vss-e2e}"
TAG="${VSS_E2E_IMAGE_TAG:-e2e}"
OPERATOR_NS="vss-system"
CLUSTERS_NS="${VSS_E2E_NAMESPACE:-vss-e2e}"
WORK="target/e2e"
KUBECONFIG_FILE="$PWD/$WORK/kubeconfig"

say() { printf '\n== %s\n' "$*"; }
die() { printf 'e2e/run.sh: %s\n' "$*" >&2; exit 1; }

for tool in docker kind kubectl helm cargo; do
    command -v "$tool" >/dev/null || die "$tool is not installed (see e2e/README.md)"
done
docker info >/dev/null 2>&1 || die "docker is installed but its daemon is not reachable (is Docker running?)"

mkdir -p "$WORK"
# Our own kubeconfig file: the user's ~/.kube/config is never touched.
export KUBECONFIG="$KUBECONFIG_FILE"

created=0
if kind get clusters 2>/dev/null | grep -qx "$CLUSTER_NAME"; then
    say "reusing kind cluster $CLUSTER_NAME"
    kind get kubeconfig --name "$CLUSTER_NAME" >"$KUBECONFIG_FILE"
else
    say "creating kind cluster $CLUSTER_NAME"
    # Spelled for bash 3.2 (macOS), where an empty "${a[@]}" trips set -u.
    image_flag=()
    if [[ -n "${KIND_NODE_IMAGE:-}" ]]; then image_flag=(--image "$KIND_NODE_IMAGE"); fi
    kind create cluster --name "$CLUSTER_NAME" --kubeconfig "$KUBECONFIG_FILE" \
        --wait 180s ${image_flag[@]+"${image_flag[@]}"}
    created=1
fi

diagnose() {
    say "diagnostics"
    kubectl get nodes -o wide || true
    kubectl get vssclusters,statefulsets,pods,services,leases -A -o wide || true
    kubectl -n "$CLUSTERS_NS" describe vssclusters || true
    kubectl -n "$CLUSTERS_NS" describe pods -l app.kubernetes.io/name=vss || true
    kubectl -n "$OPERATOR_NS" logs deployment/vss-operator --all-containers --tail=200 || true
    kubectl -n "$CLUSTERS_NS" logs -l app.kubernetes.io/name=vss --all-containers --prefix --tail=100 || true
    kubectl get events -A --sort-by=.lastTimestamp | tail -n 50 || true
}

finish() {
    local rc=$?
    if [[ $rc -ne 0 ]]; then diagnose; fi
    if [[ $created -eq 1 && "${VSS_E2E_KEEP_CLUSTER:-0}" != "1" ]]; then
        say "deleting kind cluster $CLUSTER_NAME (VSS_E2E_KEEP_CLUSTER=1 keeps it)"
        kind delete cluster --name "$CLUSTER_NAME" || true
    elif [[ $rc -ne 0 || "${VSS_E2E_KEEP_CLUSTER:-0}" == "1" ]]; then
        echo "cluster kept: KUBECONFIG=$KUBECONFIG_FILE kubectl get pods -A"
    fi
    exit "$rc"
}
trap finish EXIT

say "building images (tag $TAG)"
docker build -f docker/vss-runtime.Dockerfile -t "vss-runtime:$TAG" .
docker build -f docker/vss-operator.Dockerfile -t "vss-operator:$TAG" .

say "loading images into kind"
kind load docker-image --name "$CLUSTER_NAME" "vss-runtime:$TAG" "vss-operator:$TAG"

say "installing the CRD and the chart"
# Helm installs crds/ only on first install and never upgrades them, so the
# CRD is applied directly: a rerun against a kept cluster gets the current one.
kubectl apply --server-side --force-conflicts -f crds/vsscluster.yaml
kubectl wait --for=condition=Established --timeout=60s crd/vssclusters.vss.dev
# pullPolicy Never: the operator must run the image just loaded, never a
# registry's. The runtime pods use IfNotPresent (the default for a non-latest
# tag), which finds the loaded image too.
helm upgrade --install vss-operator charts/vss-operator \
    --namespace "$OPERATOR_NS" --create-namespace \
    --set image.repository=vss-operator --set "image.tag=$TAG" --set image.pullPolicy=Never \
    --set runtimeImage.repository=vss-runtime --set "runtimeImage.tag=$TAG" \
    --set logFormat=text --set logLevel=info \
    --wait --timeout 5m

say "applying the example VssClusters in namespace $CLUSTERS_NS"
kubectl create namespace "$CLUSTERS_NS" --dry-run=client -o yaml | kubectl apply -f -
applied=0
for file in examples/*.yaml; do
    if grep -q '^kind: VssCluster' "$file"; then
        kubectl -n "$CLUSTERS_NS" apply -f "$file"
        applied=$((applied + 1))
    fi
done
[[ $applied -gt 0 ]] || die "no VssCluster manifests found in examples/"

say "running the scenarios"
VSS_E2E_KUBECONFIG="$KUBECONFIG_FILE" \
VSS_E2E_NAMESPACE="$CLUSTERS_NS" \
VSS_E2E_CLUSTER="${VSS_E2E_CLUSTER:-vss-seed}" \
VSS_E2E_OPERATOR_NAMESPACE="$OPERATOR_NS" \
    cargo test -p vss-e2e --test kind -- "$@"
