{{/* Names, labels and the pieces several templates share. */}}

{{- define "agentmedic.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "agentmedic.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "agentmedic.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "agentmedic.selectorLabels" -}}
app.kubernetes.io/name: {{ include "agentmedic.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "agentmedic.labels" -}}
helm.sh/chart: {{ include "agentmedic.chart" . }}
{{ include "agentmedic.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: agentmedic
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "agentmedic.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "agentmedic.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "agentmedic.metricsServiceName" -}}
{{- printf "%s-metrics" (include "agentmedic.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "agentmedic.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
The shards: a list of {name, index, peering} dicts, one per Deployment. Without sharding a
single entry with index -1 (no shard setting) and the configured peering name.
*/}}
{{- define "agentmedic.peeringName" -}}
{{- default (include "agentmedic.fullname" .) .Values.peering.name }}
{{- end }}

{{- define "agentmedic.shards" -}}
{{- $fullname := include "agentmedic.fullname" . }}
{{- $peering := include "agentmedic.peeringName" . }}
{{- $count := int .Values.sharding.count }}
{{- $shards := list }}
{{- if gt $count 1 }}
{{- range $i := until $count }}
{{- $shards = append $shards (dict "name" (printf "%s-shard-%d" $fullname $i) "index" $i "peering" (printf "%s-shard-%d" $peering $i)) }}
{{- end }}
{{- else }}
{{- $shards = append $shards (dict "name" $fullname "index" -1 "peering" $peering) }}
{{- end }}
{{- toJson (dict "shards" $shards) }}
{{- end }}

{{/* Paths where Secrets and the config are mounted in the container. */}}
{{- define "agentmedic.configDir" -}}/etc/agentmedic{{- end }}
{{- define "agentmedic.bearerTokenFile" -}}/var/run/secrets/agentmedic/bearer-token/token{{- end }}
{{- define "agentmedic.basicAuthPasswordFile" -}}/var/run/secrets/agentmedic/basic-auth/password{{- end }}
{{- define "agentmedic.caFile" -}}/var/run/secrets/agentmedic/ca/ca.crt{{- end }}

{{/*
The port of the metrics backend pods for the NetworkPolicy: networkPolicy.metricsBackend.ports,
else the port of prometheus.url, else 80/443 by scheme. Returns a JSON list.
*/}}
{{- define "agentmedic.backendPorts" -}}
{{- if .Values.networkPolicy.metricsBackend.ports }}
{{- toJson .Values.networkPolicy.metricsBackend.ports }}
{{- else }}
{{- $url := urlParse .Values.prometheus.url }}
{{- $hostport := splitList ":" (get $url "host") }}
{{- if gt (len $hostport) 1 }}
{{- toJson (list (last $hostport | int)) }}
{{- else if eq (get $url "scheme") "https" }}
{{- toJson (list 443) }}
{{- else }}
{{- toJson (list 80) }}
{{- end }}
{{- end }}
{{- end }}

{{/*
The RBAC rules of the operator: exactly the union of agentmedic.operator.permissions and
agentmedic.actions.permissions (tests/chart/test_rbac.py proves it), but for the leader
election Lease, which is granted only in the release namespace (rbac.yaml).
*/}}
{{- define "agentmedic.rules" -}}
# AgentPolicies: kopf watches them, keeps its finalizer and annotations, writes status.
- apiGroups: ["agentmedic.io"]
  resources: ["agentpolicies"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["agentmedic.io"]
  resources: ["agentpolicies/status"]
  verbs: ["patch"]
# --- silences (AgentSilence): read only; on-call creates them (rbac-silences.yaml) ---
- apiGroups: ["agentmedic.io"]
  resources: ["agentsilences"]
  verbs: ["list", "watch"]
# --- end of silences ---
# Agents: a label-selected watch, read and patched by scale-to-zero, switchModel and restore.
- apiGroups: ["apps"]
  resources: ["deployments", "statefulsets"]
  verbs: ["get", "list", "watch", "patch"]
# switchModel with spec.model.configMapKey.
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["get", "patch"]
# Notification channels' webhook URLs and routing keys; read one by one, never listed.
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get"]
# An Event per action, restore and refusal (and kopf's own).
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
# promptOptimization: a Job from the policy's CronJob template.
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["list", "create"]
- apiGroups: ["batch"]
  resources: ["cronjobs"]
  verbs: ["get"]
# scaleToZero: find the HPAs and pause (and later resume) the KEDA ScaledObjects that
# target the agent.
- apiGroups: ["autoscaling"]
  resources: ["horizontalpodautoscalers"]
  verbs: ["list"]
- apiGroups: ["keda.sh"]
  resources: ["scaledobjects"]
  verbs: ["get", "list", "patch"]
# --- shared channels and metrics backends (channelRef, metricsBackendRef): read by watch.
- apiGroups: ["agentmedic.io"]
  resources: ["notificationchannels", "metricsbackends"]
  verbs: ["list", "watch"]
- apiGroups: ["agentmedic.io"]
  resources: ["notificationchannels/status", "metricsbackends/status"]
  verbs: ["patch"]
{{- if not .Values.namespaces }}
# The cluster-scoped ones: only a cluster-wide install reads them.
- apiGroups: ["agentmedic.io"]
  resources: ["clusternotificationchannels", "clustermetricsbackends"]
  verbs: ["list", "watch"]
- apiGroups: ["agentmedic.io"]
  resources: ["clusternotificationchannels/status", "clustermetricsbackends/status"]
  verbs: ["patch"]
{{- end }}
# --- end of shared channels and metrics backends
{{- end }}

{{/* A rendered template's checksum, to roll the pods when their config changes. */}}
{{- define "agentmedic.checksum" -}}
{{- include (print .root.Template.BasePath "/" .file) .root | sha256sum }}
{{- end }}
