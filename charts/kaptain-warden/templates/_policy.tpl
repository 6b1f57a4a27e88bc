{{/*
The policy document and what is derived from its kinds. The kinds table (files/kinds.yaml) is
generated from the kind registry (kaptain_warden.policies.kinds) by `make generate`; tests keep
the webhook rules and RBAC rendered here equal to kaptain_warden.install's.
*/}}

{{/* The sweeper's identity, which may change warden metadata (backfill stamps objects). */}}
{{- define "kaptain-warden.sweeper.username" -}}
{{- printf "system:serviceaccount:%s:%s" .Release.Namespace (include "kaptain-warden.sweeper.serviceAccountName" .) -}}
{{- end -}}

{{/* The policy file the components load, as YAML. */}}
{{- define "kaptain-warden.policy" -}}
{{- $settings := deepCopy .Values.policy.settings -}}
{{- $privileged := default dict $settings.privileged -}}
{{- $users := default list $privileged.users -}}
{{- $users = append $users (include "kaptain-warden.sweeper.username" .) | uniq -}}
{{- $_ := set $privileged "users" $users -}}
{{- $_ = set $settings "privileged" $privileged -}}
{{- $_ = set $settings "wardenNamespace" .Release.Namespace -}}
{{- $_ = set $settings "dryRun" .Values.sweeper.dryRun -}}
{{- $_ = set $settings "backfill" .Values.sweeper.backfill -}}
{{- $policy := dict "apiVersion" "warden.kaptain.io/v1alpha1" "kind" "WardenPolicy" "settings" $settings "rules" .Values.policy.rules -}}
{{- toYaml $policy -}}
{{- end -}}

{{/*
The governed kinds, without repeats, in first-seen order, as YAML `kinds: [{group, version,
resource, kind, statusWritesMetadata, parent, keptWhileReferenced, sweeperReads}]`. A governable
kind in the table takes the table's entry (as the policy loader does); any other needs `resource:`
in the policy, and is a possible parent that nothing else is known of.
*/}}
{{- define "kaptain-warden.governedKinds" -}}
{{- $table := .Files.Get "files/kinds.yaml" | fromYamlArray -}}
{{- $kinds := list -}}
{{- $seen := dict -}}
{{- range $i, $rule := .Values.policy.rules -}}
{{- range $rule.match.kinds -}}
{{- $kind := . -}}
{{- $resource := "" -}}
{{- $statusWritesMetadata := false -}}
{{- $parent := true -}}
{{- $keptWhileReferenced := false -}}
{{- $sweeperReads := list -}}
{{- range $table -}}
{{- if and .governable (eq .apiVersion $kind.apiVersion) (eq .kind $kind.kind) -}}
{{- $resource = .resource -}}
{{- $statusWritesMetadata = .statusWritesMetadata -}}
{{- $parent = .parent -}}
{{- $keptWhileReferenced = .keptWhileReferenced -}}
{{- $sweeperReads = .sweeperReads -}}
{{- end -}}
{{- end -}}
{{- if not $resource -}}
{{- $resource = $kind.resource | default "" -}}
{{- end -}}
{{- if not $resource -}}
{{- fail (printf "policy.rules[%d] (id %q): %s %s is not a kind kaptain-warden knows; add `resource:` (its plural, e.g. configmaps)" $i $rule.id $kind.apiVersion $kind.kind) -}}
{{- end -}}
{{- $group := "" -}}
{{- $version := $kind.apiVersion -}}
{{- if contains "/" $kind.apiVersion -}}
{{- $parts := split "/" $kind.apiVersion -}}
{{- $group = $parts._0 -}}
{{- $version = $parts._1 -}}
{{- end -}}
{{- $key := printf "%s/%s" $kind.apiVersion $kind.kind -}}
{{- if not (hasKey $seen $key) -}}
{{- $_ := set $seen $key true -}}
{{- $kinds = append $kinds (dict "group" $group "version" $version "resource" $resource "kind" $kind.kind "statusWritesMetadata" $statusWritesMetadata "parent" $parent "keptWhileReferenced" $keptWhileReferenced "sweeperReads" $sweeperReads) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- toYaml (dict "kinds" $kinds) -}}
{{- end -}}

{{/*
Admission rules: one per API group/version, resources sorted, groups/versions sorted as
webhook_rules() sorts its (group, version) tuples: the key joins them with a space, which sorts
below every character a group or version may hold. Call with (dict "ctx" $ "operations" list),
and "status" true to add `<resource>/status` of the kinds whose status can change metadata.
*/}}
{{- define "kaptain-warden.webhookRules" -}}
{{- $kinds := (include "kaptain-warden.governedKinds" .ctx | fromYaml).kinds -}}
{{- $byGroupVersion := dict -}}
{{- range $kinds -}}
{{- $key := printf "%s %s" .group .version -}}
{{- $_ := set $byGroupVersion $key (append (get $byGroupVersion $key | default list) .resource) -}}
{{- if and $.status .statusWritesMetadata -}}
{{- $_ := set $byGroupVersion $key (append (get $byGroupVersion $key) (printf "%s/status" .resource)) -}}
{{- end -}}
{{- end -}}
{{- $rules := list -}}
{{- range $key := keys $byGroupVersion | sortAlpha -}}
{{- $parts := splitList " " $key -}}
{{- $resources := get $byGroupVersion $key | uniq | sortAlpha -}}
{{- $rules = append $rules (dict "apiGroups" (list (index $parts 0)) "apiVersions" (list (index $parts 1)) "operations" $.operations "resources" $resources "scope" "Namespaced") -}}
{{- end -}}
{{- toYaml $rules -}}
{{- end -}}

{{/* Namespaces the webhooks never intercept: the configured ones, kube-system, the release's. */}}
{{- define "kaptain-warden.namespaceSelector" -}}
{{- $excluded := concat (.Values.policy.settings.excludedNamespaces | default list) (list "kube-system" .Release.Namespace) | uniq | sortAlpha -}}
matchExpressions:
  - key: kubernetes.io/metadata.name
    operator: NotIn
    values:
      {{- toYaml $excluded | nindent 6 }}
{{- end -}}

{{/*
RBAC rules over the kinds owner inheritance reads: the governed kinds that can be parents (not
Secrets), then the table's parent-only kinds (Katib Trials); one rule per API group, resources
sorted. Call with (dict "ctx" $ "verbs" list); the same as
kaptain_warden.install.rbac.webhook_parent_rules.
*/}}
{{- define "kaptain-warden.parentRules" -}}
{{- $kinds := (include "kaptain-warden.governedKinds" .ctx | fromYaml).kinds -}}
{{- $byGroup := dict -}}
{{- range $kinds -}}
{{- if .parent -}}
{{- $_ := set $byGroup .group (append (get $byGroup .group | default list) .resource) -}}
{{- end -}}
{{- end -}}
{{- $rules := list -}}
{{- range $group := keys $byGroup | sortAlpha -}}
{{- $rules = append $rules (dict "apiGroups" (list $group) "resources" (get $byGroup $group | uniq | sortAlpha) "verbs" $.verbs) -}}
{{- end -}}
{{- range (.ctx.Files.Get "files/kinds.yaml" | fromYamlArray) -}}
{{- if and .parent (not .governable) -}}
{{- $group := "" -}}
{{- if contains "/" .apiVersion -}}{{- $group = (split "/" .apiVersion)._0 -}}{{- end -}}
{{- $rules = append $rules (dict "apiGroups" (list $group) "resources" (list .resource) "verbs" $.verbs) -}}
{{- end -}}
{{- end -}}
{{- toYaml $rules -}}
{{- end -}}

{{/*
The verbs the sweeper reads a collection of API group `.` with: `list`, and `watch` on a custom
resource, which it reads as a streaming list. Custom means the group has a dot, as
kaptain_warden.policies.kinds.ApiVersioned.custom decides (tests compare the rules).
*/}}
{{- define "kaptain-warden.listVerbs" -}}
{{- if contains "." . -}}
{{- toYaml (list "list" "watch") -}}
{{- else -}}
{{- toYaml (list "list") -}}
{{- end -}}
{{- end -}}

{{/*
The sweeper's ClusterRole rules: the same as kaptain_warden.install.rbac.sweeper_cluster_rules
(tests compare them). Verbs are collected per (group, resource), then rules are grouped per API
group and per verb set, sorted; a space joins keys because it sorts below every letter.
*/}}
{{- define "kaptain-warden.sweeperRules" -}}
{{- $kinds := (include "kaptain-warden.governedKinds" . | fromYaml).kinds -}}
{{- $backfill := .Values.sweeper.backfill -}}
{{- $verbs := dict -}}
{{- $keptWhileReferenced := false -}}
{{- range $kinds -}}
{{- $key := printf "%s %s" .group .resource -}}
{{- $add := concat (include "kaptain-warden.listVerbs" .group | fromYamlArray) (list "delete") -}}
{{- if $backfill -}}
{{- /* Parents are read for their owner; a Secret is never one, and its data is not the sweeper's to read. */ -}}
{{- if .parent -}}{{- $add = concat $add (list "get" "patch") -}}{{- else -}}{{- $add = append $add "patch" -}}{{- end -}}
{{- end -}}
{{- $_ := set $verbs $key (concat (get $verbs $key | default list) $add) -}}
{{- /* What the sweeper reads to decide about the kind (a Revision's Configuration and InferenceServices). */ -}}
{{- range .sweeperReads -}}
{{- $key := printf "%s %s" .apiGroup .resource -}}
{{- $_ := set $verbs $key (append (get $verbs $key | default list) "get") -}}
{{- end -}}
{{- if .keptWhileReferenced -}}{{- $keptWhileReferenced = true -}}{{- end -}}
{{- end -}}
{{- /* Rules that warn before expiry (warnBefore not "0") write warned-at on their kinds. */ -}}
{{- range $rule := .Values.policy.rules -}}
{{- if ne (toString (default "" $rule.warnBefore)) "0" -}}
{{- range $rule.match.kinds -}}
{{- $kind := . -}}
{{- range $kinds -}}
{{- if and (eq (printf "%s/%s" .group .version | trimPrefix "/") $kind.apiVersion) (eq .kind $kind.kind) -}}
{{- $key := printf "%s %s" .group .resource -}}
{{- $_ := set $verbs $key (append (get $verbs $key | default list) "patch") -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- /* Rules that expire objects whose creator Pod is gone write creator-gone-at on their kinds, and list Pods. */ -}}
{{- range $rule := .Values.policy.rules -}}
{{- if $rule.expireWhenCreatorGone -}}
{{- range $rule.match.kinds -}}
{{- $kind := . -}}
{{- range $kinds -}}
{{- if and (eq (printf "%s/%s" .group .version | trimPrefix "/") $kind.apiVersion) (eq .kind $kind.kind) -}}
{{- $key := printf "%s %s" .group .resource -}}
{{- $_ := set $verbs $key (append (get $verbs $key | default list) "patch") -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- $_ := set $verbs " pods" (append (get $verbs " pods" | default list) "list") -}}
{{- end -}}
{{- end -}}
{{- if $keptWhileReferenced -}}
{{- /* A Secret a live workload still references is never deleted. */ -}}
{{- range (.Files.Get "files/secret-holders.yaml" | fromYamlArray) -}}
{{- $group := "" -}}
{{- if contains "/" .apiVersion -}}{{- $group = (split "/" .apiVersion)._0 -}}{{- end -}}
{{- $key := printf "%s %s" $group .resource -}}
{{- $_ := set $verbs $key (concat (get $verbs $key | default list) (include "kaptain-warden.listVerbs" $group | fromYamlArray)) -}}
{{- end -}}
{{- end -}}
{{- if $backfill -}}
{{- /* Backfill attributes an owner: the namespace's (labels, `owner` annotation) and its Kubeflow Profile's. */ -}}
{{- $_ := set $verbs " namespaces" (append (get $verbs " namespaces" | default list) "get") -}}
{{- $_ := set $verbs "kubeflow.org profiles" (append (get $verbs "kubeflow.org profiles" | default list) "get") -}}
{{- end -}}
{{- $_ := set $verbs "events.k8s.io events" (list "create") -}}
{{- $byGroup := dict -}}
{{- range $key, $list := $verbs -}}
{{- $parts := splitList " " $key -}}
{{- $group := index $parts 0 -}}
{{- $verbSet := $list | uniq | sortAlpha | join " " -}}
{{- $sets := get $byGroup $group | default dict -}}
{{- $_ := set $sets $verbSet (append (get $sets $verbSet | default list) (index $parts 1)) -}}
{{- $_ = set $byGroup $group $sets -}}
{{- end -}}
{{- $rules := list -}}
{{- range $group := keys $byGroup | sortAlpha -}}
{{- $sets := get $byGroup $group -}}
{{- range $verbSet := keys $sets | sortAlpha -}}
{{- $rules = append $rules (dict "apiGroups" (list $group) "resources" (get $sets $verbSet | sortAlpha) "verbs" (splitList " " $verbSet)) -}}
{{- end -}}
{{- end -}}
{{- if and $backfill (not .Values.sweeper.backfillExisting) -}}
{{- /* When the webhook was registered: only objects made since then were missed. */ -}}
{{- $rules = append $rules (dict "apiGroups" (list "admissionregistration.k8s.io") "resources" (list "mutatingwebhookconfigurations") "resourceNames" (list (include "kaptain-warden.webhookConfigurationName" .)) "verbs" (list "get")) -}}
{{- end -}}
{{- toYaml $rules -}}
{{- end -}}
