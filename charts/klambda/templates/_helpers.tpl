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

{{- define "klambda.image" -}}
{{ .image.repository }}:{{ .image.tag | default .root.Chart.AppVersion }}
{{- end -}}

{{/* The manager's --config file: .Values.config as is, plus the shim image and the
NetworkPolicy of function pods (networkPolicy.enabled; the activator's namespace and labels). */}}
{{- define "klambda.config" -}}
{{- if hasKey .Values.config "networkPolicy" -}}
{{- fail "config.networkPolicy is set by the chart: use networkPolicy.enabled" -}}
{{- end -}}
{{- $cfg := deepCopy .Values.config -}}
{{- $_ := set $cfg "shimImage" (include "klambda.image" (dict "image" .Values.runtimeShim.image "root" .)) -}}
{{- $activator := include "klambda.selector" (dict "root" . "component" "activator") | fromYaml -}}
{{- $_ := set $cfg "networkPolicy" (dict "enabled" .Values.networkPolicy.enabled "activatorNamespace" .Release.Namespace "activatorPodLabels" $activator) -}}
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
{{- else if .Values.activator.tls.certManager.issuer -}}
{{- printf "%s-activator-tls" (include "klambda.fullname" .) -}}
{{- end -}}
{{- end }}
