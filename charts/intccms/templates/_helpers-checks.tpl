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
{{- if hasKey .Values.job "configName" -}}
{{- fail "job.configName was renamed to job.config in chart 0.1.0: move the value" -}}
{{- end -}}
{{- end -}}
