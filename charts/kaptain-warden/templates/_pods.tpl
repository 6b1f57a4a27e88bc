{{/*
Pod and container hardening shared by every workload: non-root numeric user (the Dockerfile's),
read-only root filesystem, no privilege escalation, every capability dropped, RuntimeDefault
seccomp: the Pod Security Standards' "restricted" profile.
*/}}

{{- define "kaptain-warden.podSecurityContext" -}}
runAsNonRoot: true
{{- with .Values.podSecurityContext.runAsUser }}
runAsUser: {{ . }}
{{- end }}
{{- with .Values.podSecurityContext.runAsGroup }}
runAsGroup: {{ . }}
{{- end }}
{{- with .Values.podSecurityContext.fsGroup }}
fsGroup: {{ . }}
{{- end }}
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "kaptain-warden.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
privileged: false
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Environment every container gets: where it runs, and no bytecode writes to a read-only disk. */}}
{{- define "kaptain-warden.env" -}}
- name: POD_NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
- name: POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: PYTHONDONTWRITEBYTECODE
  value: "1"
{{- end -}}
