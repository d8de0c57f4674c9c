{{/* Names */}}

{{- define "jso.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The prefix of every resource name: <release>-jetstream-operator, or the release name
when it already contains the chart name. */}}
{{- define "jso.fullname" -}}
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

{{- define "jso.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The embedded NATS StatefulSet (and client Service): at most 52 characters, so that the
controller-revision-hash label of its pods fits in 63. */}}
{{- define "jso.nats.fullname" -}}
{{- printf "%s-nats" (include "jso.fullname" . | trunc 47 | trimSuffix "-") }}
{{- end }}

{{- define "jso.nats.headless" -}}
{{- printf "%s-headless" (include "jso.nats.fullname" .) }}
{{- end }}

{{- define "jso.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "jso.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "jso.leaseName" -}}
{{- default (include "jso.fullname" .) .Values.leaderElection.leaseName }}
{{- end }}

{{/* Labels */}}

{{- define "jso.labels" -}}
helm.sh/chart: {{ include "jso.chart" . }}
app.kubernetes.io/name: {{ include "jso.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: jetstream-operator
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "jso.selectorLabels" -}}
app.kubernetes.io/name: {{ include "jso.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "jso.nats.selectorLabels" -}}
app.kubernetes.io/name: {{ include "jso.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: nats
{{- end }}

{{/* Behaviour */}}

{{/* "true" when leader election is on: forced, or more than one replica. */}}
{{- define "jso.leaderElection" -}}
{{- if or .Values.leaderElection.enabled (gt (int .Values.replicas) 1) }}true{{ else }}false{{ end }}
{{- end }}

{{/* The namespaces to watch as a JSON list; [] means every namespace. */}}
{{- define "jso.watchNamespaces" -}}
{{- if .Values.watchNamespaces }}
{{- .Values.watchNamespaces | uniq | toJson }}
{{- else if .Values.namespaced }}
{{- list .Release.Namespace | toJson }}
{{- else }}
{{- list | toJson }}
{{- end }}
{{- end }}

{{/* The default NATS URL(s): the embedded broker's client Service, or nats.url. */}}
{{- define "jso.natsUrl" -}}
{{- if and .Values.nats.enabled .Values.nats.url }}
{{- fail "nats.url is set, but nats.enabled is true: the operator would use the embedded broker. Set nats.enabled=false to use the NATS servers of nats.url, or leave nats.url empty" }}
{{- else if .Values.nats.enabled }}
{{- printf "nats://%s.%s.svc:4222" (include "jso.nats.fullname" .) .Release.Namespace }}
{{- else }}
{{- required "nats.url is required when nats.enabled is false: set it to the URL of your NATS servers (e.g. --set nats.url=nats://nats.nats.svc:4222), or set nats.enabled=true for the embedded broker" .Values.nats.url }}
{{- end }}
{{- end }}

{{- define "jso.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{/* The operator's rules on its own kinds, Events and Secrets (a ClusterRole, or a Role in
each watched namespace). Each rule says why it is there. */}}
{{- define "jso.operatorRules" -}}
# Watch the custom resources: list and watch feed the controllers, get re-reads one object
# (an Account an asset refers to). patch adds and removes the operator's finalizers
# (stream.nats.io/finalizer, ...) with a JSON merge patch. No create, update or delete:
# people and GitOps tools own these objects, the operator only reconciles them.
- apiGroups: ["jetstream.nats.io"]
  resources: ["streams", "consumers", "keyvalues", "objectstores", "accounts"]
  verbs: ["get", "list", "watch", "patch"]
# Write status (conditions, observedGeneration, what the object is bound to) by
# server-side apply, which is a PATCH of the status subresource.
- apiGroups: ["jetstream.nats.io"]
  resources: ["streams/status", "consumers/status", "keyvalues/status", "objectstores/status", "accounts/status"]
  verbs: ["patch"]
# Publish Events about the objects (Created, Updated, Adopted, DriftRepaired, warnings):
# kube-runtime's Recorder creates an Event, then patches it into a series when it repeats.
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- if .Values.rbac.readSecrets }}
# Read the Secrets that Account objects name (credentials, NKey seeds, tokens, TLS
# material): one GET by name each. No list or watch: the operator can read a Secret only
# when it knows its name, never enumerate Secrets.
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get"]
{{- end }}
{{- end }}

{{/* nats.conf of the embedded broker (its checksum restarts the broker when it changes). */}}
{{- define "jso.nats.conf" -}}
{{- $n := .Values.nats }}
{{- $name := include "jso.nats.fullname" . }}
{{- $headless := include "jso.nats.headless" . -}}
# nats-server configuration of the embedded broker (jetstream-operator chart).
server_name: $SERVER_NAME
listen: 0.0.0.0:4222
http: 0.0.0.0:8222

jetstream {
  store_dir: /data
  max_memory_store: {{ $n.jetstream.memoryStore.maxSize }}
  max_file_store: {{ default $n.jetstream.fileStore.size $n.jetstream.fileStore.maxSize }}
}
{{- if $n.cluster.enabled }}

cluster {
  name: {{ $name }}
  listen: 0.0.0.0:6222
  no_advertise: true
  routes: [
    {{- range $i := until (int $n.cluster.replicas) }}
    nats://{{ $name }}-{{ $i }}.{{ $headless }}:6222
    {{- end }}
  ]
}
{{- end }}
{{- with $n.config.extra }}

# nats.config.extra
{{ . }}
{{- end }}
{{- end }}
