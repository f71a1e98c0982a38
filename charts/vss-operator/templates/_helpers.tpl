{{/*
Names. The full name is the release name, plus the chart name unless the
release name already contains it ("vss-operator" stays "vss-operator").
*/}}
{{- define "vss-operator.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "vss-operator.fullname" -}}
{{- if contains .Chart.Name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "vss-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "vss-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Labels on every object; selectorLabels never change after install. */}}
{{- define "vss-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "vss-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "vss-operator.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "vss-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: vss
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* repository[:tag][@digest]; the tag defaults to the appVersion. */}}
{{- define "vss-operator.imageRef" -}}
{{- $tag := default .root.Chart.AppVersion .image.tag -}}
{{- if .image.digest -}}
{{- printf "%s@%s" .image.repository .image.digest -}}
{{- else -}}
{{- printf "%s:%s" .image.repository $tag -}}
{{- end -}}
{{- end }}

{{/*
What the operator does to the objects of a VssCluster, in every namespace it
watches. The runtime pods' Role (leases for leader election, events, pod
reads) is created by the operator, and Kubernetes only lets a subject create
a Role granting permissions it holds itself (or one with `escalate`/`bind`).
Holding the same lease/event/pod permissions is the narrower choice: with
`escalate` and `bind` the operator could grant anything, including
cluster-admin, to any ServiceAccount. So every rule below for leases,
events and pods must stay a superset of the runtime Role the operator
builds.
*/}}
{{- define "vss-operator.managedRules" -}}
- apiGroups: ["vss.dev"]
  resources: ["vssclusters"]
  verbs: ["get", "list", "watch", "update", "patch"]
- apiGroups: ["vss.dev"]
  resources: ["vssclusters/status"]
  verbs: ["get", "update", "patch"]
# Owner references with blockOwnerDeletion need update on finalizers.
- apiGroups: ["vss.dev"]
  resources: ["vssclusters/finalizers"]
  verbs: ["update"]
- apiGroups: ["apps"]
  resources: ["statefulsets"]
  verbs: ["get", "list", "watch", "create", "update", "patch", "delete"]
- apiGroups: [""]
  resources: ["services", "configmaps", "serviceaccounts"]
  verbs: ["get", "list", "watch", "create", "update", "patch", "delete"]
# Each cluster's mesh CA and pod certificates (spec.meshTls.mode Operator):
# the operator creates, reads back and renews them. Watched (by label) so a
# deleted or edited Secret is restored at once.
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "list", "watch", "create", "update", "patch", "delete"]
# spec.meshTls.mode CertManager: a cert-manager Certificate per pod and one
# for the operator, whose Secrets the operator gathers (rule above).
- apiGroups: ["cert-manager.io"]
  resources: ["certificates"]
  verbs: ["get", "list", "watch", "create", "update", "patch", "delete"]
- apiGroups: ["rbac.authorization.k8s.io"]
  resources: ["roles", "rolebindings"]
  verbs: ["get", "list", "watch", "create", "update", "patch", "delete"]
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["get", "list", "watch", "create", "update", "patch", "delete"]
# Each cluster's NetworkPolicy: its mesh port admits only its pods and ours.
- apiGroups: ["networking.k8s.io"]
  resources: ["networkpolicies"]
  verbs: ["get", "list", "watch", "create", "update", "patch", "delete"]
# The runtime pods' leader Leases: read for status.leader, and held so the
# operator may grant them to the runtime Role (see above).
- apiGroups: ["coordination.k8s.io"]
  resources: ["leases"]
  verbs: ["get", "list", "watch", "create", "update", "patch", "delete"]
# Pod reads for status; delete only for chaos (spec.chaos), which kills one
# ready pod of a cluster on a schedule.
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list", "watch", "delete"]
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "patch"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}

{{/*
"true" when the Prometheus Operator's objects are wanted: monitoring.enabled
true, or "auto" and the cluster serves monitoring.coreos.com/v1 (Helm knows
only at install time, or from `helm template --api-versions`).
*/}}
{{- define "vss-operator.monitoring" -}}
{{- $on := toString .Values.monitoring.enabled -}}
{{- if or (eq $on "true") (and (eq $on "auto") (.Capabilities.APIVersions.Has "monitoring.coreos.com/v1")) -}}
true
{{- end -}}
{{- end }}

{{/* Labels of the monitoring objects: the chart's and the user's (e.g. the label a Prometheus selects them by). */}}
{{- define "vss-operator.monitoringLabels" -}}
{{ include "vss-operator.labels" . }}
{{- with .Values.monitoring.labels }}
{{ toYaml . }}
{{- end }}
{{- end }}
