{{- /*
Checks of values that the schema cannot express (relations between values, renamed keys).
They fail the render with the fix in the message; included from NOTES.txt and from the Job's
ConfigMap so `helm template` fails as early as `helm install`.
*/ -}}

{{- define "intccms.checks" -}}
{{- if and .Values.storage.existingSecret (or .Values.storage.credentials.accessKeyId .Values.storage.credentials.secretAccessKey) -}}
{{- fail "storage.existingSecret and storage.credentials are both set: keep the credentials in your Secret and remove storage.credentials.*" -}}
{{- end -}}
{{- if gt (int .Values.dask.adapt.minimum) (int .Values.dask.adapt.maximum) -}}
{{- fail (printf "dask.adapt.minimum (%v) is larger than dask.adapt.maximum (%v): raise the maximum or lower the minimum" .Values.dask.adapt.minimum .Values.dask.adapt.maximum) -}}
{{- end -}}
{{- if gt (int .Values.dask.wait.workers) (int .Values.dask.adapt.maximum) -}}
{{- fail (printf "dask.wait.workers (%v) can never be reached with dask.adapt.maximum (%v): lower dask.wait.workers" .Values.dask.wait.workers .Values.dask.adapt.maximum) -}}
{{- end -}}
{{- if and .Values.grafana.enabled (not .Values.prometheus.enabled) (not .Values.grafana.datasourceUrl) -}}
{{- fail "grafana.enabled needs a Prometheus: enable prometheus.enabled or set grafana.datasourceUrl to your Prometheus URL" -}}
{{- end -}}
{{- if and (hasPrefix "s3://" .Values.output.dir) (not (include "intccms.storageSecretName" .)) -}}
{{- fail (printf "output.dir=%s needs object-store credentials: set storage.existingSecret (or storage.credentials.*)" .Values.output.dir) -}}
{{- end -}}
{{- if .Values.networkPolicy.enabled -}}
{{- if and (or .Values.prometheus.podMonitor.enabled .Values.prometheus.serviceMonitor.enabled) (not .Values.networkPolicy.metricsFrom) -}}
{{- fail "prometheus.podMonitor/serviceMonitor scrape the Dask pods, whose metrics ports the NetworkPolicies open to the built-in Prometheus only: set networkPolicy.metricsFrom to your Prometheus, e.g. [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: monitoring}}, podSelector: {matchLabels: {app.kubernetes.io/name: prometheus}}}]" -}}
{{- end -}}
{{- if and (not (index .Values "dask-kubernetes-operator" "enabled")) (not .Values.networkPolicy.operatorFrom) -}}
{{- fail "dask-kubernetes-operator.enabled is false, so the NetworkPolicies cannot know where your Dask operator runs, and it must reach each scheduler to scale and retire workers: set networkPolicy.operatorFrom, e.g. [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: dask-operator}}, podSelector: {matchLabels: {app.kubernetes.io/name: dask-kubernetes-operator}}}]" -}}
{{- end -}}
{{- end -}}
{{- if hasKey .Values.job "configName" -}}
{{- fail "job.configName was renamed to job.config in chart 0.1.0: move the value" -}}
{{- end -}}
{{- end -}}
