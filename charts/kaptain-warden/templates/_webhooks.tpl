{{/*
What both webhook configurations share; the same settings as
kaptain_warden.install.webhook_configurations (tests/chart compares the two).
*/}}

{{- define "kaptain-warden.webhookMetadata" -}}
name: {{ include "kaptain-warden.webhookConfigurationName" . }}
labels:
  {{- include "kaptain-warden.componentLabels" (dict "ctx" . "component" "webhook") | nindent 2 }}
{{- if eq .Values.tls.mode "certManager" }}
annotations:
  {{- /* cert-manager's cainjector copies the Certificate's CA into every caBundle. */}}
  cert-manager.io/inject-ca-from: {{ printf "%s/%s" .Release.Namespace (include "kaptain-warden.webhook.certificateName" .) }}
{{- end }}
{{- end -}}

{{/* clientConfig for one path: call with (dict "ctx" $ "path" "/mutate"). */}}
{{- define "kaptain-warden.webhookClientConfig" -}}
service:
  namespace: {{ .ctx.Release.Namespace }}
  name: {{ include "kaptain-warden.webhook.serviceName" .ctx }}
  path: {{ .path }}
  port: {{ .ctx.Values.webhook.service.port }}
{{- /* selfManaged: the certs bootstrap patches it in; certManager: the cainjector does. */}}
{{- if eq .ctx.Values.tls.mode "provided" }}
caBundle: {{ .ctx.Values.tls.provided.caBundle }}
{{- end }}
{{- end -}}

{{- define "kaptain-warden.webhookCommon" -}}
admissionReviewVersions: [v1]
sideEffects: None
matchPolicy: Equivalent
failurePolicy: {{ .Values.webhook.failurePolicy }}
timeoutSeconds: {{ .Values.webhook.timeoutSeconds }}
namespaceSelector:
  {{- include "kaptain-warden.namespaceSelector" . | nindent 2 }}
{{- end -}}

{{/* Flags shared by `certs bootstrap` and `certs watch`. */}}
{{- define "kaptain-warden.certsArgs" -}}
{{- $self := .Values.tls.selfManaged -}}
{{- $configuration := include "kaptain-warden.webhookConfigurationName" . -}}
- --secret={{ include "kaptain-warden.webhook.tlsSecretName" . }}
- --service={{ include "kaptain-warden.webhook.serviceName" . }}
- --cluster-domain={{ .Values.clusterDomain }}
- --cert-dir=/tls
- --mutating-webhook={{ $configuration }}
- --validating-webhook={{ $configuration }}
- --ca-validity={{ $self.caValidityDays }}d
- --ca-renew-before={{ $self.caRenewBeforeDays }}d
- --cert-validity={{ $self.certValidityDays }}d
- --cert-renew-before={{ $self.certRenewBeforeDays }}d
- --bundle-grace={{ $self.bundleGraceSeconds }}s
- --replica-grace={{ $self.replicaGraceSeconds }}s
- --log-format={{ .Values.webhook.logFormat }}
- --log-level={{ .Values.webhook.logLevel }}
{{- end -}}
