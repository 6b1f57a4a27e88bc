{{/*
Names of every object, in one place. Kubernetes names are at most 63 characters for the
objects that become DNS labels (Services), so every name is cut to fit with its suffix.
*/}}

{{/* The chart name, or nameOverride. */}}
{{- define "kaptain-warden.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* `<release>-<chart>`, or the release name alone when it already contains the chart name. */}}
{{- define "kaptain-warden.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- $name := include "kaptain-warden.name" . -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Both webhook configurations share this name (as `kaptain-warden webhook-config --name`). */}}
{{- define "kaptain-warden.webhookConfigurationName" -}}
{{- include "kaptain-warden.fullname" . -}}
{{- end -}}

{{- define "kaptain-warden.webhook.name" -}}
{{- printf "%s-webhook" (include "kaptain-warden.fullname" .) -}}
{{- end -}}

{{/* The Service the API server dials; its DNS names are in the serving certificate. */}}
{{- define "kaptain-warden.webhook.serviceName" -}}
{{- include "kaptain-warden.webhook.name" . -}}
{{- end -}}

{{- define "kaptain-warden.webhook.serviceAccountName" -}}
{{- include "kaptain-warden.webhook.name" . -}}
{{- end -}}

{{/* The Secret holding the serving certificate (and, self-managed, the CA). */}}
{{- define "kaptain-warden.webhook.tlsSecretName" -}}
{{- if eq .Values.tls.mode "provided" -}}
{{- .Values.tls.provided.secretName -}}
{{- else -}}
{{- printf "%s-tls" (include "kaptain-warden.webhook.name" .) -}}
{{- end -}}
{{- end -}}

{{- define "kaptain-warden.webhook.certificateName" -}}
{{- include "kaptain-warden.webhook.name" . -}}
{{- end -}}

{{- define "kaptain-warden.sweeper.name" -}}
{{- printf "%s-sweeper" (include "kaptain-warden.fullname" .) -}}
{{- end -}}

{{- define "kaptain-warden.sweeper.serviceAccountName" -}}
{{- include "kaptain-warden.sweeper.name" . -}}
{{- end -}}

{{/* The sweeper's leader-election Lease, in the release namespace. */}}
{{- define "kaptain-warden.sweeper.leaseName" -}}
{{- include "kaptain-warden.sweeper.name" . -}}
{{- end -}}

{{- define "kaptain-warden.policyConfigMapName" -}}
{{- printf "%s-policy" (include "kaptain-warden.fullname" .) -}}
{{- end -}}

{{- define "kaptain-warden.cleanup.name" -}}
{{- printf "%s-cleanup" (include "kaptain-warden.fullname" .) -}}
{{- end -}}

{{/* The image reference: a digest wins over a tag; the tag defaults to appVersion. */}}
{{- define "kaptain-warden.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}
