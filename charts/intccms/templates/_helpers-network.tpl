{{- /*
Labels and peers of the NetworkPolicies (templates/network/). One definition of each label set
the policies select on, shared with the objects that carry it, so a policy cannot drift from
the pods it is meant for.
*/ -}}

{{- /* Labels the Job gives every Dask pod it starts (through cluster.kubernetes.labels of the
facility configuration); the operator adds dask.org/component: scheduler|worker. */ -}}
{{- define "intccms.daskLabels" -}}
app.kubernetes.io/part-of: intccms
intccms.io/release: {{ .Release.Name }}
{{- end -}}

{{- define "intccms.daskSelector" -}}
matchLabels:
  intccms.io/release: {{ .root.Release.Name }}
  dask.org/component: {{ .component }}
{{- end -}}

{{- /* A peer: the chart's pods of one component (job, prometheus, grafana). */ -}}
{{- define "intccms.componentPeer" -}}
- podSelector:
    matchLabels:
      {{- include "intccms.selectorLabels" . | nindent 6 }}
{{- end -}}

{{- /* The Dask operator, which asks each scheduler for its adaptive target, idle time and the
workers to retire (HTTP API on the dashboard port, Dask comm as fallback). */ -}}
{{- define "intccms.operatorPeers" -}}
{{- $operator := index .Values "dask-kubernetes-operator" -}}
{{- if $operator.enabled }}
- podSelector:
    matchLabels:
      app.kubernetes.io/name: {{ default "dask-kubernetes-operator" $operator.nameOverride | trunc 63 | trimSuffix "-" }}
      app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}
{{- with .Values.networkPolicy.operatorFrom }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- /* Prometheus: the built-in one and the peers of networkPolicy.metricsFrom. */ -}}
{{- define "intccms.metricsPeers" -}}
{{- if .Values.prometheus.enabled }}
{{ include "intccms.componentPeer" (dict "root" . "component" "prometheus") }}
{{- end }}
{{- with .Values.networkPolicy.metricsFrom }}
{{ toYaml . }}
{{- end }}
{{- end -}}
