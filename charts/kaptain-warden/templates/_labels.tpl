{{/*
Labels: the Kubernetes recommended `app.kubernetes.io/*` set on every object, and the
immutable subset (name, instance, component) as selectors.
*/}}

{{- define "kaptain-warden.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "kaptain-warden.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: kaptain-warden
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Labels of one component's objects: call with (dict "ctx" $ "component" "webhook"). */}}
{{- define "kaptain-warden.componentLabels" -}}
{{ include "kaptain-warden.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* Selector labels of one component: never change them after a release (selectors are immutable). */}}
{{- define "kaptain-warden.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kaptain-warden.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}
