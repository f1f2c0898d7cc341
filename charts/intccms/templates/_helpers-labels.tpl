{{- /*
Labels. The recommended app.kubernetes.io labels on every object; selectors use only the
stable subset (name, instance, component) because selector labels of a Deployment can never
change after install.
*/ -}}

{{- define "intccms.selectorLabels" -}}
app.kubernetes.io/name: {{ include "intccms.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "intccms.labels" -}}
{{ include "intccms.selectorLabels" . }}
app.kubernetes.io/part-of: intccms
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end -}}
