{{/*
Chart name, truncated to the 63 characters a label value allows.
*/}}
{{- define "workflow-bridge.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full resource name: <release>-<chart>, or the release name when it already contains the chart name.
*/}}
{{- define "workflow-bridge.fullname" -}}
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

{{- define "workflow-bridge.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels on every resource.
*/}}
{{- define "workflow-bridge.labels" -}}
helm.sh/chart: {{ include "workflow-bridge.chart" . }}
{{ include "workflow-bridge.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: bridge
{{- end }}

{{/*
Selector labels: stable across upgrades (a Deployment's selector is immutable).
*/}}
{{- define "workflow-bridge.selectorLabels" -}}
app.kubernetes.io/name: {{ include "workflow-bridge.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "workflow-bridge.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "workflow-bridge.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "workflow-bridge.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}

{{/*
The health and metrics port, read from the bridge's own config so that the probes, the container
port and the Service can never disagree with what the bridge listens on.
*/}}
{{- define "workflow-bridge.metricsPort" -}}
{{- $obs := .Values.config.observability | default dict }}
{{- $port := 9464 }}
{{- if hasKey $obs "port" }}{{ $port = get $obs "port" }}{{ end }}
{{- if not $port }}
{{- fail "config.observability.port must be a fixed port (not 0 or null): the probes, the Service and the ServiceMonitor use it" }}
{{- end }}
{{- int $port }}
{{- end }}

{{/*
The bridge's drain grace in whole seconds (settings default: 20), rounded up.
*/}}
{{- define "workflow-bridge.drainGraceSeconds" -}}
{{- $engine := .Values.config.engine | default dict }}
{{- $grace := 20 }}
{{- if hasKey $engine "drain_grace_s" }}{{ $grace = get $engine "drain_grace_s" }}{{ end }}
{{- int (ceil $grace) }}
{{- end }}

{{/*
terminationGracePeriodSeconds: the drain grace plus a margin for commit, flush and group leave,
so the kubelet's SIGKILL never lands in the middle of a drain.
*/}}
{{- define "workflow-bridge.terminationGracePeriodSeconds" -}}
{{- add (include "workflow-bridge.drainGraceSeconds" . | int) (int .Values.terminationGraceMarginSeconds) }}
{{- end }}

{{/*
A value from .Values.config with the bridge's default when it is not set: (list $ "topics" "run_commands" "default").
*/}}
{{- define "workflow-bridge.configValue" -}}
{{- $root := index . 0 }}
{{- $section := get ($root.Values.config | default dict) (index . 1) | default dict }}
{{- get $section (index . 2) | default (index . 3) }}
{{- end }}

{{/*
The topic names the specs in topics/ give (TopicSettings' defaults; helm/check.py keeps them equal).
`bridge topics apply` creates these names, whatever config.topics says.
*/}}
{{- define "workflow-bridge.specTopics" -}}
run_commands: workflow.run.commands
control_commands: workflow.control.commands
run_outcomes: workflow.run.outcomes
control_outcomes: workflow.control.outcomes
dead_letter: workflow.commands.dlq
ledger: workflow.bridge.ledger
lifecycle: workflow.run.lifecycle
parked: workflow.bridge.parked
{{- end }}

{{/*
Labels of the topics Job's pod: the release's, but never the selector labels, so that the Service,
the PodDisruptionBudget and the Deployment never count it as a bridge pod.
*/}}
{{- define "workflow-bridge.topicsJobLabels" -}}
helm.sh/chart: {{ include "workflow-bridge.chart" . }}
app.kubernetes.io/part-of: {{ include "workflow-bridge.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: topics
{{- end }}

{{/*
Environment of every container that reads the bridge configuration: secretEnv as secretKeyRefs, then extraEnv.
*/}}
{{- define "workflow-bridge.secretEnv" -}}
{{- range .Values.secretEnv }}
- name: {{ required "secretEnv[].name is required" .name }}
  valueFrom:
    secretKeyRef:
      name: {{ required (printf "secretEnv %s: secretName is required" .name) .secretName }}
      key: {{ required (printf "secretEnv %s: secretKey is required" .name) .secretKey }}
      {{- if hasKey . "optional" }}
      optional: {{ .optional }}
      {{- end }}
{{- end }}
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
Volume mounts for secretFiles and extraVolumeMounts; the volumes that go with them.
*/}}
{{- define "workflow-bridge.secretMounts" -}}
{{- range .Values.secretFiles }}
- name: {{ required "secretFiles[].name is required" .name }}
  mountPath: {{ required (printf "secretFiles %s: mountPath is required" .name) .mountPath }}
  readOnly: true
{{- end }}
{{- with .Values.extraVolumeMounts }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "workflow-bridge.secretVolumes" -}}
{{- range .Values.secretFiles }}
- name: {{ .name }}
  secret:
    secretName: {{ required (printf "secretFiles %s: secretName is required" .name) .secretName }}
    defaultMode: {{ .defaultMode | default 0440 }}
    {{- with .items }}
    items:
      {{- toYaml . | nindent 6 }}
    {{- end }}
{{- end }}
{{- with .Values.extraVolumes }}
{{ toYaml . }}
{{- end }}
{{- end }}
