{{/* Chart name, truncated to the 63 characters Kubernetes allows in a label. */}}
{{- define "weft.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Fully qualified app name: the release name, plus the chart name unless it already contains it. */}}
{{- define "weft.fullname" -}}
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

{{- define "weft.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels every object carries. */}}
{{- define "weft.labels" -}}
helm.sh/chart: {{ include "weft.chart" . }}
{{ include "weft.selectorLabels" . }}
app.kubernetes.io/version: {{ include "weft.imageTag" . | replace "+" "_" | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: weft
{{- end }}

{{- define "weft.selectorLabels" -}}
app.kubernetes.io/name: {{ include "weft.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Pods of the Deployment (what the Service, PDB and ServiceMonitor select). */}}
{{- define "weft.serverSelectorLabels" -}}
{{ include "weft.selectorLabels" . }}
app.kubernetes.io/component: server
{{- end }}

{{- define "weft.imageTag" -}}
{{- .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{- define "weft.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (include "weft.imageTag" .) }}
{{- end }}
{{- end }}

{{- define "weft.secretName" -}}
{{- .Values.existingSecret.name | default (include "weft.fullname" .) }}
{{- end }}

{{- define "weft.publicUrl" -}}
{{- if .Values.publicUrl }}
{{- .Values.publicUrl }}
{{- else }}
{{- $port := ne (int .Values.service.port) 80 | ternary (printf ":%v" .Values.service.port) "" }}
{{- printf "http://%s.%s.svc%s" (include "weft.fullname" .) .Release.Namespace $port }}
{{- end }}
{{- end }}

{{/* Grace period: must outlast the preStop sleep plus weft's own drain. */}}
{{- define "weft.terminationGracePeriodSeconds" -}}
{{- $needed := add .Values.shutdown.preStopSleepSeconds .Values.shutdown.drainSeconds }}
{{- if kindIs "invalid" .Values.terminationGracePeriodSeconds }}
{{- add $needed 10 }}
{{- else if le (int .Values.terminationGracePeriodSeconds) (int $needed) }}
{{- fail (printf "terminationGracePeriodSeconds (%v) must exceed shutdown.preStopSleepSeconds + shutdown.drainSeconds (%v), or Kubernetes kills weft mid-drain" .Values.terminationGracePeriodSeconds $needed) }}
{{- else }}
{{- .Values.terminationGracePeriodSeconds }}
{{- end }}
{{- end }}

{{/* Environment shared by the server and the migration Job. */}}
{{- define "weft.databaseEnv" -}}
- name: WEFT_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "weft.secretName" . }}
      key: {{ .Values.existingSecret.databaseUrlKey }}
{{- end }}

{{- define "weft.podSecurity" -}}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
automountServiceAccountToken: false
enableServiceLinks: false
{{- with .Values.serviceAccountName }}
serviceAccountName: {{ . }}
{{- end }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}
