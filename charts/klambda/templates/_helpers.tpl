{{- define "klambda.fullname" -}}
{{- if contains "klambda" .Release.Name -}}{{ .Release.Name | trunc 50 | trimSuffix "-" }}{{- else -}}{{ printf "%s-klambda" .Release.Name | trunc 50 | trimSuffix "-" }}{{- end -}}
{{- end -}}

{{- define "klambda.labels" -}}
app.kubernetes.io/name: klambda
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "klambda.selector" -}}
app.kubernetes.io/name: klambda
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* An image reference: repository:tag, or repository@digest when image.digest is set. */}}
{{- define "klambda.image" -}}
{{- if .image.digest -}}
{{ .image.repository }}@{{ .image.digest }}
{{- else -}}
{{ .image.repository }}:{{ .image.tag | default .root.Chart.AppVersion }}
{{- end -}}
{{- end -}}

{{/* A component's pod labels: klambda.labels, its component and <component>.podLabels,
which may not replace the labels the Deployment selects on. Args: root, component, values. */}}
{{- define "klambda.podLabels" -}}
{{- $selector := include "klambda.selector" . | fromYaml -}}
{{- range $k, $_ := .values.podLabels -}}
{{- if hasKey $selector $k -}}
{{- fail (printf "%s.podLabels.%s: the chart sets this label (the Deployment selects pods by it)" $.component $k) -}}
{{- end -}}
{{- end -}}
{{- $labels := merge (include "klambda.labels" .root | fromYaml) $selector -}}
{{- toYaml (merge $labels (.values.podLabels | default dict)) -}}
{{- end -}}

{{/* A component's pod scheduling: priorityClassName, topologySpreadConstraints (a
constraint without labelSelector spreads the component's pods), nodeSelector, tolerations,
affinity. Args: root, component, values. */}}
{{- define "klambda.podScheduling" -}}
{{- with .values.priorityClassName }}
priorityClassName: {{ . | quote }}
{{- end }}
{{- with .values.topologySpreadConstraints }}
{{- $selector := dict "matchLabels" (include "klambda.selector" $ | fromYaml) }}
{{- $constraints := list }}
{{- range . }}
{{- $c := deepCopy . }}
{{- if not (hasKey $c "labelSelector") }}{{ $_ := set $c "labelSelector" $selector }}{{ end }}
{{- $constraints = append $constraints $c }}
{{- end }}
topologySpreadConstraints:
  {{- toYaml $constraints | nindent 2 }}
{{- end }}
{{- with .values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* A component's PodDisruptionBudget (<component>.podDisruptionBudget), rendered with
more than one replica: for a single pod any budget either blocks every node drain or
allows nothing. Args: root, component, values. */}}
{{- define "klambda.pdb" -}}
{{- $pdb := .values.podDisruptionBudget -}}
{{- $min := $pdb.minAvailable | default "" | toString -}}
{{- $max := $pdb.maxUnavailable | default "" | toString -}}
{{- if and $pdb.enabled (or $min $max) (le (int .values.replicas) 1) -}}
{{- fail (printf "%s.podDisruptionBudget.minAvailable/maxUnavailable: a budget is made with replicas > 1 only (for one pod it blocks every node drain or allows everything); raise %s.replicas or leave them empty" .component .component) -}}
{{- end -}}
{{- if and $pdb.enabled (gt (int .values.replicas) 1) -}}
{{- if and $min $max -}}
{{- fail (printf "%s.podDisruptionBudget: set minAvailable or maxUnavailable, not both" .component) -}}
{{- end -}}
{{- if and $min (not (contains "%" $min)) (ge (int $min) (int .values.replicas)) -}}
{{- fail (printf "%s.podDisruptionBudget.minAvailable %s with %d replicas would block every eviction (node drains, upgrades): keep it below replicas" .component $min (int .values.replicas)) -}}
{{- end }}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ include "klambda.fullname" .root }}-{{ .component }}
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "klambda.labels" .root | nindent 4 }}
    app.kubernetes.io/component: {{ .component }}
spec:
  {{- if $min }}
  minAvailable: {{ if contains "%" $min }}{{ $min | quote }}{{ else }}{{ int $min }}{{ end }}
  {{- else }}
  maxUnavailable: {{ if contains "%" $max }}{{ $max | quote }}{{ else }}{{ $max | default "1" | int }}{{ end }}
  {{- end }}
  selector:
    matchLabels:
      {{- include "klambda.selector" . | nindent 6 }}
{{- end }}
{{- end -}}

{{/* The manager's --config file: .Values.config as is, plus the shim image and the
NetworkPolicy of function pods (networkPolicy.enabled; the activator's namespace and labels). */}}
{{- define "klambda.config" -}}
{{- if hasKey .Values.config "networkPolicy" -}}
{{- fail "config.networkPolicy is set by the chart: use networkPolicy.enabled" -}}
{{- end -}}
{{- if hasKey .Values.config "functionUrls" -}}
{{- fail "config.functionUrls is set by the chart: use functionUrls.domain and functionUrls.pathBaseUrl" -}}
{{- end -}}
{{- $cfg := deepCopy .Values.config -}}
{{- $_ := set $cfg "shimImage" (include "klambda.image" (dict "image" .Values.runtimeShim.image "root" .)) -}}
{{- $activator := include "klambda.selector" (dict "root" . "component" "activator") | fromYaml -}}
{{- $_ := set $cfg "networkPolicy" (dict "enabled" .Values.networkPolicy.enabled "activatorNamespace" .Release.Namespace "activatorPodLabels" $activator) -}}
{{- $_ := set $cfg "functionUrls" (include "klambda.functionUrls" . | fromYaml) -}}
{{- if hasKey .Values.config "codeStore" -}}
{{- fail "config.codeStore is set by the chart: use codeStore" -}}
{{- end -}}
{{- $store := include "klambda.codeStore" . | fromYaml -}}
{{- if $store.repository -}}
{{- $cs := dict "repository" $store.repository -}}
{{- if $store.readRepository }}{{- $_ := set $cs "readRepository" $store.readRepository -}}{{- end -}}
{{- if .Values.codeStore.credentialsSecret }}{{- $_ := set $cs "credentialsDir" "/etc/klambda/code-store" -}}{{- end -}}
{{- range $k := list "gcInterval" "gcGrace" "gcMaxDeletes" }}{{- if hasKey $.Values.codeStore $k }}{{- $_ := set $cs $k (get $.Values.codeStore $k) -}}{{- end -}}{{- end -}}
{{- $_ := set $cfg "codeStore" $cs -}}
{{- end -}}
{{- /* The manager learns that a registry speaks plain HTTP from plainHTTPRegistries only:
the code store's registries are listed there. */ -}}
{{- $plain := .Values.config.plainHTTPRegistries | default list -}}
{{- if and $store.repository $store.plainHTTP -}}
{{- range $r := list $store.repository $store.readRepository -}}
{{- if $r }}{{- $plain = append $plain (first (splitList "/" $r)) -}}{{- end -}}
{{- end -}}
{{- end -}}
{{- if $plain }}{{- $_ := set $cfg "plainHTTPRegistries" (uniq $plain) -}}{{- else }}{{- $_ := unset $cfg "plainHTTPRegistries" -}}{{- end -}}
{{- toYaml $cfg }}
{{- end -}}

{{/* The activator's --config file. */}}
{{- define "klambda.activatorConfig" -}}
{{- $cfg := deepCopy .Values.activator.config -}}
{{- $_ := set $cfg "region" .Values.config.region -}}
{{- toYaml $cfg }}
{{- end -}}

{{/* The egress policy of tenant-supplied destination endpoints: the manager's (config.egress). */}}
{{- define "klambda.egressArgs" -}}
{{- $e := .Values.config.egress | default dict -}}
- --egress-deny-cidrs={{ join "," ($e.denyCIDRs | default list) }}
- --egress-allow-cidrs={{ join "," ($e.allowCIDRs | default list) }}
- --egress-allow-loopback={{ $e.allowLoopback | default false }}
{{- end }}

{{/*
The Secret holding the activator's Invoke API certificate: activator.tls.secretName, else
the one the cert-manager Certificate writes when activator.tls.certManager.issuer is set;
empty: plain HTTP (only with activator.tls.plainHTTP).
*/}}
{{- define "klambda.activatorTLSSecret" -}}
{{- if .Values.activator.tls.secretName -}}
{{- .Values.activator.tls.secretName -}}
{{- else if or .Values.activator.tls.certManager.issuer (not .Values.activator.tls.plainHTTP) -}}
{{- printf "%s-activator-tls" (include "klambda.fullname" .) -}}
{{- end -}}
{{- end }}

{{/* "true" when the activator makes its own self-signed certificate (no secretName, no
cert-manager issuer, no plainHTTP): it writes it into klambda.activatorTLSSecret. */}}
{{- define "klambda.activatorSelfSigned" -}}
{{- $t := .Values.activator.tls -}}
{{- if not (or $t.secretName $t.certManager.issuer $t.plainHTTP) -}}true{{- end -}}
{{- end }}

{{/* How the manager spells function URLs in status.functionUrl (controllers.FunctionURLsConfig). */}}
{{- define "klambda.functionUrls" -}}
{{- $scheme := ternary "https" "http" (ne (include "klambda.activatorTLSSecret" .) "") -}}
{{- $base := .Values.functionUrls.pathBaseUrl | default (printf "%s://%s-activator.%s.svc:%v" $scheme (include "klambda.fullname" .) .Release.Namespace .Values.activator.service.port) -}}
domain: {{ .Values.functionUrls.domain | quote }}
scheme: {{ $scheme }}
pathBase: {{ $base | quote }}
{{- end -}}

{{/* "true" when the chart runs its NATS JetStream cluster (nats.*) for the activator's
async queue: the activator and its queue on, nats.enabled, no external natsUrl. */}}
{{- define "klambda.natsCluster" -}}
{{- $a := .Values.activator -}}
{{- if and $a.enabled $a.async.enabled .Values.nats.enabled (not $a.async.natsUrl) -}}true{{- end -}}
{{- end -}}

{{/* The chart's NATS servers' client URLs, one per pod of the StatefulSet (names of its
headless Service), comma-separated as --async-nats-url takes them. */}}
{{- define "klambda.natsClusterURL" -}}
{{- $fullname := include "klambda.fullname" . -}}
{{- $urls := list -}}
{{- range $i := until (int .Values.nats.replicas) -}}
{{- $urls = append $urls (printf "nats://%s-nats-%d.%s-nats-headless.%s.svc:4222" $fullname $i $fullname $.Release.Namespace) -}}
{{- end -}}
{{- join "," $urls -}}
{{- end -}}

{{/* The code store the manager and the activator use (values codeStore): repository,
readRepository, plainHTTP — the bundled store's Service, a registry you run, or none
(repository empty). Inconsistent values fail here. */}}
{{- define "klambda.codeStore" -}}
{{- $v := .Values.codeStore -}}
{{- if $v.bundled.enabled -}}
{{- if or $v.repository $v.readRepository $v.plainHTTP $v.credentialsSecret -}}
{{- fail "codeStore.bundled.enabled: the chart runs the code store, so codeStore.repository, readRepository, plainHTTP and credentialsSecret do not apply; to use your own registry set codeStore.bundled.enabled=false" -}}
{{- end -}}
{{- $svc := printf "%s-code-store.%s.svc" (include "klambda.fullname" .) .Release.Namespace -}}
repository: {{ printf "%s:5000/klambda/code" $svc }}
readRepository: {{ printf "%s:5001/klambda/code" $svc }}
plainHTTP: true
{{- else if $v.repository -}}
repository: {{ $v.repository }}
readRepository: {{ $v.readRepository | quote }}
plainHTTP: {{ $v.plainHTTP }}
{{- else if or $v.readRepository $v.credentialsSecret $v.plainHTTP -}}
{{- fail "codeStore: set codeStore.repository (or unset the other codeStore values)" -}}
{{- else -}}
repository: ""
{{- end -}}
{{- end -}}
